"""Real-data smoke tests on per-class subsets of the shared zips with the MobileNetV1-0.5/160 backbone.

Slow (marked ``slow``) and skipped when ../shared is absent. The subsets are cut from the shared
zips into a temporary folder, so a cold cache costs seconds, not the minutes of a full pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from imagezips import subset_zip

from clproto.cli import main
from clproto.data.sources import load_dataset

ROOT_SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"
ROOT_STRATEGIES = ROOT_SCENARIOS.parent / "strategies"
MODEL = "models/mobilenet_v1_0.5_160_imagenet.pt"

pytestmark = pytest.mark.slow


def _run(tmp_path, shared, scenario: str, dataset: str, out: str, *extra: str) -> dict:
    code = main(["run", str(ROOT_SCENARIOS / scenario), str(ROOT_STRATEGIES / "nmc.toml"), *extra,
                 "--seeds", "0", "--set", f"scenario.dataset={dataset}", "--data-root", str(tmp_path),
                 "--models-root", str(shared / "models"), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress", "--out", str(tmp_path / out)])
    assert code == 0
    name = scenario.removesuffix(".toml") + "@dataset=" + dataset.replace(":", "_")  # --set names the scenario
    return json.loads((tmp_path / out / name / "nmc" / "seed0" / "results.json").read_text())


def test_split_cifar10_subset_miss_then_hit(tmp_path):
    from conftest import require_shared

    shared = require_shared("data/cifar10.zip", MODEL)
    subset_zip(shared / "data/cifar10.zip", tmp_path / "cifar-sub.zip", train=10, test=5)
    first = _run(tmp_path, shared, "split-cifar10.toml", "imagefolder:cifar-sub.zip", "r1")
    second = _run(tmp_path, shared, "split-cifar10.toml", "imagefolder:cifar-sub.zip", "r2")
    assert "miss" in first["notes"][0] and "hit" in second["notes"][0]
    assert first["accuracy_matrix"] == second["accuracy_matrix"]  # cached features give identical numbers
    assert first["metrics"]["final_accuracy"] > 0.25  # 10 classes: chance is 0.10
    assert second["timings"]["features_s"] == 0.0


def test_fscil_tinyimagenet100_subset(tmp_path):
    from conftest import require_shared

    shared = require_shared("data/tiny-imagenet-100.zip", MODEL)
    subset_zip(shared / "data/tiny-imagenet-100.zip", tmp_path / "tin-sub.zip", train=5, test=2)
    ds = load_dataset("imagefolder:tin-sub.zip", data_root=tmp_path, cache_dir=tmp_path / "cache", progress=False)
    assert ds.num_classes == 100 and ds.train_x.shape[1:] == (64, 64, 3)  # greyscale members became RGB
    assert np.bincount(ds.train_y).tolist() == [5] * 100
    result = _run(tmp_path, shared, "fscil-tinyimagenet100.toml", "imagefolder:tin-sub.zip", "r")
    assert len(result["accuracy_matrix"]) == 9  # base session + 8 sessions of 5-way 5-shot
    assert [len(c) for c in result["experience_classes"]] == [60] + [5] * 8
    assert result["metrics"]["final_accuracy"] > 0.05  # 100 classes: chance is 0.01
