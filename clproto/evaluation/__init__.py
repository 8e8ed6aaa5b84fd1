"""Evaluation: the evaluator fills accuracy matrices; metrics are pure functions of them."""

from clproto.evaluation import metrics
from clproto.evaluation.evaluator import Evaluator, StepEvaluation
from clproto.evaluation.results import Metrics, RunResult

__all__ = ["Evaluator", "Metrics", "RunResult", "StepEvaluation", "metrics"]
