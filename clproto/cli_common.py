"""What the command lines of :mod:`clproto.cli` and :mod:`clproto.sweep.cli` share: option groups and set-up.

The command line is the edge where the environment is read (``CLPROTO_PROGRESS``; the data,
model and cache locations are read by :mod:`clproto.data.paths`): what it decides is passed
down explicitly, nothing below writes ``os.environ``. The one write is here: ``--deterministic`` sets
``CUBLAS_WORKSPACE_CONFIG`` (cuBLAS reads it when CUDA starts, before any run; local-pool workers inherit it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from clproto.errors import ConfigError


def add_common(p: argparse.ArgumentParser) -> None:
    """Locations and resources: the options of every command that runs or reads runs."""
    g = p.add_argument_group("locations and resources")
    g.add_argument("--data-root", metavar="DIR", help="where datasets live (default: $CLPROTO_DATA or ~/.cache/clproto/data)")
    g.add_argument("--models-root", metavar="DIR", help="where pretrained models live (default: $CLPROTO_MODELS)")
    g.add_argument("--cache-dir", metavar="DIR", help="decoded-image and feature cache (default: $CLPROTO_CACHE or ~/.cache/clproto/cache)")
    g.add_argument("--threads", type=int, metavar="N", help="torch threads (default: all cores)")
    g.add_argument("--plugin", action="append", default=[], metavar="MODULE|FILE.py",
                   help="import a module or file whose register(registry) adds strategies (repeatable)")
    g.add_argument("--no-progress", action="store_true", help="hide progress bars")


def add_compute(p: argparse.ArgumentParser) -> None:
    """Where and at which precision runs compute (run and sweep); unset: the sweep file's [sweep] value, else cpu/fp32."""
    from clproto.context import DEVICES, PRECISIONS

    g = p.add_argument_group("device and precision (README: Devices and precision)")
    g.add_argument("--device", metavar="|".join(DEVICES),
                   help="where trained strategies run: auto (CUDA when available, resolved once, here), cpu, cuda, "
                        "cuda:N or mps (default: the sweep file's, else cpu, which reproduces the recorded results)")
    g.add_argument("--precision", choices=PRECISIONS,
                   help="compute precision of training and scoring: fp32, or bf16/fp16 autocast (default: the sweep "
                        "file's, else fp32); device type and precision other than cpu/fp32 are part of a run's identity")
    g.add_argument("--deterministic", action="store_true", default=None,
                   help="CUDA: torch's deterministic algorithms, no cuDNN autotuning (slower; sets "
                        "CUBLAS_WORKSPACE_CONFIG=:4096:8); the CPU is deterministic anyway")


def compute_settings(args, *, device: str = "cpu", precision: str = "fp32", deterministic: bool = False,
                     where: str = "command line") -> tuple[str, str, bool]:
    """(device, precision, deterministic) from the flags, else the given (sweep file) values; ``auto`` resolved here
    (on the machine that plans the runs, so the plan's identities are those of the runs); bad values: ConfigError."""
    from clproto.context import RunContext

    flags = (args.device, args.precision, args.deterministic)
    device = args.device if args.device is not None else device
    precision = args.precision if args.precision is not None else precision
    deterministic = bool(args.deterministic) if args.deterministic is not None else deterministic
    if deterministic:  # before CUDA starts: cuBLAS reads it when it creates its handle
        from clproto.devices import CUBLAS_WORKSPACE

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
    try:
        context = RunContext(device=device, precision=precision, deterministic=deterministic).resolved()
    except ConfigError as exc:
        flag = {"device": "--device", "precision": "--precision", "deterministic": "--deterministic"}.get(exc.field)
        given = flag is not None and flags[("--device", "--precision", "--deterministic").index(flag)] is not None
        raise exc.located(flag if given else where) from None
    return context.device, context.precision, context.deterministic


def add_run_outputs(p: argparse.ArgumentParser) -> None:
    """What runs write besides results.json and log.csv: kept models, TensorBoard / W&B mirrors (run and sweep)."""
    g = p.add_argument_group("models and loggers (results.json and log.csv are always written)")
    g.add_argument("--keep-model", choices=("last", "every"),
                   help="keep the strategy's state (weights-only loadable): last = model.pt after the final experience, "
                        "every = model-exp<k>.pt after each; re-score with `clproto evaluate` (default: keep nothing)")
    g.add_argument("--logger", action="append", default=[], choices=("tensorboard", "wandb"),
                   help="also log losses, accuracies and timings to TensorBoard (<run>/tensorboard) or W&B "
                        "(optional extras: pip install 'clproto[tensorboard]' / 'clproto[wandb]'); repeatable")
    g.add_argument("--wandb-project", default="clproto", metavar="NAME", help="W&B project (default: %(default)s)")
    g.add_argument("--wandb-offline", action="store_true",
                   help="W&B offline mode (also WANDB_MODE=offline); sync later with `wandb sync <run>/wandb`")


def setup(args) -> bool:
    """Check --threads and set torch's thread count; return whether to show progress bars.

    No bars with ``--no-progress`` or with ``CLPROTO_PROGRESS=0`` in the environment (read here only).
    """
    if getattr(args, "threads", None) is not None and args.threads < 1:
        raise ConfigError("must be at least 1", where="--threads", value=args.threads)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    return not getattr(args, "no_progress", False) and os.environ.get("CLPROTO_PROGRESS", "1") != "0"


def logger_settings(args):
    """The --logger options as LoggerSettings; a mirror whose package is missing is an error (exit 2) before any run."""
    from clproto.loggers import LoggerSettings, check_available

    if args.wandb_offline and "wandb" not in args.logger:
        raise ConfigError("--wandb-offline applies to the W&B logger only", where="--wandb-offline",
                          expected="--logger wandb --wandb-offline")
    settings = LoggerSettings(loggers=tuple(dict.fromkeys(args.logger)), wandb_project=args.wandb_project,
                              wandb_offline=args.wandb_offline)
    check_available(settings)
    return settings


def note_unkept(specs, out: Path, keep_model) -> None:
    """--keep-model on runs finished earlier without it: they were skipped, so say where no model is kept."""
    from clproto.kept_models import model_files

    if not keep_model:
        return
    missing = [s.label for s in specs if (s.folder(out) / "results.json").exists() and not model_files(s.folder(out))]
    if missing:
        print(f"clproto: note: {len(missing)} run(s) finished earlier without --keep-model keep no model "
              f"(e.g. {missing[0]}); use another --out to run them again with it", file=sys.stderr)
