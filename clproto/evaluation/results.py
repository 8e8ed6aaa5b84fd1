"""Typed results of a run, serialised to ``results.json`` (key names are a stable contract)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from clproto.evaluation import metrics as M
from clproto.evaluation.evaluator import StepEvaluation
from clproto.storage import write_json_atomic

SCHEMA_VERSION = 1


@dataclass
class Metrics:
    """Headline metrics, each computed by a pure function of :mod:`clproto.evaluation.metrics`.

    ``RunResult.metrics`` of every run: computed from its accuracy matrices by
    :func:`compute_metrics`, never measured separately. Accuracies are fractions in [0, 1];
    ``None`` where a metric is undefined (forgetting and BWT after one experience, the few-shot
    fields in a class-incremental run, forward transfer for strategies that cannot score unseen
    classes). Each field's comment gives its definition and source.

    Example::

        m = clproto.Runner(progress=False).run(clproto.load_scenario("scenarios/split-digits.toml"),
                                               clproto.load_strategy("strategies/nmc-pixels.toml"), seed=0).metrics
        print(m.final_accuracy, m.average_incremental_accuracy, m.forgetting, m.bwt)
    """

    final_accuracy: float  # seen-class accuracy after the last experience
    average_accuracy: float  # mean over j of A[T][j] (Lopez-Paz & Ranzato ACC)
    average_incremental_accuracy: float  # mean over t of seen-class accuracy (iCaRL)
    forgetting: Optional[float]  # Chaudhry et al. 2018: max over earlier steps minus last
    forgetting_from_first: Optional[float]  # A[j][j] - A[T][j], Avalanche's definition
    bwt: Optional[float]  # Lopez-Paz & Ranzato 2017
    task_il_final_accuracy: float  # mean over j of TA[T][j]
    task_il_forgetting: Optional[float]  # Chaudhry forgetting on the task-IL matrix
    # few-shot scenarios only (None otherwise): per-session lists and the drop
    base_accuracy: Optional[list] = None
    novel_accuracy: Optional[list] = None
    harmonic_mean: Optional[list] = None
    performance_drop: Optional[float] = None
    # added later (absent from older results.json files, which load with these defaults):
    final_top5_accuracy: Optional[float] = None  # top-5 over seen classes after the last step; None below 10 classes
    forward_transfer: Optional[float] = None  # GEM FWT (task-IL); None where undefined, e.g. prototype strategies


def compute_metrics(
    accuracy_matrix: list,
    task_accuracy_matrix: list,
    seen_accuracy: list,
    *,
    few_shot: bool,
    base_accuracy: Optional[list] = None,
    novel_accuracy: Optional[list] = None,
    seen_top5_accuracy: Optional[list] = None,
    task_accuracy_ahead: Optional[list] = None,
    initial_task_accuracy: Optional[list] = None,
) -> Metrics:
    out = Metrics(
        final_accuracy=M.final_accuracy(seen_accuracy),
        average_accuracy=M.average_accuracy(accuracy_matrix),
        average_incremental_accuracy=M.average_incremental_accuracy(seen_accuracy),
        forgetting=M.forgetting(accuracy_matrix),
        forgetting_from_first=M.forgetting_from_first(accuracy_matrix),
        bwt=M.backward_transfer(accuracy_matrix),
        task_il_final_accuracy=M.average_accuracy(task_accuracy_matrix),
        task_il_forgetting=M.forgetting(task_accuracy_matrix),
        final_top5_accuracy=seen_top5_accuracy[-1] if seen_top5_accuracy else None,
        forward_transfer=(M.forward_transfer(task_accuracy_ahead, initial_task_accuracy)
                          if task_accuracy_ahead is not None and initial_task_accuracy is not None else None),
    )
    if few_shot:
        out.base_accuracy = list(base_accuracy or [])
        out.novel_accuracy = list(novel_accuracy or [])
        out.harmonic_mean = [M.harmonic_mean(b, n) for b, n in zip(out.base_accuracy, out.novel_accuracy)]
        out.performance_drop = M.performance_drop(seen_accuracy)
    return out


@dataclass
class Timings:
    total_s: float = 0.0  # wall time of the whole run
    data_s: float = 0.0  # loading the dataset and building the scenario
    features_s: float = 0.0  # backbone feature extraction (0 on a cache hit)
    fit_s: list = field(default_factory=list)  # per experience
    eval_s: list = field(default_factory=list)  # per experience


@dataclass
class RunResult:
    """Everything one run measured, as written to its ``results.json`` (key names are a stable contract).

    Returned by :meth:`clproto.Runner.run`, or read back with :meth:`load`. Identity: ``scenario``,
    ``strategy``, ``seed``, ``kind``, the resolved ``config`` and its ``config_hash``, ``versions``;
    the stream: ``class_order``, ``experience_classes``, ``test_sizes``; the measurements, one entry
    per step ``t`` (accuracies as fractions in [0, 1]): ``accuracy_matrix`` ``A[t][j]`` (class-IL,
    ``None`` above the diagonal), ``task_accuracy_matrix`` ``TA[t][j]`` (task-IL),
    ``seen_accuracy``, ``per_class_accuracy``, ``seen_top5_accuracy``; and ``metrics``
    (:class:`Metrics`, pure functions of those), ``timings`` and ``notes``. Build one from
    per-step evaluations with :meth:`from_steps`.

    Example (a run written by ``clproto run split-digits nmc-pixels``)::

        from clproto import RunResult

        result = RunResult.load("runs/split-digits/nmc-pixels/seed0/results.json")
        print(result.metrics.final_accuracy)  # seen-class accuracy after the last experience
        print(result.accuracy_matrix[-1])     # A[T-1][j]: accuracy on each experience at the end
    """

    scenario: str
    strategy: str
    seed: int
    kind: str  # "class-incremental" or "few-shot"
    config: dict  # the fully resolved configuration (scenario, strategy, run)
    config_hash: str  # hash of `config`: identifies the run
    versions: dict  # python, clproto, torch, numpy, ...
    class_order: list
    experience_classes: list  # classes introduced by each experience
    test_sizes: list  # test samples per experience
    accuracy_matrix: list  # A[t][j], None above the diagonal
    task_accuracy_matrix: list  # task-IL TA[t][j]
    seen_accuracy: list  # per step
    per_class_accuracy: list  # per step, one entry per dataset class (None = not seen)
    metrics: Metrics
    timings: Timings
    notes: list = field(default_factory=list)  # e.g. feature cache hit/miss
    schema_version: int = SCHEMA_VERSION
    # added later (absent from older results.json files, which load with these defaults):
    seen_top5_accuracy: Optional[list] = None  # per step; None where fewer than 10 classes were seen
    task_accuracy_ahead: Optional[list] = None  # TA[t][j] for j > t, before training on j (None elsewhere / undefined)
    initial_task_accuracy: Optional[list] = None  # task-IL accuracy per experience before any training (GEM's b_j)
    # how it computed (clproto.devices.compute_record): device, device_name, precision, deterministic, torch, cuda
    compute: Optional[dict] = None

    @classmethod
    def from_steps(cls, steps: list[StepEvaluation], *, few_shot: bool,
                   initial_task_accuracy: Optional[list] = None, **kw: Any) -> "RunResult":
        """``initial_task_accuracy``: :meth:`Evaluator.initial_task_accuracy` of the untrained model, if measured."""
        A = [s.accuracy_row for s in steps]
        TA = [s.task_accuracy_row for s in steps]
        seen = [s.seen_accuracy for s in steps]
        T = len(steps)
        ahead = [s.task_accuracy_ahead if s.task_accuracy_ahead is not None else [None] * T for s in steps]
        top5 = [s.seen_top5_accuracy for s in steps]
        metrics = compute_metrics(
            A, TA, seen, few_shot=few_shot,
            base_accuracy=[s.base_accuracy for s in steps],
            novel_accuracy=[s.novel_accuracy for s in steps],
            seen_top5_accuracy=top5, task_accuracy_ahead=ahead, initial_task_accuracy=initial_task_accuracy,
        )
        return cls(
            accuracy_matrix=A,
            task_accuracy_matrix=TA,
            seen_accuracy=seen,
            per_class_accuracy=[s.per_class_accuracy for s in steps],
            metrics=metrics,
            seen_top5_accuracy=top5,
            task_accuracy_ahead=ahead,
            initial_task_accuracy=list(initial_task_accuracy) if initial_task_accuracy is not None else None,
            **kw,
        )

    def to_dict(self) -> dict:
        """The plain (JSON-ready) form written to ``results.json``."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunResult":
        """The inverse of :meth:`to_dict`; unknown top-level keys are ignored, fields added later take their defaults."""
        d = dict(d)
        d["metrics"] = Metrics(**d["metrics"])
        d["timings"] = Timings(**d["timings"])
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path: str | os.PathLike) -> None:
        """Write ``results.json`` atomically (the old file or the whole new one, never half)."""
        write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> "RunResult":
        """Read a ``results.json`` written by :meth:`save`."""
        with open(path) as fh:
            return cls.from_dict(json.load(fh))
