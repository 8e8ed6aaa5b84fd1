"""Top-5 accuracy and the task-IL entries forward transfer needs, as the evaluator and the runner measure them,
against an independent numpy re-computation on the shared tiny fixture."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from clproto.config import strategy_from_dict
from clproto.evaluation import metrics as M
from clproto.evaluation.evaluator import Evaluator
from clproto.evaluation.results import RunResult
from clproto.runner import Runner
from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import build_scenario
from clproto.strategies import REGISTRY
from conftest import make_tiny_dataset

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ScenarioConfig(name="tiny12", dataset="tiny", increment=4)  # 12 classes: 3 experiences of 4 (random order)


def _scenario():
    return build_scenario(SCENARIO, make_tiny_dataset(num_classes=12), seed=3)


def _weights(sc) -> np.ndarray:
    return np.random.default_rng(7).normal(size=(sc.dataset.test_x[0].size, sc.num_classes))  # (D, C)


def _linear(W: np.ndarray, mask: torch.Tensor | None = None):
    def score(x: torch.Tensor) -> torch.Tensor:
        s = x.reshape(len(x), -1).double() @ torch.from_numpy(W)  # (B, C)
        return s if mask is None else s.masked_fill(~mask, float("-inf"))
    return score


def _task_accuracy(S: np.ndarray, y: np.ndarray, idx: np.ndarray, classes: list) -> float:
    own = np.asarray(classes)
    return float((own[S[idx][:, own].argmax(axis=1)] == y[idx]).mean())


def test_entries_ahead_of_the_diagonal_and_top5_match_numpy():
    sc = _scenario()
    W = _weights(sc)
    S = sc.dataset.test_x.reshape(len(sc.dataset.test_x), -1).astype(np.float64) @ W  # (N, C)
    y = sc.dataset.test_y
    ev = Evaluator(sc, batch_size=7)  # several batches per experience
    exps = list(sc)

    first = ev.evaluate(_linear(W), 0)
    assert first.task_accuracy_ahead[0] is None
    for j in (1, 2):
        assert first.task_accuracy_ahead[j] == pytest.approx(_task_accuracy(S, y, exps[j].test_indices, exps[j].classes))
    assert first.seen_top5_accuracy is None  # 4 seen classes
    assert ev.evaluate(_linear(W), 1).seen_top5_accuracy is None  # 8

    last = ev.evaluate(_linear(W), 2)
    assert last.task_accuracy_ahead == [None, None, None]
    idx = np.concatenate([e.test_indices for e in exps])
    seen = np.asarray(exps[-1].seen_classes)
    top5 = np.argsort(-S[idx][:, seen], axis=1, kind="stable")[:, :5]  # columns of the five best seen classes
    expected = float((seen[top5] == y[idx][:, None]).any(axis=1).mean())
    assert last.seen_top5_accuracy == pytest.approx(expected)
    assert 0 < expected < 1  # the check can fail both ways

    initial = ev.initial_task_accuracy(_linear(W))
    assert initial == pytest.approx([_task_accuracy(S, y, e.test_indices, e.classes) for e in exps])


def test_unseen_classes_scored_minus_inf_leave_the_entries_undefined():
    sc = _scenario()
    mask = torch.zeros(sc.num_classes, dtype=torch.bool)
    mask[list(sc[0].classes)] = True  # only the first experience's classes are scorable
    ev = Evaluator(sc)
    step = ev.evaluate(_linear(_weights(sc), mask), 0)
    assert step.task_accuracy_ahead == [None, None, None]
    assert ev.initial_task_accuracy(_linear(_weights(sc), mask))[1:] == [None, None]


# --------------------------------------------------------------------------- through the runner
@dataclass
class HeadConfig:
    scale: float = 1.0  # weight of the class means added to the random head


class RandomHead:
    """A random linear head on pixels; each experience adds its classes' mean images to their columns.
    Unseen classes keep finite random scores, so forward transfer is defined."""

    Config = HeadConfig
    input_kind = "images"
    scores_unseen_classes = True

    def __init__(self, *, config: HeadConfig, num_classes: int, seed: int) -> None:
        self.config, self.num_classes = config, num_classes
        self.W = None
        self.seed = seed

    def _build(self, dim: int) -> None:
        if self.W is None:
            g = torch.Generator().manual_seed(self.seed)
            self.W = torch.randn(dim, self.num_classes, generator=g, dtype=torch.float64)  # (D, C)

    def fit_experience(self, experience) -> None:
        ds = experience.dataset
        x = torch.from_numpy(ds.train_x[experience.train_indices]).reshape(len(experience.train_indices), -1).double()
        self._build(x.shape[1])
        self.W = self.W.clone()  # built under the evaluator's inference mode: a normal tensor to update
        y = torch.from_numpy(ds.train_y[experience.train_indices])
        for c in experience.classes:
            self.W[:, c] += self.config.scale * x[y == c].mean(dim=0) / 255.0

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        f = x.reshape(len(x), -1).double()  # (B, D)
        self._build(f.shape[1])
        return (f @ self.W).float()  # (B, C)


def _runner(registry) -> Runner:
    return Runner(registry=registry, progress=False, datasets={"tiny": make_tiny_dataset(num_classes=12)})


def test_runner_reports_forward_transfer_only_for_strategies_that_score_unseen_classes(tmp_path):
    registry = REGISTRY.copy()
    registry.register("random-head", RandomHead)
    head = _runner(registry).run(SCENARIO, strategy_from_dict({"name": "head", "implementation": "random-head"},
                                                              registry), seed=0, out_dir=tmp_path)
    assert all(b is not None for b in head.initial_task_accuracy)
    assert head.task_accuracy_ahead[0][1] is not None and head.task_accuracy_ahead[1][2] is not None
    assert head.metrics.forward_transfer == M.forward_transfer(head.task_accuracy_ahead, head.initial_task_accuracy)
    assert head.metrics.forward_transfer is not None
    assert head.metrics.final_top5_accuracy == head.seen_top5_accuracy[-1] is not None
    assert head.seen_top5_accuracy[:2] == [None, None]
    assert head.accuracy_matrix[0][1] is None  # class-IL matrix unchanged: nothing above the diagonal
    verify = subprocess.run([sys.executable, str(ROOT / "scripts" / "verify_metrics.py"), str(tmp_path)],
                            capture_output=True, text=True)  # recomputed without clproto, bit for bit
    assert verify.returncode == 0 and "1 results checked, 0 mismatches" in verify.stdout, verify.stdout

    nmc = _runner(registry).run(SCENARIO, strategy_from_dict({"name": "nmc-px", "implementation": "nmc",
                                                              "backbone": "pixels"}, registry), seed=0)
    assert nmc.initial_task_accuracy is None and nmc.metrics.forward_transfer is None
    assert all(v is None for row in nmc.task_accuracy_ahead for v in row)
    assert nmc.metrics.final_top5_accuracy is not None


def test_older_results_without_the_new_keys_still_load(tmp_path):
    registry = REGISTRY.copy()
    r = _runner(registry).run(SCENARIO, strategy_from_dict({"name": "nmc-px", "implementation": "nmc",
                                                            "backbone": "pixels"}, registry), seed=0)
    d = r.to_dict()
    for key in ("seen_top5_accuracy", "task_accuracy_ahead", "initial_task_accuracy"):
        del d[key]
    for key in ("final_top5_accuracy", "forward_transfer"):
        del d["metrics"][key]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(d))
    old = RunResult.load(path)
    assert old.seen_top5_accuracy is None and old.metrics.forward_transfer is None
    assert old.accuracy_matrix == r.accuracy_matrix
    assert dataclasses.replace(old.metrics, final_top5_accuracy=r.metrics.final_top5_accuracy) == r.metrics
