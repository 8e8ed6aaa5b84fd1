#!/usr/bin/env python3
"""Recompute every run's metrics from its accuracy matrices, independently of clproto.

Usage: python scripts/verify_metrics.py RUN_DIR [RUN_DIR ...]

Reads each results.json under the given folders with the json module only (no clproto
import), recomputes the headline metrics from ``accuracy_matrix``, ``task_accuracy_matrix``
and ``seen_accuracy`` (and, in newer files, forward transfer from ``task_accuracy_ahead`` and
``initial_task_accuracy``) with numpy, and compares them with the stored ``metrics`` exactly
(bit for bit). It also checks that ``seen_accuracy`` equals the test-size-weighted mean of
the matrix row (to 1e-12). Exit code 1 on any mismatch.
"""

import json
import sys
from pathlib import Path

import numpy as np


def recompute(r: dict) -> dict:
    A = r["accuracy_matrix"]
    T = len(A)
    seen = r["seen_accuracy"]

    def avg_acc(M):
        return float(sum(M[T - 1][j] for j in range(T)) / T)

    def forgetting(M):
        if T < 2:
            return None
        return float(sum(max(M[l][j] for l in range(j, T - 1)) - M[T - 1][j] for j in range(T - 1)) / (T - 1))

    out = {
        "final_accuracy": float(seen[-1]),
        "average_accuracy": avg_acc(A),
        "average_incremental_accuracy": float(sum(seen) / len(seen)),
        "forgetting": forgetting(A),
        "forgetting_from_first": None if T < 2 else float(sum(A[j][j] - A[T - 1][j] for j in range(T - 1)) / (T - 1)),
        "bwt": None if T < 2 else float(sum(A[T - 1][j] - A[j][j] for j in range(T - 1)) / (T - 1)),
        "task_il_final_accuracy": avg_acc(r["task_accuracy_matrix"]),
        "task_il_forgetting": forgetting(r["task_accuracy_matrix"]),
    }
    if r["kind"] == "few-shot":
        out["performance_drop"] = float(seen[0] - seen[-1])
    if "forward_transfer" in r["metrics"]:  # newer files: GEM FWT from the task-IL entries ahead of the diagonal
        ahead, b = r["task_accuracy_ahead"], r["initial_task_accuracy"]
        needed = [(ahead[j - 1][j], b[j]) for j in range(1, T)] if ahead is not None and b is not None else [None]
        defined = T > 1 and all(p is not None and p[0] is not None and p[1] is not None for p in needed)
        out["forward_transfer"] = float(sum(a - c for a, c in needed) / (T - 1)) if defined else None
        top5 = r["seen_top5_accuracy"]
        out["final_top5_accuracy"] = top5[-1] if top5 else None
    return out


def check(path: Path) -> list[str]:
    r = json.loads(path.read_text())
    problems = []
    for key, value in recompute(r).items():
        if r["metrics"][key] != value:
            problems.append(f"{path}: {key} stored {r['metrics'][key]!r}, recomputed {value!r}")
    sizes = np.array(r["test_sizes"], dtype=float)
    for t, row in enumerate(r["accuracy_matrix"]):
        weighted = float(np.dot(row[: t + 1], sizes[: t + 1]) / sizes[: t + 1].sum())
        if abs(weighted - r["seen_accuracy"][t]) > 1e-12:
            problems.append(f"{path}: seen_accuracy[{t}] {r['seen_accuracy'][t]} != weighted row mean {weighted}")
    return problems


def main(argv: list[str]) -> int:
    files = [f for d in argv for f in (sorted(Path(d).rglob("results.json")) if Path(d).is_dir() else [Path(d)])]
    if not files:
        print("no results.json found", file=sys.stderr)
        return 2
    problems = [p for f in files for p in check(f)]
    for p in problems:
        print(p)
    print(f"{len(files)} results checked, {len(problems)} mismatches")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
