"""TEEN's α × τ sensitivity on frozen features, and the base-session choice ("auto") next to it.

Regenerates ``reports/teen-sensitivity/`` (README.md, grid.csv, auto.csv)::

    CLPROTO_CACHE=... CLPROTO_DATA=../shared/data CLPROTO_MODELS=../shared/models \\
        nice -n 5 .venv/bin/python benchmarks/teen_sensitivity.py [--data fscil-digits ...]

For each data set (few-shot digits on pixels; few-shot CIFAR-10 and Tiny-ImageNet-100 FSCIL on frozen
MobileNetV1-0.5/160 features) and seed, TEEN runs at every (α, τ) of its default grid with the pair fixed, and
once with ``alpha = tau = "auto"`` (chosen on the base session's training data only, see
clproto/strategies/teen_validation.py). The test metrics of the fixed pairs show the landscape — the best of
them is an oracle (chosen on the test set, not a method); the auto row is what a run without test access gets.
Data sets whose files are absent are skipped with a note.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clproto import REGISTRY, Runner  # noqa: E402
from clproto.config import load_scenario, strategy_from_dict  # noqa: E402
from clproto.errors import ConfigError  # noqa: E402
from clproto.storage import write_text_atomic  # noqa: E402
from clproto.progress import progress_bar  # noqa: E402

MOBILENET = "torchscript:mobilenet_v1_0.5_160_imagenet.pt"
DATA = {  # name -> (scenario file, backbone)
    "fscil-digits": ("scenarios/fscil-digits.toml", "pixels"),
    "fscil-cifar10": ("scenarios/fscil-cifar10.toml", MOBILENET),
    "fscil-tinyimagenet100": ("scenarios/fscil-tinyimagenet100.toml", MOBILENET),
}
METRICS = {  # column -> function of a RunResult's metrics, in %
    "last harmonic mean": lambda m: 100 * m.harmonic_mean[-1],
    "last novel accuracy": lambda m: 100 * m.novel_accuracy[-1],
    "last base accuracy": lambda m: 100 * m.base_accuracy[-1],
    "average session accuracy": lambda m: 100 * m.average_incremental_accuracy,
}


def run_teen(runner: Runner, scenario, backbone: str, seed: int, alpha, tau) -> dict:
    st = strategy_from_dict({"name": f"teen-{alpha}-{tau}", "implementation": "teen", "backbone": backbone,
                             "params": {"alpha": alpha, "tau": tau}}, REGISTRY, where="teen_sensitivity")
    r = runner.run(scenario, st, seed=seed)
    chosen = [n for n in r.notes if n.startswith("teen:")]
    return {"seed": seed, **{k: f(r.metrics) for k, f in METRICS.items()}, "note": chosen[0] if chosen else ""}


def grid_markdown(df: pd.DataFrame, metric: str, alphas, taus) -> str:
    g = df.groupby(["alpha", "tau"])[metric].mean()
    best = g.idxmax()
    lines = ["| α \\ τ | " + " | ".join(f"{t:g}" for t in taus) + " |", "|---|" + "---:|" * len(taus)]
    for a in alphas:
        cells = []
        for t in taus:
            v = f"{g.loc[(a, t)]:.2f}"
            cells.append(f"**{v}**" if (a, t) == best else v)
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", nargs="+", default=list(DATA), choices=list(DATA))
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", default=str(ROOT / "reports" / "teen-sensitivity"))
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9],
                    help="fixed α values of the landscape (auto always searches TEEN's full default grid)")
    ap.add_argument("--taus", type=float, nargs="+", default=[1.0, 4.0, 16.0, 64.0], help="fixed τ values of the landscape")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the machine is shared)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    alphas, taus = tuple(sorted(set(args.alphas) | {0.0, 0.1, 0.5})), tuple(sorted(set(args.taus) | {16.0}))
    runner = Runner(progress=not args.no_progress)
    grid_rows, auto_rows, skipped = [], [], []
    t0 = time.perf_counter()
    for name in args.data:
        path, backbone = DATA[name]
        scenario = load_scenario(ROOT / path)
        try:
            runner.check(scenario, strategy_from_dict({"name": "teen", "implementation": "teen", "backbone": backbone},
                                                      REGISTRY, where=name), args.seeds[0])
        except ConfigError as exc:  # data or model files absent here
            skipped.append(f"{name}: {exc}")
            continue
        jobs = [(a, t, s) for a in alphas for t in taus for s in args.seeds]
        for a, t, s in progress_bar(jobs, desc=f"{name} grid", enabled=not args.no_progress, unit="run"):
            grid_rows.append({"data": name, "alpha": a, "tau": t, **run_teen(runner, scenario, backbone, s, a, t)})
        for s in args.seeds:
            auto_rows.append({"data": name, **run_teen(runner, scenario, backbone, s, "auto", "auto")})
    grid, auto = pd.DataFrame(grid_rows), pd.DataFrame(auto_rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = ["# TEEN: α × τ sensitivity on frozen features, and the base-session choice", "",
             f"Regenerated by `python benchmarks/teen_sensitivity.py` (seeds {args.seeds}; "
             f"{(time.perf_counter() - t0) / 60:.1f} min on a 2-core CPU shared with other jobs). Accuracies in %, "
             "mean over seeds. The fixed-pair grid is measured on the test set: its best cell (bold) is an oracle, "
             "not a method. `auto` chooses α and τ per run on the base session's training data only "
             "(simulated sessions of the scenario's ways and shots over TEEN's full default grid, α ∈ {0, 0.1, ..., 0.9} × τ ∈ {1, 2, ..., 64}; clproto/strategies/teen_validation.py) — what a run without test access gets.", ""]
    for name in grid["data"].unique() if len(grid) else []:
        g, a = grid[grid["data"] == name], auto[auto["data"] == name]
        mean = g.groupby(["alpha", "tau"]).mean(numeric_only=True)
        best = mean["last harmonic mean"].idxmax()
        rows = [("α = 0 (ProtoNet, no calibration)", mean.loc[(0.0, taus[0])]),
                ("official α = 0.5, τ = 16", mean.loc[(0.5, 16.0)]),
                ("official α = 0.1, τ = 16 (CIFAR-100 script)", mean.loc[(0.1, 16.0)]),
                (f"oracle α = {best[0]:g}, τ = {best[1]:g} (best on test)", mean.loc[best]),
                ("auto (base-session validation)", a.mean(numeric_only=True))]
        lines += [f"## {name} (backbone `{DATA[name][1]}`)", "",
                  "| TEEN | " + " | ".join(METRICS) + " |", "|---|" + "---:|" * len(METRICS)]
        for label, r in rows:
            lines.append(f"| {label} | " + " | ".join(f"{r[m]:.2f}" for m in METRICS) + " |")
        lines += ["", "Pairs chosen by `auto`, per seed: " + "; ".join(f"seed {s}: {n.split(':', 1)[1].split(' chosen')[0].strip()}"
                                                                 for s, n in zip(a["seed"], a["note"])) + ".", "",
                  "Last-session harmonic mean of base and novel accuracy over the grid (fixed pairs):", "",
                  grid_markdown(g, "last harmonic mean", alphas, taus)]
    if skipped:
        lines += ["Skipped (files absent):", ""] + [f"* {s}" for s in skipped] + [""]
    write_text_atomic(out / "README.md", "\n".join(lines))
    if len(grid):
        write_text_atomic(out / "grid.csv", grid.to_csv(index=False))
        write_text_atomic(out / "auto.csv", auto.to_csv(index=False))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
