"""Fills the accuracy matrices of a run, one step at a time. Computes no metric itself.

After training on experience ``t`` the evaluator scores the test samples of every seen
experience once and derives:

* ``A[t][j]`` class-incremental accuracy on experience ``j``'s test set (argmax over the
  classes seen so far: the class-IL protocol; classes not yet seen cannot be predicted);
* ``TA[t][j]`` task-incremental accuracy (argmax over experience ``j``'s own classes);
* ``seen[t]`` accuracy over the union of seen test sets (session accuracy);
* per-class accuracy, and for few-shot scenarios the base / novel split;
* top-5 accuracy over the seen classes (on the union of seen test sets) once there are at least
  ten of them (:func:`clproto.evaluation.metrics.top5_accuracy`);
* ``TA[t][j]`` for the experiences ``j > t`` not trained on yet (task-IL, "ahead"), the entries
  forward transfer needs, wherever the strategy gives finite scores to ``j``'s classes; and, with
  :meth:`Evaluator.initial_task_accuracy`, the same for the model before its first experience.
  Strategies that score unseen classes ``-inf`` (every built-in one) get ``None`` there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from clproto.evaluation import metrics as M
from clproto.scenarios.scenario import Experience, Scenario

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # (B, ...) inputs -> (B, num_classes) scores


@dataclass(frozen=True)
class StepEvaluation:
    """Everything measured after one training step ``t``."""

    accuracy_row: list[Optional[float]]  # A[t][j] for j = 0..T-1 (None for j > t)
    task_accuracy_row: list[Optional[float]]  # TA[t][j]
    seen_accuracy: float  # accuracy on all seen classes' test samples
    per_class_accuracy: list[Optional[float]]  # one entry per dataset class (None if not seen yet)
    base_accuracy: Optional[float]  # few-shot only: test samples of base classes
    novel_accuracy: Optional[float]  # few-shot only: test samples of classes added after the base session
    # added later, defaults keep older checkpoints loadable:
    task_accuracy_ahead: Optional[list] = None  # TA[t][j] for j > t before training on j (None elsewhere / undefined)
    seen_top5_accuracy: Optional[float] = None  # top-5 over seen classes; None with fewer than 10 seen classes


class Evaluator:
    """Scores a strategy on the test sets of the experiences seen so far: one accuracy-matrix row per step.

    ``scenario``: the :class:`~clproto.scenarios.Scenario` whose test samples are scored (the same one
    the strategy trains on, features included). ``batch_size``: test samples per call of the score
    function (only memory depends on it, not the numbers).

    :meth:`evaluate` ``(score_fn, step)``, called after training on experience ``step``, scores
    the test samples of experiences ``0..step`` with ``score_fn`` (``(B, ...)`` inputs to
    ``(B, num_classes)`` scores, e.g. a strategy's ``predict_scores``) and returns a
    :class:`StepEvaluation`: row ``step`` of the class-IL matrix ``A`` (argmax over the seen classes
    only) and of the task-IL matrix ``TA`` (argmax over each experience's own classes), the accuracy on
    all seen test samples, per-class, top-5 and few-shot base/novel accuracies. It computes no metric
    itself: :class:`~clproto.evaluation.RunResult` derives them from the rows.

    Example — a score function that always prefers class 0::

        import torch

        from clproto import Evaluator, ScenarioConfig, build_scenario, load_dataset

        config = ScenarioConfig(name="split-digits", dataset="digits", class_order="listed", increment=2)
        scenario = build_scenario(config, load_dataset("digits"), seed=0)  # classes (0, 1), (2, 3), ...
        prefer_zero = lambda x: torch.eye(scenario.num_classes)[[0] * len(x)]  # (B, C) scores
        step = Evaluator(scenario).evaluate(prefer_zero, 1)  # as if after training on experience 1
        print(step.accuracy_row)  # [A[1][0], A[1][1], None, None, None]: class 0's share of exp. 0, then 0.0
    """

    def __init__(self, scenario: Scenario, *, batch_size: int = 1024) -> None:
        self.scenario = scenario
        self.batch_size = batch_size

    def _scores(self, score_fn: ScoreFn, x: np.ndarray, idx: np.ndarray) -> torch.Tensor:
        """Scores (N, C) of rows ``idx`` of ``x``, read batch by batch (no copy of the whole test set)."""
        out = []
        for start in range(0, len(idx), self.batch_size):
            batch = torch.from_numpy(x[idx[start:start + self.batch_size]])
            with torch.inference_mode():
                s = score_fn(batch)
            if s.ndim != 2 or s.shape[0] != len(batch) or s.shape[1] != self.scenario.num_classes:
                raise RuntimeError(
                    f"strategy returned scores of shape {tuple(s.shape)}, expected "
                    f"({len(batch)}, {self.scenario.num_classes})"
                )
            out.append(s.float().cpu())  # scored on the strategy's device, chunk by chunk; the matrices on the CPU
        return torch.cat(out)  # (N, C)

    def task_accuracy(self, score_fn: ScoreFn, exp: Experience) -> Optional[float]:
        """Task-IL accuracy on ``exp``'s test set (argmax over its own classes), or ``None`` when any of those
        scores is not finite (a class the strategy cannot score yet). Reads one batch at a time and stops at
        the first non-finite one, so asking a prototype strategy about unseen classes costs one batch."""
        sc = self.scenario
        own = torch.tensor(exp.classes)  # (K,)
        idx = exp.test_indices
        correct = 0
        for start in range(0, len(idx), self.batch_size):
            part = idx[start:start + self.batch_size]
            s = self._scores(score_fn, sc.dataset.test_x, part)[:, own]  # (B, K)
            if not torch.isfinite(s).all():
                return None
            correct += int((own[s.argmax(dim=1)] == torch.from_numpy(sc.dataset.test_y[part])).sum())
        return correct / len(idx)

    def initial_task_accuracy(self, score_fn: ScoreFn) -> list[Optional[float]]:
        """Task-IL accuracy on every experience of the model before any training (GEM's ``b̄_j``), ``None``
        where its scores are not finite. Call it only for strategies that can score before their first
        experience (see ``scores_unseen_classes`` in :mod:`clproto.strategies.base`)."""
        return [self.task_accuracy(score_fn, e) for e in self.scenario]

    def evaluate(self, score_fn: ScoreFn, step: int) -> StepEvaluation:
        """Row ``step`` of every matrix: scores of the test samples of experiences ``0..step`` (see the class)."""
        sc = self.scenario
        exps = list(sc)[: step + 1]
        idx = np.concatenate([e.test_indices for e in exps])
        y = torch.from_numpy(sc.dataset.test_y[idx])  # (N,)
        scores = self._scores(score_fn, sc.dataset.test_x, idx)  # (N, C)

        seen = torch.tensor(exps[-1].seen_classes)
        pred = seen[scores[:, seen].argmax(dim=1)]  # class-IL: argmax over seen classes only
        column = torch.full((sc.num_classes,), -1, dtype=torch.long)
        column[seen] = torch.arange(len(seen))  # class -> its column in scores[:, seen]
        top5 = M.top5_accuracy(scores[:, seen].numpy(), column[y].numpy())
        correct = pred == y  # (N,)

        T = len(sc)
        row: list[Optional[float]] = [None] * T
        task_row: list[Optional[float]] = [None] * T
        start = 0
        for e in exps:
            n = len(e.test_indices)
            sl = slice(start, start + n)
            row[e.index] = float(correct[sl].double().mean())
            own = torch.tensor(e.classes)
            task_pred = own[scores[sl][:, own].argmax(dim=1)]
            task_row[e.index] = float((task_pred == y[sl]).double().mean())
            start += n
        ahead: list[Optional[float]] = [None] * T
        for e in list(sc)[step + 1:]:
            ahead[e.index] = self.task_accuracy(score_fn, e)

        per_class: list[Optional[float]] = [None] * sc.num_classes
        for c in exps[-1].seen_classes:
            m = y == c
            per_class[c] = float(correct[m].double().mean())

        base_acc = novel_acc = None
        if sc.is_few_shot:
            is_base = torch.isin(y, torch.tensor(exps[0].classes))
            base_acc = float(correct[is_base].double().mean())
            if step > 0:
                novel_acc = float(correct[~is_base].double().mean())
        return StepEvaluation(
            accuracy_row=row,
            task_accuracy_row=task_row,
            seen_accuracy=float(correct.double().mean()),
            per_class_accuracy=per_class,
            base_accuracy=base_acc,
            novel_accuracy=novel_acc,
            task_accuracy_ahead=ahead,
            seen_top5_accuracy=top5,
        )
