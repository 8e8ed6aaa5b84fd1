"""Compare two runs folders run by run: the same configuration must give the same numbers.

    python scripts/diff_runs.py runs/reference-before runs/reference [--atol 0]

Runs are matched by their identity (the run hash recomputed from each recorded configuration, as
``clproto run`` does), never by folder name. For every pair the accuracy matrices, the task-IL
matrices, the per-step seen accuracies and every headline metric are compared (exactly by default).
Prints one line per differing run and a summary; exit 1 if any number differs, 0 otherwise. Runs present
on one side only are listed (a refactor that keeps every number has none it cannot match, except
definitions changed on purpose).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clproto.config import run_hash  # noqa: E402

FIELDS = ("accuracy_matrix", "task_accuracy_matrix", "seen_accuracy", "per_class_accuracy")


def runs(folder: Path) -> dict[str, dict]:
    """run hash -> results.json of every finished run under ``folder``."""
    out = {}
    for path in sorted(folder.rglob("results.json")):
        result = json.loads(path.read_text())
        result["_path"] = str(path.relative_to(folder).parent)
        out[run_hash(result["config"])] = result
    return out


def flat(value, prefix=""):
    """(label, number-or-None) pairs of a nested list/dict of numbers."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from flat(v, f"{prefix}.{k}" if prefix else k)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from flat(v, f"{prefix}[{i}]")
    else:
        yield prefix, value


def differences(a: dict, b: dict, atol: float) -> list[str]:
    out = []
    for field in (*FIELDS, "metrics"):
        left, right = dict(flat(a.get(field))), dict(flat(b.get(field)))
        for key in sorted(set(left) | set(right)):
            x, y = left.get(key), right.get(key)
            if isinstance(x, (int, float)) and isinstance(y, (int, float)):
                if not math.isclose(x, y, rel_tol=0.0, abs_tol=atol):
                    out.append(f"{field}{'.' if field == 'metrics' else ''}{key}: {x!r} != {y!r}")
            elif x != y:
                out.append(f"{field}.{key}: {x!r} != {y!r}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (default 0: exact)")
    args = ap.parse_args()
    before, after = runs(args.before), runs(args.after)
    shared = sorted(set(before) & set(after), key=lambda h: before[h]["_path"])
    bad = 0
    for h in shared:
        diff = differences(before[h], after[h], args.atol)
        if diff:
            bad += 1
            print(f"DIFFERS {before[h]['_path']}: {len(diff)} numbers, e.g. {diff[0]}")
    for side, mine, other in (("before", before, after), ("after", after, before)):
        for h in sorted(set(mine) - set(other), key=lambda h: mine[h]["_path"]):
            print(f"only {side}: {mine[h]['_path']}")
    print(f"{len(shared)} runs in both: {len(shared) - bad} identical, {bad} differ; "
          f"{len(set(before) - set(after))} only before, {len(set(after) - set(before))} only after")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
