"""scripts/paired_diff.py: per-seed differences of final metrics, checked on hand-made results."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "paired_diff.py"


def _write(folder: Path, seed: int, novel: list[float], final: float) -> None:
    (folder / f"seed{seed}").mkdir(parents=True, exist_ok=True)
    metrics = {"novel_accuracy": novel, "final_accuracy": final}
    (folder / f"seed{seed}" / "results.json").write_text(json.dumps({"metrics": metrics}))


def test_differences_are_paired_by_seed_and_use_the_last_session(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, 0, [None, 0.10, 0.20], 0.50)
    _write(a, 1, [None, 0.10, 0.30], 0.40)
    _write(a, 2, [None, 0.10, 0.30], 0.40)  # no partner in b: left out
    _write(b, 0, [None, 0.90, 0.25], 0.45)
    _write(b, 1, [None, 0.90, 0.20], 0.40)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), "--metrics", "novel_accuracy", "final_accuracy"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "(seed0, seed1)" in lines[0]
    assert lines[1].split() == ["novel_accuracy", "+5.00", "-10.00", "mean", "-2.50"]
    assert lines[2].split() == ["final_accuracy", "-5.00", "+0.00", "mean", "-2.50"]


def test_no_common_seed_or_unknown_metric_is_an_error(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, 0, [0.1], 0.1)
    _write(b, 1, [0.1], 0.1)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b)], capture_output=True, text=True)
    assert proc.returncode == 2 and "no seed<k>/results.json common" in proc.stderr
    _write(b, 0, [0.1], 0.1)
    proc = subprocess.run([sys.executable, str(SCRIPT), str(a), str(b), "--metrics", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and "'nope'" in proc.stderr
