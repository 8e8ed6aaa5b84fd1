"""scripts/diff_runs.py: runs matched by configuration, every number compared exactly."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def write_run(folder, name, config, matrix):
    run = folder / name / "seed0"
    run.mkdir(parents=True)
    result = {"config": config, "accuracy_matrix": matrix, "task_accuracy_matrix": matrix, "seen_accuracy": [0.5],
              "per_class_accuracy": [[0.5, None]], "metrics": {"final_accuracy": matrix[-1][-1], "bwt": None}}
    (run / "results.json").write_text(json.dumps(result))


def diff(a, b):
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "diff_runs.py"), str(a), str(b)],
                          capture_output=True, text=True, timeout=120)


def test_same_configuration_same_numbers_is_exit_0_and_a_changed_number_is_named(tmp_path):
    cfg = {"scenario": {"name": "s", "description": "x"}, "strategy": {"name": "n"}, "seed": 0}
    write_run(tmp_path / "a", "n", cfg, [[0.5]])
    # another folder name and description: the same run (identity = configuration without free text)
    write_run(tmp_path / "b", "renamed", {**cfg, "scenario": {"name": "s", "description": "edited"}}, [[0.5]])
    out = diff(tmp_path / "a", tmp_path / "b")
    assert out.returncode == 0 and "1 runs in both: 1 identical, 0 differ" in out.stdout
    write_run(tmp_path / "c", "n", cfg, [[0.5000001]])
    write_run(tmp_path / "c", "other", {**cfg, "seed": 1}, [[0.5]])
    out = diff(tmp_path / "a", tmp_path / "c")
    assert out.returncode == 1
    assert "DIFFERS n/seed0" in out.stdout and "accuracy_matrix[0][0]: 0.5 != 0.5000001" in out.stdout
    assert "only after: other/seed0" in out.stdout
