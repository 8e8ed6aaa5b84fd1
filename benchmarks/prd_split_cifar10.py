"""PRD vs fine-tuning vs joint training on Split-CIFAR-10 (5 tasks x 2 classes), 3 seeds, on CPU.

    CLPROTO_DATA=../shared/data nice -n 5 .venv/bin/python benchmarks/prd_split_cifar10.py \
        --train-per-class 200 --test-per-class 300 --epochs 5 --seeds 0 1 2 --threads 1 \
        --strategies finetune prd joint --ablation

Runs scenarios/split-cifar10.toml with strategies/{prd,finetune,joint}.toml through clproto's
Runner (results.json per run under --out; an interrupted benchmark resumes: finished runs are
kept, unfinished ones continue from their last per-experience checkpoint), then writes
``README.md`` (tables of class-IL and task-IL accuracy and forgetting, mean ± std over seeds,
mean accuracy matrices, timings) plus summary.md/csv and figures into --report. Every number
in the report comes from the results.json files; the metrics themselves are computed by
clproto.evaluation.metrics when the runs finish.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clproto.config import config_hash, load_scenario, load_strategy, parse_override, read_toml, strategy_from_dict  # noqa: E402
from clproto.evaluation.results import RunResult  # noqa: E402
from clproto.reports.build import write_report  # noqa: E402
from clproto.runner import Runner, resolved_config, run_dir  # noqa: E402
from clproto.strategies import REGISTRY  # noqa: E402

STRATEGIES = ("prd", "finetune", "joint")
COLUMNS = [  # (metric in results.json, title, higher is better)
    ("final_accuracy", "Class-IL acc. (final)", True),
    ("average_incremental_accuracy", "Class-IL avg. inc. acc.", True),
    ("forgetting", "Class-IL forgetting", False),
    ("task_il_final_accuracy", "Task-IL acc. (final)", True),
    ("task_il_forgetting", "Task-IL forgetting", False),
]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train-per-class", type=int, default=200, help="training images per class (CIFAR-10 has 5000)")
    p.add_argument("--test-per-class", type=int, default=300, help="test images per class (CIFAR-10 has 1000)")
    p.add_argument("--epochs", type=int, default=5, help="epochs per task for every strategy (paper: 100)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--out", help="run folders (default: runs/bench-prd-split-cifar10/train<N>-test<M>-e<epochs>)")
    p.add_argument("--report", default=str(ROOT / "reports" / "prd-split-cifar10"), help="report folder")
    p.add_argument("--ablation", action="store_true",
                   help='also run "prd-no-distill": PRD with lambda_distill = 0 (no relation distillation)')
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra overrides, e.g. prd.params.lr=0.1")
    args = p.parse_args(argv)
    if args.out is None:  # one folder per budget and overrides: run folders do not encode the configuration
        name = f"train{args.train_per_class}-test{args.test_per_class}-e{args.epochs}"
        if args.overrides:
            name += "-set" + hashlib.sha256(";".join(args.overrides).encode()).hexdigest()[:8]
        args.out = str(ROOT / "runs" / "bench-prd-split-cifar10" / name)
    return args


def fmt(values: list[float]) -> str:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return "–"
    mean = 100 * float(np.mean(v))
    return f"{mean:.2f} ± {100 * float(np.std(v, ddof=1)):.2f}" if len(v) > 1 else f"{mean:.2f}"


def run_seconds(r: RunResult) -> float:
    """Training + evaluation time of a run, complete even when it was resumed from a checkpoint."""
    return float(sum(r.timings.fit_s) + sum(r.timings.eval_s))


def mean_matrix(results: list[RunResult], key: str) -> list[list[str]]:
    mats = [getattr(r, key) for r in results]
    T = len(mats[0])
    out = []
    for t in range(T):
        row = []
        for j in range(T):
            vals = [m[t][j] for m in mats if m[t][j] is not None]
            row.append(f"{100 * float(np.mean(vals)):.1f}" if vals else "")
        out.append(row)
    return out


def render(results: dict[str, list[RunResult]], args: argparse.Namespace, command: str, wall_s: float,
           scenario, strategies) -> str:
    lines = ["# PRD vs fine-tuning vs joint training on Split-CIFAR-10 (CPU budget)", ""]
    lines += ["Produced by (from the repository root):", "", "```", command, "```", ""]
    p = strategies[STRATEGIES[0]].params if STRATEGIES[0] in strategies else next(iter(strategies.values())).params
    lines += [
        "## Budget",
        "",
        f"* Split-CIFAR-10 from `../shared/data/cifar10.zip` (JPEG re-encoded CIFAR-10), 5 tasks x 2 classes, class order "
        f"random per seed; **{args.train_per_class} training images per class** (of 5000) and "
        f"**{args.test_per_class} test images per class** (of 1000), seeded subsets.",
        f"* Every strategy: {p.architecture} from scratch, **{args.epochs} epochs per task** (the paper trains 100 epochs "
        f"per task on the full data), batch {p.batch_size}, SGD lr {p.lr} momentum {p.momentum} weight decay "
        f"{p.weight_decay}, {p.schedule} schedule per task, random crop (pad {p.crop_padding}) + flip.",
        f"* Seeds {args.seeds}; `torch.set_num_threads({args.threads})` on a 2-core machine shared with other jobs; "
        f"training + evaluation time summed over the {sum(len(rs) for rs in results.values())} runs "
        f"{sum(run_seconds(r) for rs in results.values() for r in rs) / 60:.1f} min (`timings.fit_s` + `eval_s`); this "
        f"invocation took {wall_s / 60:.1f} min (runs already finished by an earlier invocation are read, not re-run).",
        "",
    ]
    if "prd" in strategies:
        q = strategies["prd"].params
        lines += [f"PRD: λ_p = {q.lambda_prototype}, λ_d = {q.lambda_distill}, SupCon τ = {q.supcon_temperature}, "
                  f"distillation T = {q.distill_temperature}, relation softmax over {q.relation_axis}, prototype lr "
                  f"{q.prototype_lr} (official code: 0.01)."
                  + (" `prd-no-distill` is the same definition with λ_d = 0 (ablation)." if "prd-no-distill" in strategies
                     else ""), ""]
    lines += ["## Results (accuracies in %, mean ± sample std over seeds)", ""]
    lines.append("| Strategy | " + " | ".join(f"{t} {'↑' if hi else '↓'}" for _, t, hi in COLUMNS) + " | Train + eval per run (s) |")
    lines.append("|---" * (len(COLUMNS) + 2) + "|")
    for name, rs in results.items():
        cells = [fmt([getattr(r.metrics, m) for r in rs]) for m, _, _ in COLUMNS]
        secs = np.mean([run_seconds(r) for r in rs])
        lines.append(f"| {name} ({len(rs)} seeds) | " + " | ".join(cells) + f" | {secs:.0f} |")
    lines += ["", "Class-IL: argmax over all classes seen so far; task-IL: argmax within the task's own classes. "
              "Forgetting: Chaudhry et al. 2018 (max earlier accuracy on a task minus its final accuracy), averaged over "
              "all but the last task. All values from `results.json` (`metrics`).", ""]
    if "prd" in results and "finetune" in results:
        lines += ["**PRD vs fine-tuning, seed by seed** (PRD / fine-tuning, %)", "",
                  "| Seed | " + " | ".join(t for _, t, _ in COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
        by_seed = {r.seed: r for r in results["finetune"]}
        for r in results["prd"]:
            f = by_seed.get(r.seed)
            if f is None:
                continue
            cells = []
            for m, _, _ in COLUMNS:
                a, b = getattr(r.metrics, m), getattr(f.metrics, m)
                cells.append("–" if a is None or b is None else f"{100 * a:.2f} / {100 * b:.2f}")
            lines.append(f"| {r.seed} | " + " | ".join(cells) + " |")
        lines.append("")
    for name, rs in results.items():
        T = len(rs[0].accuracy_matrix)
        for key, title in (("accuracy_matrix", "class-IL"), ("task_accuracy_matrix", "task-IL")):
            lines += [f"**{name}: mean {title} accuracy matrix** (row = after training task t, column = task j)", ""]
            lines.append("| t \\ j | " + " | ".join(str(j) for j in range(T)) + " |")
            lines.append("|---" * (T + 1) + "|")
            for t, row in enumerate(mean_matrix(rs, key)):
                lines.append(f"| {t} | " + " | ".join(row) + " |")
            lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    os.environ.setdefault("CLPROTO_DATA", str(ROOT.parent / "shared" / "data"))
    overrides = [parse_override(o) for o in [
        f"scenario.train_per_class={args.train_per_class}", f"scenario.test_per_class={args.test_per_class}",
        f"strategy.params.epochs={args.epochs}", *args.overrides]]
    scenario = load_scenario(ROOT / "scenarios" / "split-cifar10.toml", overrides=overrides)
    strategies = {s: load_strategy(ROOT / "strategies" / f"{s}.toml", REGISTRY, overrides=overrides) for s in args.strategies}
    if args.ablation:  # the same definition with relation distillation switched off
        data = read_toml(ROOT / "strategies" / "prd.toml")["strategy"]
        data = {**data, "name": "prd-no-distill", "params": {**data["params"], "lambda_distill": 0.0},
                "description": "PRD without relation distillation (lambda_distill = 0)"}
        strategies["prd-no-distill"] = strategy_from_dict(data, REGISTRY, where="strategies/prd.toml (ablation)",
                                                          overrides=overrides)
    runner = Runner(progress=True)
    t0 = time.perf_counter()
    results: dict[str, list[RunResult]] = {s: [] for s in strategies}
    for seed in args.seeds:
        for name, strat in strategies.items():
            folder = run_dir(args.out, scenario.name, strat.name, seed)
            done = folder / "results.json"
            chash = config_hash(resolved_config(scenario, strat, seed))
            if done.exists() and json.loads(done.read_text()).get("config_hash") == chash:
                r = RunResult.load(done)
            else:
                r = runner.run(scenario, strat, seed=seed, out_dir=args.out)
            results[name].append(r)
            print(f"{name} seed {seed}: class-IL {100 * r.metrics.final_accuracy:.2f}%  task-IL "
                  f"{100 * r.metrics.task_il_final_accuracy:.2f}%  ({r.timings.total_s:.0f}s)", file=sys.stderr, flush=True)
    wall = time.perf_counter() - t0
    report = Path(args.report)
    write_report([r for rs in results.values() for r in rs], report)
    command = "CLPROTO_DATA=../shared/data nice -n 5 .venv/bin/python benchmarks/prd_split_cifar10.py " + " ".join(
        [f"--train-per-class {args.train_per_class}", f"--test-per-class {args.test_per_class}", f"--epochs {args.epochs}",
         "--seeds " + " ".join(map(str, args.seeds)), f"--threads {args.threads}"]
        + (["--strategies " + " ".join(args.strategies)] if list(args.strategies) != list(STRATEGIES) else [])
        + (["--ablation"] if args.ablation else [])
        + [f"--set {o}" for o in args.overrides])
    text = render(results, args, command, wall, scenario, strategies)
    tmp = report / ".README.md.tmp"
    tmp.write_text(text)
    os.replace(tmp, report / "README.md")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
