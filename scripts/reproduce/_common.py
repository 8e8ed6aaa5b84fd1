"""What every reproduction script shares: options, runs, the paper-vs-measured table and its verdict.

A script in ``scripts/reproduce/`` describes one paper's protocol as a :class:`Reproduction` — the
scenario definition, the strategy definitions, the paper's figures (each with where it comes from and
the tolerance the script allows), the GPU budget and how the setting differs from the paper's — and
calls :func:`main`. ``main`` then

1. reads the definitions through the public API (:func:`clproto.load_scenario`,
   :func:`clproto.load_strategy`), applying the ``--smoke`` shrinkage when asked;
2. runs every (strategy, seed) with one :class:`clproto.Runner` (a backbone's features are computed
   once and shared), writing ``<out>/<scenario>/<strategy>/seed<k>/results.json`` as ``clproto run``
   does; a run already finished there with the same configuration is read back, not run again, and a
   trained strategy resumes from its last checkpoint;
3. prints the comparison — paper figure, measured mean ± std over seeds, difference, tolerance,
   verdict, source — and writes it to ``<out>/comparison-<name>.md`` and ``.json`` (atomically);
4. returns 0 when every paper figure is met within its tolerance (or the script has none to check),
   1 when one is outside, 2 on bad input (a missing dataset or weights file, ...: one line naming it).

``--smoke`` shrinks the budget to one tiny epoch on a few images and the first seed (the script's
:class:`Smoke`), for checking a script end to end on a synthetic stand-in; its numbers mean nothing and are
not checked.
A few-shot protocol's published index lists need the real dataset, so a smoke run writes lists of the
same shape (base classes, ways, shots, sessions) from the dataset's own first images instead.

Devices: every script takes ``--device``, ``--precision`` and ``--deterministic`` like ``clproto run``
(:func:`build_parser` adds them, :func:`_run` passes them to :class:`clproto.Runner`); the default is the
CPU in fp32. No script has been run on a GPU here.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

import clproto  # noqa: E402
from clproto import ConfigError, RunResult  # noqa: E402
from clproto.cli_common import add_compute, compute_settings  # noqa: E402
from clproto.config import run_hash  # noqa: E402
from clproto.storage import write_json_atomic, write_text_atomic  # noqa: E402
from clproto.runner import resolved_config, run_dir  # noqa: E402
from clproto.scenarios.config import ScenarioConfig  # noqa: E402

SCENARIOS = ROOT / "scenarios"
DEFINITIONS = Path(__file__).resolve().parent / "definitions"


# --------------------------------------------------------------------------- what a script declares
@dataclass(frozen=True)
class Figure:
    """One published number and how closely the reproduction must meet it (accuracies in %)."""

    metric: str  # "session:<k>", "average", "pd", "final", "avg_inc", "task_il_final" (see METRICS)
    paper: Optional[float]  # the published value in %; None = not found (the source says why)
    source: str  # where the number comes from (paper, table or figure, file), or why there is none
    tolerance: float = 0.0  # allowed |measured - paper| in points


@dataclass(frozen=True)
class Budget:
    """What a full run costs."""

    gpu: str  # the paper's budget on a GPU: hours and memory
    cpu: str  # what it costs here until clproto runs on accelerators


@dataclass(frozen=True)
class Smoke:
    """How ``--smoke`` shrinks the run: overrides of the definitions (``key=value`` as ``clproto run --set``)."""

    scenario: tuple[str, ...] = ()  # e.g. "scenario.test_per_class=2"
    strategy: tuple[str, ...] = ()  # e.g. "strategy.backbone.epochs=1"
    fscil_lists: bool = False  # write index lists of the protocol's shape from the dataset's own images
    base_per_class: int = 2  # smoke index lists: base-session images per base class


@dataclass(frozen=True)
class Reproduction:
    """One paper's protocol, as a reproduction script runs it."""

    name: str  # file-name safe, e.g. "teen-fscil-miniimagenet"
    paper: str  # e.g. "TEEN (Wang et al., NeurIPS 2023)"
    scenario: Path  # scenario definition
    strategies: tuple[Path, ...]  # strategy definitions
    figures: dict  # strategy definition name -> tuple of Figure (rows of the comparison, in order)
    budget: Budget
    deviations: tuple[str, ...] = ()  # how this setting differs from the paper's (printed with the table)
    seeds: tuple[int, ...] = (0,)  # default --seeds
    smoke: Smoke = Smoke()
    replaceable_backbone: bool = False  # frozen-feature scripts: --backbone replaces the definitions' backbone


METRICS = {  # metric -> (label, value of a RunResult as a fraction, or None)
    "average": ("average over sessions", lambda r: r.metrics.average_incremental_accuracy),
    "pd": ("PD (first - last session)", lambda r: r.metrics.performance_drop),
    "final": ("final accuracy (last step)", lambda r: r.metrics.final_accuracy),
    "avg_inc": ("average incremental accuracy", lambda r: r.metrics.average_incremental_accuracy),
    "task_il_final": ("task-IL final accuracy", lambda r: r.metrics.task_il_final_accuracy),
}


def metric_label(metric: str) -> str:
    if metric.startswith("session:"):
        return f"session {metric.split(':', 1)[1]}"
    return METRICS[metric][0]


def metric_value(result: RunResult, metric: str) -> Optional[float]:
    """The metric of one run in %, or None where it is undefined."""
    if metric.startswith("session:"):
        k = int(metric.split(":", 1)[1])
        value = result.seen_accuracy[k] if k < len(result.seen_accuracy) else None
    else:
        value = METRICS[metric][1](result)
    return None if value is None else 100.0 * value


def fscil_figures(sessions: Sequence[Optional[float]], *, average: Optional[float], pd: Optional[float],
                  source: str, tolerance: float, missing: str = "") -> tuple[Figure, ...]:
    """Rows for a few-shot protocol: every session, the average over sessions and the performance drop.

    ``sessions`` holds the paper's per-session accuracy, None where it is not known (``missing`` says why).
    """
    rows = [Figure(f"session:{k}", v, source if v is not None else missing, tolerance) for k, v in enumerate(sessions)]
    rows.append(Figure("average", average, source if average is not None else missing, tolerance))
    rows.append(Figure("pd", pd, source if pd is not None else missing, tolerance))
    return tuple(rows)


# --------------------------------------------------------------------------- options
def build_parser(repro: Reproduction, doc: str) -> argparse.ArgumentParser:
    """The options every script takes; ``doc`` (the script's docstring, which states its budget) is the help text."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"GPU budget: {repro.budget.gpu}\nOn the CPU (the default; --device cuda for a GPU): "
                                       f"{repro.budget.cpu}")
    p.add_argument("--data-root", metavar="DIR", help="where the datasets live (default: $CLPROTO_DATA)")
    p.add_argument("--models-root", metavar="DIR", help="where model weights live (default: $CLPROTO_MODELS)")
    p.add_argument("--out", metavar="DIR", default=f"runs/reproduce/{repro.name}",
                   help="runs and the comparison table (default: %(default)s)")
    p.add_argument("--cache-dir", metavar="DIR", help="decoded images, features, trained backbones (default: $CLPROTO_CACHE)")
    p.add_argument("--seeds", type=int, nargs="+", default=list(repro.seeds), metavar="S",
                   help="run seeds (default: %(default)s)")
    p.add_argument("--threads", type=int, metavar="N", help="torch threads (default: torch's)")
    p.add_argument("--smoke", action="store_true",
                   help="one tiny epoch on a few images and the first seed only, to check the script end to end "
                        "(numbers not checked)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    add_compute(p)  # --device / --precision / --deterministic, as `clproto run` (README: Devices and precision)
    if repro.replaceable_backbone:
        p.add_argument("--backbone", metavar="SPEC",
                       help="replace the definitions' backbone, e.g. local weights "
                            "'timm:vit_base_patch16_224.augreg_in21k@vit-b16-in21k.pth?size=224&norm=none'")
    return p


# --------------------------------------------------------------------------- definitions, smoke lists
def smoke_index_lists(dataset: clproto.Dataset, config: ScenarioConfig, folder: Path, *, base_per_class: int) -> Path:
    """``session_<k>.txt`` of the protocol's shape from ``dataset``'s first images (indices into its training set).

    The base session takes ``base_per_class`` images of each of the first ``base_classes`` labels, session k
    ``shots`` images of each of the next ``ways`` labels — for smoke runs on stand-ins without the listed images.
    """
    labels = np.asarray(dataset.train_y)
    classes = np.unique(labels)
    need = config.base_classes + config.sessions * config.ways
    if len(classes) < need:
        raise ConfigError(f"a smoke run needs {need} classes for the shape of {config.name}", where=dataset.name,
                          value=len(classes), expected=f"a stand-in with at least {need} classes")
    by_class = {int(c): np.flatnonzero(labels == c) for c in classes[:need]}
    sessions = [[i for c in classes[:config.base_classes] for i in by_class[int(c)][:base_per_class]]]
    for s in range(config.sessions):
        novel = classes[config.base_classes + s * config.ways: config.base_classes + (s + 1) * config.ways]
        short = [int(c) for c in novel if len(by_class[int(c)]) < config.shots]
        if short:
            raise ConfigError(f"a smoke run needs {config.shots} training images of each novel class",
                              where=dataset.name, value=short[:5], expected=f"{config.shots} or more per class")
        sessions.append([i for c in novel for i in by_class[int(c)][:config.shots]])
    folder.mkdir(parents=True, exist_ok=True)
    for k, entries in enumerate(sessions, 1):
        write_text_atomic(folder / f"session_{k}.txt", "".join(f"{int(i)}\n" for i in entries))
    return folder


def definitions(repro: Reproduction, args: argparse.Namespace, runner: clproto.Runner):
    """The scenario and strategies to run, with ``--smoke`` and ``--backbone`` applied."""
    scenario_overrides = list(repro.smoke.scenario) if args.smoke else []
    strategy_overrides = list(repro.smoke.strategy) if args.smoke else []
    if getattr(args, "backbone", None):
        strategy_overrides.append(f"strategy.backbone={args.backbone}")
    scenario = clproto.load_scenario(repro.scenario, overrides=scenario_overrides)
    if args.smoke:
        if repro.smoke.fscil_lists:
            folder = smoke_index_lists(runner.dataset(scenario.dataset), scenario, Path(args.out) / "smoke-index-lists",
                                       base_per_class=repro.smoke.base_per_class)
            scenario_overrides.append(f'scenario.index_lists="{folder}"')
        base = clproto.load_scenario(repro.scenario)
        scenario = clproto.load_scenario(repro.scenario, overrides=[*scenario_overrides,
                                                                    f'scenario.name="{base.name}-smoke"'])
    strategies = []
    for path in repro.strategies:
        st = clproto.load_strategy(path, overrides=strategy_overrides)
        if args.smoke:
            st = clproto.load_strategy(path, overrides=[*strategy_overrides,
                                                        f'strategy.name="{clproto.load_strategy(path).name}-smoke"'])
        strategies.append(st)
    return scenario, strategies


# --------------------------------------------------------------------------- runs
def run_or_read(runner: clproto.Runner, scenario, strategy, seed: int, out: Path) -> tuple[RunResult, bool]:
    """The run's result: read back if ``out`` already holds it finished with this configuration, else run now."""
    folder = run_dir(out, scenario.name, strategy.name, seed)
    done = folder / "results.json"
    if done.exists():
        result = RunResult.load(done)
        if run_hash(result.config) == run_hash(resolved_config(scenario, strategy, seed)):
            return result, True
        raise ConfigError("the folder holds a finished run of another configuration under the same name",
                          where=str(folder), expected="another --out, or remove that folder")
    return runner.run(scenario, strategy, seed=seed, out_dir=out), False


# --------------------------------------------------------------------------- the comparison
@dataclass(frozen=True)
class Row:
    """One line of the comparison table (accuracies in %)."""

    strategy: str
    label: str
    paper: Optional[float]
    measured: Optional[float]  # mean over seeds
    spread: Optional[float]  # sample standard deviation over seeds (0 for one seed)
    tolerance: float
    verdict: str  # "ok", "OUTSIDE", "no paper figure", "smoke: not checked", "not measured"
    source: str

    @property
    def difference(self) -> Optional[float]:
        return None if self.paper is None or self.measured is None else self.measured - self.paper


def compare(figures: Sequence[Figure], results: Sequence[RunResult], *, strategy: str, smoke: bool) -> list[Row]:
    """The comparison rows of one strategy's runs (one per seed) against its figures."""
    rows = []
    for fig in figures:
        values = [v for v in (metric_value(r, fig.metric) for r in results) if v is not None]
        mean = statistics.fmean(values) if values else None
        spread = statistics.stdev(values) if len(values) > 1 else (0.0 if values else None)
        if smoke:
            verdict = "smoke: not checked"
        elif mean is None:
            verdict = "not measured"
        elif fig.paper is None:
            verdict = "no paper figure"
        else:
            verdict = "ok" if abs(mean - fig.paper) <= fig.tolerance + 1e-9 else "OUTSIDE"
        rows.append(Row(strategy, metric_label(fig.metric), fig.paper, mean, spread, fig.tolerance, verdict, fig.source))
    return rows


def exit_code(rows: Sequence[Row]) -> int:
    """1 when a paper figure is missed by more than its tolerance, else 0."""
    return 1 if any(r.verdict == "OUTSIDE" for r in rows) else 0


def _num(v: Optional[float]) -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


def table(rows: Sequence[Row]) -> str:
    """The comparison as a Markdown table."""
    lines = ["| strategy | metric | paper | measured (mean ± std) | Δ | tolerance | verdict | paper source |",
             "|---|---|---:|---:|---:|---:|---|---|"]
    for r in rows:
        measured = "—" if r.measured is None else f"{r.measured:.2f} ± {r.spread:.2f}"
        delta = "—" if r.difference is None else f"{r.difference:+.2f}"
        lines.append(f"| {r.strategy} | {r.label} | {_num(r.paper)} | {measured} | {delta} | ±{r.tolerance:.2f} "
                     f"| {r.verdict} | {r.source} |")
    return "\n".join(lines)


def report(repro: Reproduction, rows: Sequence[Row], *, scenario: str, seeds: Sequence[int], smoke: bool, out: Path,
           runs: Sequence[str]) -> str:
    """The whole printed report: header, table, deviations, verdict."""
    code = exit_code(rows)
    checked = [r for r in rows if r.verdict in ("ok", "OUTSIDE")]
    if smoke:
        verdict = "SMOKE RUN: one tiny epoch on a few images; the numbers are not comparable and were not checked."
    elif not checked:
        verdict = "NOTHING CHECKED: no paper figure was found for these metrics (see the sources); measured values only."
    elif code:
        outside = ", ".join(f"{r.strategy} {r.label}" for r in rows if r.verdict == "OUTSIDE")
        verdict = f"NOT REPRODUCED: outside tolerance: {outside}."
    else:
        verdict = f"REPRODUCED: all {len(checked)} paper figures within tolerance."
    parts = [f"# {repro.paper}: {repro.name}", "",
             f"Scenario `{scenario}` ({repro.scenario.relative_to(ROOT)}), seeds {' '.join(map(str, seeds))}, "
             "accuracies in %; "
             f"runs in `{out}`.", "",
             f"GPU budget: {repro.budget.gpu}", f"On the CPU: {repro.budget.cpu}", "",
             table(rows), ""]
    if repro.deviations:
        parts += ["Differences from the paper's setting:", *[f"* {d}" for d in repro.deviations], ""]
    parts += [verdict]
    if runs:
        parts += ["", "Runs: " + "; ".join(runs)]
    return "\n".join(parts) + "\n"


# --------------------------------------------------------------------------- main
def main(repro: Reproduction, doc: str, argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv``, run, print and write the comparison; the exit code (0 reproduced or nothing to check,
    1 outside tolerance, 2 bad input)."""
    args = build_parser(repro, doc).parse_args(argv)
    try:
        return _run(repro, args)
    except ConfigError as exc:
        print(f"{repro.name}: error: {exc}", file=sys.stderr)
        return 2


def _run(repro: Reproduction, args: argparse.Namespace) -> int:
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError("must be at least 1", where="--threads", value=args.threads)
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    device, precision, deterministic = compute_settings(args)
    runner = clproto.Runner(data_root=args.data_root, models_root=args.models_root, cache_dir=args.cache_dir,
                            progress=not args.no_progress, device=device, precision=precision,
                            deterministic=deterministic)
    scenario, strategies = definitions(repro, args, runner)
    if args.smoke:
        args.seeds = args.seeds[:1]
    rows, runs = [], []
    for path, strategy in zip(repro.strategies, strategies):
        results = []
        for seed in args.seeds:
            result, reused = run_or_read(runner, scenario, strategy, seed, out)
            results.append(result)
            runs.append(f"{scenario.name}/{strategy.name}/seed{seed}" + (" (read back)" if reused else ""))
        figures = repro.figures[clproto.load_strategy(path).name]
        rows += compare(figures, results, strategy=strategy.name, smoke=args.smoke)
    text = report(repro, rows, scenario=scenario.name, seeds=args.seeds, smoke=args.smoke, out=out, runs=runs)
    print(text)
    write_text_atomic(out / f"comparison-{repro.name}.md", text)
    write_json_atomic(out / f"comparison-{repro.name}.json", {
        "name": repro.name, "paper": repro.paper, "scenario": scenario.name, "seeds": list(args.seeds),
        "smoke": args.smoke, "gpu_budget": repro.budget.gpu, "cpu_budget": repro.budget.cpu,
        "deviations": list(repro.deviations),
        "rows": [{**{k: getattr(r, k) for k in ("strategy", "label", "paper", "measured", "spread", "tolerance",
                                                "verdict", "source")}, "difference": r.difference} for r in rows]})
    return 0 if args.smoke else exit_code(rows)
