"""``clproto sweep``: its options, and the command that expands the grid and hands it to the driver."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from clproto.cli_common import (add_common, add_compute, add_run_outputs, compute_settings, logger_settings,
                                note_unkept, setup)
from clproto.devices import compute_identity
from clproto.config import parse_override
from clproto.errors import ConfigError
from clproto.sweep.backends import LocalBackend, RayBackend, default_jobs
from clproto.sweep.driver import SUMMARY_FILE, run_sweep
from clproto.sweep.grid import GridConfig, SweepConfig, expand_grid, load_sweep
from clproto.sweep.plan import check_out, plan
from clproto.sweep.resources import RunResources, local_jobs, resources, visible_gpus
from clproto.sweep.tasks import worker_settings


def add_parser(sub) -> None:
    """The ``clproto sweep`` subcommand."""
    p = sub.add_parser(
        "sweep", help="run a grid of scenarios x strategies x seeds x overrides, resumably, in parallel",
        description="Run the cross product of scenarios, strategies, seeds and override values, each run in "
                    "<out>/<scenario>/<strategy>/seed<k>/. Finished runs are skipped, so re-running the same "
                    "command resumes a killed sweep; a run that raises leaves error.txt and the sweep goes on. "
                    "Then: clproto report <out>.")
    p.add_argument("sweep", nargs="?", metavar="SWEEP.toml", help="sweep definition ([sweep] + [[grid]] tables)")
    p.add_argument("--scenario", dest="scenarios", nargs="+", action="extend", default=[], metavar="SCENARIO.toml",
                   help="scenario definitions of a grid given on the command line")
    p.add_argument("--strategy", dest="strategies", nargs="+", action="extend", default=[], metavar="STRATEGY.toml",
                   help="strategy definitions of that grid")
    p.add_argument("--seeds", type=int, nargs="+", metavar="S", help="seeds of every grid (default: the file's, else 0)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field in every run, e.g. scenario.train_per_class=50")
    p.add_argument("--vary", action="append", default=[], metavar="KEY=[V1,V2]",
                   help='run every value, e.g. strategy.params.metric=["euclidean","cosine"] (every grid)')
    p.add_argument("--out", metavar="DIR", help="output folder (default: runs/<sweep file name>, or runs/sweep)")
    p.add_argument("--jobs", type=int, metavar="N", help="parallel runs (default: the number of cores; with --backend ray and no "
                                                        "--address: the CPUs of the local Ray)")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="where runs execute (default: local)")
    p.add_argument("--address", metavar="ADDR", help="Ray cluster address (HOST:PORT, ray://HOST:PORT or auto); "
                                                     "default: start a local Ray")
    p.add_argument("--gpus-per-run", type=float, metavar="G",
                   help="GPUs each run asks for (a fraction shares one; default: the sweep file's gpus_per_run, else 0). "
                        "Ray requests them per task; the local pool pins each worker to one GPU, round-robin")
    p.add_argument("--dry-run", action="store_true", help="list the runs and whether they are finished; run nothing")
    p.add_argument("--overwrite", action="store_true",
                   help="replace runs whose folder holds a different configuration (default: refuse, naming the fields)")
    add_compute(p)
    add_run_outputs(p)
    add_common(p)


def cmd_sweep(args) -> int:
    from clproto.plugins import load_plugins

    progress = setup(args)
    registry = load_plugins(args.plugin)
    if args.jobs is not None and args.jobs < 1:
        raise ConfigError("must be at least 1", where="--jobs", value=args.jobs)
    if args.sweep:
        path = Path(args.sweep)
        sweep, grids = load_sweep(path)
        base, where = path.parent, str(path)
    else:
        sweep, grids, base, where = SweepConfig(), [], Path("."), "command line"
    vary = _parse_vary(args.vary)
    if args.scenarios or args.strategies:
        grids.append(GridConfig(scenarios=[str(Path(p).resolve()) for p in args.scenarios],
                                strategies=[str(Path(p).resolve()) for p in args.strategies]))
    grids = [replace(g, vary={**g.vary, **vary}) for g in grids]
    device, precision, deterministic = compute_settings(args, device=sweep.device, precision=sweep.precision,
                                                        deterministic=sweep.deterministic, where=where)
    specs = expand_grid(sweep, grids, registry=registry, base_dir=base, where=where,
                        extra_overrides=args.overrides, seeds=args.seeds, compute=compute_identity(device, precision))
    out = check_out(Path(args.out) if args.out else Path("runs") / (Path(args.sweep).stem if args.sweep else "sweep"))
    if args.dry_run:
        todo, finished = plan(specs, out, overwrite=False)
        done = {id(s) for s in finished}
        for s in specs:
            print(f"{'finished' if id(s) in done else 'to run  '}  {s.label}  [{s.config_hash}]")
        print(f"{len(specs)} runs: {len(todo)} to run, {len(finished)} finished (output: {out}/)")
        return 0
    jobs = args.jobs or default_jobs()
    gpus = resources(threads=1, gpus_per_run=args.gpus_per_run, file_gpus=sweep.gpus_per_run, where=where).gpus
    pinned = visible_gpus() if gpus and args.backend == "local" else []
    if args.backend == "local":
        jobs = local_jobs(jobs, RunResources(gpus=gpus), pinned)  # no more runs at once than the GPUs hold
    res = resources(threads=args.threads or max(1, default_jobs() // jobs), gpus_per_run=gpus,
                    file_cpus=sweep.cpus_per_run, threads_given=args.threads is not None, where=where)
    threads = res.cpus
    loggers = logger_settings(args)
    settings = worker_settings(plugins=args.plugin, threads=threads, data_root=args.data_root,
                               models_root=args.models_root, cache_dir=args.cache_dir, keep_model=args.keep_model,
                               loggers=loggers, device=device, precision=precision, deterministic=deterministic)
    if args.backend == "ray" and (args.keep_model or loggers.loggers):
        raise ConfigError("--keep-model and --logger write into run folders on the worker's machine: not with "
                          "the Ray backend (its workers return results; the driver writes results.json and log.csv)",
                          where="--backend", value="ray", expected="--backend local, or no --keep-model/--logger")
    if args.backend == "ray":
        backend = RayBackend(address=args.address, threads=threads, num_cpus=args.jobs, gpus_per_run=res.gpus)
    else:
        if args.address:
            raise ConfigError("--address applies to the Ray backend only", where="--address", value=args.address,
                              expected="--backend ray")
        backend = LocalBackend(jobs=min(jobs, len(specs)), threads=threads, gpus=tuple(pinned))
    summary = run_sweep(specs, out=out, backend=backend, settings=settings, progress=progress,
                        summary_name=f"sweep-{Path(args.sweep).stem}.json" if args.sweep else SUMMARY_FILE,
                        overwrite=args.overwrite)
    print(summary.text())
    print(f"results: {out}/   report: clproto report {out} --out <report folder>")
    note_unkept(specs, out, args.keep_model)
    return 1 if summary.failed else 0


def _parse_vary(texts: list[str]) -> dict:
    vary = {}
    for text in texts:
        ov = parse_override(text)
        if not isinstance(ov.value, list) or not ov.value:
            raise ConfigError("--vary needs a non-empty TOML list of values", where="--vary", value=text,
                              expected='e.g. strategy.params.metric=["euclidean","cosine"]')
        vary[text.partition("=")[0].strip()] = ov.value
    return vary
