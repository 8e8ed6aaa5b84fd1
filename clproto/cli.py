"""The ``clproto`` command line."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from clproto.cli_common import add_common, add_compute, add_run_outputs, compute_settings, logger_settings, note_unkept, setup
from clproto.errors import ConfigError
from clproto.plugins import load_plugins

DEFAULTS = Path(__file__).parent / "defaults"
EPILOG = """examples:
  clproto run                                   embedded default: split-digits, every built-in class-incremental strategy, 3 seeds
  clproto run scenarios/split-cifar10.toml strategies/nmc.toml --seeds 0 1 2 --out runs/cifar
  clproto run scenarios/split-digits.toml strategies/nmc-pixels.toml --set scenario.train_per_class=50
  clproto report runs/cifar --out reports/cifar
  clproto compare runs/cifar --baseline nmc          every strategy vs nmc: paired differences, 95 % CI, p-value
  clproto sweep sweeps/reference.toml --out runs/reference     grid of runs, parallel and resumable (see README)
  clproto list

Data are looked up under --data-root, else $CLPROTO_DATA, else ~/.cache/clproto/data;
pretrained models under --models-root, else $CLPROTO_MODELS. Bad input exits with code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clproto",
        description="Simulate continual and few-shot class-incremental learning: run strategies on scenarios, "
                    "fill accuracy matrices, and report accuracy and forgetting.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from clproto import __version__

    parser.add_argument("--version", action="version", version=f"clproto {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", help="run strategies on a scenario over seeds, then report",
                       description="Run every STRATEGY on SCENARIO for every seed; write results.json per run and a "
                                   "report (table + plots) of every result under --out. With no arguments: the embedded "
                                   "split-digits default. Runs already finished in --out with the same configuration "
                                   "are skipped; a different configuration under the same name is refused unless "
                                   "--overwrite; a failed run leaves error.txt and the others go on (exit 1). An "
                                   "override that changes a definition names the run by it, e.g. teen@alpha=0.25.")
    p.add_argument("scenario", nargs="?", metavar="SCENARIO", help="scenario definition: a .toml file, or a name from "
                                                                 "`clproto list` (./scenarios/ or built-in)")
    p.add_argument("strategies", nargs="*", metavar="STRATEGY", help="strategy definitions, files or names (default: "
                                                                      "the built-in set)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], metavar="S", help="seeds (default: 0 1 2)")
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<scenario>)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. scenario.train_per_class=50 or strategy.params.metric=cosine")
    p.add_argument("--overwrite", action="store_true",
                   help="replace runs whose folder holds a different configuration (default: refuse, naming the fields)")
    p.add_argument("--backbone", metavar="SPEC",
                   help="feature extractor for every features-strategy, e.g. torchscript:mobilenet_v1_1.0_224_imagenet.pt "
                        "or torchvision:resnet18 (same as --set strategy.backbone=SPEC)")
    add_compute(p)
    add_run_outputs(p)
    add_common(p)

    p = sub.add_parser("evaluate", help="re-score a kept model on the test sets of another scenario",
                       description="Rebuild the strategy of RUN_DIR (from its config.json), load its kept model "
                                   "weights-only (model.pt, else the last model-exp<k>.pt; runs made with --keep-model) "
                                   "and score it on every experience's test set of SCENARIO (same dataset; frozen "
                                   "strategies use the run's own backbone features). Prediction is the argmax over "
                                   "every class the model saw; classes it never saw score -inf, so their test samples "
                                   "count as errors. Prints a table and writes RUN_DIR/evaluate-<scenario>.json.")
    p.add_argument("run", metavar="RUN_DIR", help="a run folder <out>/<scenario>/<strategy>/seed<k>")
    p.add_argument("--scenario", required=True, metavar="SCENARIO.toml", help="scenario to score on")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S",
                   help="seeds of that scenario (class order, sampling; default: the run's seed)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the scenario, e.g. scenario.test_per_class=50")
    p.add_argument("--model", metavar="FILE", help="model file in RUN_DIR, e.g. model-exp2.pt (default: model.pt, "
                                                    "else the last model-exp<k>.pt)")
    add_common(p)

    p = sub.add_parser("report", help="tables and figures from results folders",
                       description="Collect results.json files under RUN_DIR(s) and write tables (Markdown, LaTeX, CSV; "
                                   "mean ± std over seeds, best in bold), figures (PNG, or PDF with --format pdf), one "
                                   "self-contained report.html and manifest.json; files an earlier report wrote there and "
                                   "this one does not are removed.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders searched recursively for results.json")
    p.add_argument("--out", metavar="DIR", help="report folder (default: <first RUN_DIR>/report)")
    p.add_argument("--title", default="clproto report", help="title of report.html (default: %(default)s)")
    p.add_argument("--baseline", metavar="NAME",
                   help="mark † the table cells that differ from this strategy's (paired t-test over seeds, p < 0.05; "
                        "details: clproto compare)")
    p.add_argument("--format", dest="fmt", choices=("png", "pdf"), default="png",
                   help="figure files: png, or pdf for vector figures (report.html embeds PNG either way; "
                        "default: %(default)s)")
    p.add_argument("--split-configs", action="store_true",
                   help="results of one (scenario, strategy) name with different configurations become separate rows "
                        "labelled by the fields that differ, e.g. teen@alpha=0.25 (default: an error naming them)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")

    p = sub.add_parser("compare", help="strategies against a baseline: seed-paired differences, CI and test",
                       description="For every scenario under RUN_DIR(s) that has the baseline, every metric and every "
                                   "other strategy: the mean seed-paired difference (strategy − baseline, in points), "
                                   "its 95 % t-interval and a two-sided paired test. Results are pooled as for "
                                   "`clproto report` (one configuration per name, each seed once). Prints Markdown; "
                                   "--out also writes compare.md, compare.csv and compare.tex.")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR", help="folders searched recursively for results.json")
    p.add_argument("--baseline", required=True, metavar="NAME", help="the strategy every other one is compared with")
    p.add_argument("--metrics", nargs="+", metavar="METRIC",
                   help="metrics to compare (default: final_accuracy average_incremental_accuracy forgetting for "
                        "class-incremental scenarios; final_accuracy average_incremental_accuracy performance_drop "
                        "novel_accuracy harmonic_mean for few-shot ones)")
    p.add_argument("--test", choices=["t", "wilcoxon"], default="t",
                   help="paired test: t (paired t-test; differences roughly normal, fine with few seeds) or wilcoxon "
                        "(signed-rank; no normality assumption, but p < 0.05 needs at least 6 seeds) (default: t)")
    p.add_argument("--out", metavar="DIR", help="also write compare.md, compare.csv and compare.tex here")
    p.add_argument("--split-configs", action="store_true",
                   help="one row per configuration of a name, labelled by the fields that differ (as for report)")

    from clproto.sweep.cli import add_parser as add_sweep_parser

    add_sweep_parser(sub)

    from clproto.cli_cache import add_parser as add_cache_parser

    add_cache_parser(sub)

    p = sub.add_parser("list", help="show datasets, scenarios and strategies")
    p.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py")
    return parser


# --------------------------------------------------------------------------- helpers
def definition_path(text: str, section: str) -> Path:
    """A definition given as a file path, or by name: ``./scenarios/NAME.toml`` (``./strategies/``), else the
    built-in definition of that name (``clproto list`` shows both)."""
    path = Path(text)
    if path.exists() or "/" in text or text.endswith(".toml"):
        return path
    folder = "scenarios" if section == "scenario" else "strategies"
    builtin = DEFAULTS / (f"{text}.toml" if section == "scenario" else f"strategies/{text}.toml")
    for candidate in (Path(folder) / f"{text}.toml", builtin):
        if candidate.exists():
            return candidate
    raise ConfigError(f"no {section} definition of this name", where=text,
                      expected=f"a .toml file, or a name from `clproto list` (./{folder}/*.toml or built-in)")


# --------------------------------------------------------------------------- commands
def cmd_run(args) -> int:
    """A sweep of one grid, run in this process: finished runs are skipped, a failed run leaves error.txt."""
    from clproto.config import load_scenario, load_strategy, read_toml
    from clproto.devices import compute_identity
    from clproto.reports.build import markdown_table, write_report
    from clproto.reports.collect import summary_frame
    from clproto.sweep import GridConfig, InProcessBackend, SweepConfig, check_out, expand_grid, run_sweep, worker_settings

    progress = setup(args)
    registry = load_plugins(args.plugin)
    overrides = list(args.overrides)
    if args.backbone:  # --backbone SPEC: every features-strategy's backbone
        overrides.append(f"strategy.backbone={args.backbone}")
    scenario_path = definition_path(args.scenario, "scenario") if args.scenario else DEFAULTS / "split-digits.toml"
    strategy_paths = [definition_path(s, "strategy") for s in args.strategies]
    for p in strategy_paths:  # a second scenario among the strategies: say what to use instead
        tables = read_toml(p)
        if "scenario" in tables and "strategy" not in tables:
            raise ConfigError("is a scenario definition: `clproto run` takes one scenario and then strategies",
                              where=str(p), expected="`clproto sweep --scenario A.toml B.toml --strategy S.toml ...` "
                                                     "to run several scenarios")
    if not strategy_paths:  # the default set: the built-in definitions applicable to this scenario's kind
        kind = load_scenario(scenario_path).kind
        strategy_paths = [p for p in sorted((DEFAULTS / "strategies").glob("*.toml"))
                          if kind in registry.get(load_strategy(p, registry).config.implementation).scenario_kinds]
    grid = GridConfig(scenarios=[str(scenario_path.resolve())], strategies=[str(p.resolve()) for p in strategy_paths])
    device, precision, deterministic = compute_settings(args)
    specs = expand_grid(SweepConfig(), [grid], registry=registry, where=str(scenario_path),
                        extra_overrides=overrides, seeds=list(args.seeds),
                        compute=compute_identity(device, precision))
    out = check_out(Path(args.out) if args.out else Path("runs") / specs[0].scenario.name)
    threads = args.threads or _torch_threads()
    loggers = logger_settings(args)
    settings = worker_settings(plugins=args.plugin, threads=threads, data_root=args.data_root,
                               models_root=args.models_root, cache_dir=args.cache_dir, keep_model=args.keep_model,
                               loggers=loggers, device=device, precision=precision, deterministic=deterministic)
    summary = run_sweep(specs, out=out, backend=InProcessBackend(threads=threads), settings=settings,
                        progress=progress, summary_name=None, overwrite=args.overwrite, desc="run", announce=False)
    results = _collect([out]) if summary.done or summary.skipped else []
    if results:  # the report covers every result under --out, not only this invocation's
        report_dir = out / "report"
        write_report(results, report_dir, command=shlex.join(["clproto", "report", str(out), "--out", str(report_dir)]),
                     progress=progress)
        print()
        print(markdown_table(summary_frame(results)))
    line = (f"{summary.total} runs: {len(summary.done)} done, {len(summary.skipped)} already finished (skipped), "
            f"{len(summary.failed)} failed, in {summary.seconds:.1f}s.")
    print(line + (f" Results: {out}/  Report: {out / 'report'}/ (report.html, tables.md/.tex/.csv, *.png)"
                  if results else ""))
    note_unkept(specs, out, args.keep_model)
    if summary.failed:
        print(f"clproto: {len(summary.failed)} run(s) failed: " + "; ".join(
            f"{label}: {error} (see {Path(folder) / 'error.txt'})" for label, error, folder in summary.failed),
            file=sys.stderr)
        return 1
    return 0


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def cmd_report(args) -> int:
    from clproto.reports.build import markdown_table, write_report
    from clproto.reports.collect import summary_frame

    progress = setup(args)
    results = _collect(args.runs, split_configs=args.split_configs)
    out = Path(args.out) if args.out else Path(args.runs[0]) / "report"
    command = ["clproto", "report", *args.runs, "--out", str(out)] + (["--title", args.title] if args.title != "clproto report" else [])
    command += (["--format", args.fmt] if args.fmt != "png" else []) + (["--split-configs"] if args.split_configs else [])
    command += ["--baseline", args.baseline] if args.baseline else []
    paths = write_report(results, out, title=args.title, fmt=args.fmt, command=shlex.join(command),
                         baseline=args.baseline, progress=progress)
    print(markdown_table(summary_frame(results)))
    print(f"{len(results)} runs; wrote {len(paths)} files to {out}/ (tables.md/.tex/.csv, figures, report.html)")
    return 0


def cmd_compare(args) -> int:
    from clproto.reports.compare import compare, to_markdown, write_comparison

    comparison = compare(_collect(args.runs, split_configs=args.split_configs), baseline=args.baseline,
                         metrics=args.metrics, test=args.test)
    for note in comparison.notes:
        print(f"clproto: note: {note}", file=sys.stderr)
    print(to_markdown(comparison))
    if args.out:
        paths = write_comparison(comparison, args.out)
        print(f"wrote {', '.join(str(p) for p in paths.values())}")
    return 0


def _collect(paths, *, split_configs: bool = False) -> list:
    """Every result under ``paths``, pooled by configuration (one name, one configuration; duplicates once)."""
    from clproto.reports.collect import collect

    pooled = collect(paths, split_configs=split_configs)
    for note in pooled.notes[:20]:  # duplicates counted once, names split into rows
        print(f"clproto: note: {note}", file=sys.stderr)
    if len(pooled.notes) > 20:
        print(f"clproto: note: ... and {len(pooled.notes) - 20} more such notes", file=sys.stderr)
    return pooled.results


def cmd_evaluate(args) -> int:
    """Re-score a kept model on every experience of another scenario; write <run>/evaluate-<scenario>.json."""
    from clproto.config import named_scenario, parse_override
    from clproto.rescore import evaluate_kept, table, write_result
    from clproto.runner import Runner
    from clproto.sweep.grid import check_seeds

    progress = setup(args)
    registry = load_plugins(args.plugin)
    overrides = [parse_override(o) for o in args.overrides]
    if any(ov.target != "scenario" for ov in overrides):
        raise ConfigError("evaluate overrides only the scenario", where="--set",
                          value=next(ov.text for ov in overrides if ov.target != "scenario"),
                          expected="scenario.FIELD=VALUE (the strategy is the kept one)")
    scenario_path = Path(args.scenario)
    if not scenario_path.is_file():
        raise ConfigError("scenario file not found", where="--scenario", value=args.scenario)
    scenario = named_scenario(scenario_path, overrides)
    seeds = check_seeds(args.seeds, where="--seeds") if args.seeds else None
    runner = Runner(registry=registry, data_root=args.data_root, models_root=args.models_root,
                    cache_dir=args.cache_dir, progress=progress)
    result = evaluate_kept(Path(args.run), scenario, runner=runner, seeds=seeds, model_name=args.model,
                           scenario_where=str(scenario_path))
    path = write_result(Path(args.run), result)
    print(table(result))
    print(f"wrote {path}")
    return 0


def cmd_list(args) -> int:
    from clproto.config import read_toml
    from clproto.data.sources import DATASET_KINDS

    registry = load_plugins(args.plugin)
    print("Datasets (the `dataset` field of a scenario):")
    for k, v in DATASET_KINDS.items():
        print(f"  {k:<22} {v}")
    print("\nStrategy implementations (the `implementation` field of a strategy definition):")
    for e in registry:
        print(f"  {e.name:<22} [{e.cls.input_kind}] {e.description}")
    for title, folder, section in (("Scenario definitions", "scenarios", "scenario"),
                                   ("Strategy definitions", "strategies", "strategy")):
        builtin = DEFAULTS / ("." if section == "scenario" else "strategies")
        for where, files in ((f"./{folder}/", sorted(Path(folder).glob("*.toml"))),
                             (f"built-in, {builtin.resolve()}", sorted(builtin.glob("*.toml")))):
            if not files:
                continue
            print(f"\n{title} ({where}; usable by name, e.g. `clproto run {files[0].stem} ...`):"
                  if section == "scenario" else f"\n{title} ({where}; usable by name):")
            width = max(len(f.stem) for f in files) + 1
            for f in files:
                try:
                    d = read_toml(f).get(section, {})
                    print(f"  {f.stem:<{width}} {d.get('description', '')}")
                except ConfigError as exc:
                    print(f"  {f.stem:<{width}} (unreadable: {exc})")
    return 0


def cmd_sweep(args) -> int:
    from clproto.sweep.cli import cmd_sweep as sweep

    return sweep(args)


def cmd_cache(args) -> int:
    from clproto.cli_cache import cmd_cache as cache

    return cache(args)


COMMANDS = {"run": cmd_run, "report": cmd_report, "compare": cmd_compare, "evaluate": cmd_evaluate, "list": cmd_list,
            "sweep": cmd_sweep, "cache": cmd_cache}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 0
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"clproto: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("clproto: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
