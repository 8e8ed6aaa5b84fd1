"""Per-seed (paired) difference of final metrics between two strategies' run folders.

    python scripts/paired_diff.py BASELINE_DIR OTHER_DIR [--metrics novel_accuracy harmonic_mean final_accuracy]

Each DIR is ``<out>/<scenario>/<strategy>`` holding ``seed<k>/results.json``; seeds present in both are paired
(same seed = same class order and shots), and OTHER − BASELINE is printed per seed in points, with the mean.
For per-session metrics (few-shot lists) the last session's value is used.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def final(metrics: dict, name: str) -> float:
    value = metrics[name]
    return value[-1] if isinstance(value, list) else value


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("baseline", type=Path)
    ap.add_argument("other", type=Path)
    ap.add_argument("--metrics", nargs="+", default=["novel_accuracy", "harmonic_mean", "final_accuracy"])
    args = ap.parse_args()
    seeds = sorted({p.parent.name for p in args.baseline.glob("seed*/results.json")}
                   & {p.parent.name for p in args.other.glob("seed*/results.json")})
    if not seeds:
        print(f"error: no seed<k>/results.json common to {args.baseline} and {args.other}", file=sys.stderr)
        return 2
    runs = {d: {s: json.loads((d / s / "results.json").read_text())["metrics"] for s in seeds}
            for d in (args.baseline, args.other)}
    print(f"{args.other.name} − {args.baseline.name}, points, paired by seed ({', '.join(seeds)})")
    for name in args.metrics:
        try:
            diffs = [100 * (final(runs[args.other][s], name) - final(runs[args.baseline][s], name)) for s in seeds]
        except KeyError:
            print(f"error: metric {name!r} is not in results.json", file=sys.stderr)
            return 2
        print(f"{name:<16} " + " ".join(f"{d:+6.2f}" for d in diffs) + f"   mean {sum(diffs) / len(diffs):+.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
