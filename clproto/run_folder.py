"""One run's folder ``<out>/<scenario>/<strategy>/seed<k>/``, and the only code that writes its record files.

==============  =============================================================================
config.json     the fully resolved configuration and its hash; written when the run starts
                (by the runner, when the worker shares the output folder) and when it finishes
checkpoint.pt   a trained strategy's state after each experience (written by :mod:`clproto.runner`
                with :func:`save_checkpoint`); removed once ``results.json`` is written
log.csv         per-epoch losses, per-experience accuracies and timings (:mod:`clproto.loggers`)
results.json    the :class:`~clproto.evaluation.results.RunResult`: the mark of a finished run,
                written last
error.txt       the error and traceback of a run that raised (:mod:`clproto.sweep`); removed once
                the run finishes
==============  =============================================================================

:func:`write_finished` is the one place that writes ``results.json``: the sweep driver behind
``clproto run`` and ``clproto sweep`` calls it for every run a worker returns, and
:meth:`clproto.runner.Runner.run` for a run it is given an output folder for. Every file is
written whole (temporary file + rename), so a run killed at any moment leaves no half-written file.
:func:`run_dir` names the folder (and refuses one outside the output folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import torch

from clproto.errors import ConfigError
from clproto.evaluation.results import RunResult
from clproto.loggers import LOG_FILE
from clproto.storage import write_json_atomic, write_text_atomic, write_torch_atomic

CONFIG_FILE = "config.json"
RESULTS_FILE = "results.json"
ERROR_FILE = "error.txt"
CHECKPOINT = "checkpoint.pt"
RUN_FILES = (RESULTS_FILE, CONFIG_FILE, ERROR_FILE, CHECKPOINT)  # what replacing a run (--overwrite) removes


def run_dir(out: str | os.PathLike, scenario: str, strategy: str, seed: int) -> Path:
    """``<out>/<scenario>/<strategy>/seed<k>``; names are checked, and the folder must lie under ``out``."""
    folder = Path(out) / scenario / strategy / f"seed{seed}"
    root = Path(out).resolve()
    if root not in folder.resolve().parents or any(n in ("", ".", "..") or "/" in n or "\\" in n
                                                   for n in (scenario, strategy)):
        raise ConfigError("a run folder would lie outside the output folder", where=str(out),
                          value=f"{scenario}/{strategy}", expected="scenario and strategy names without path parts")
    return folder


def write_config(folder: Path, config: dict, config_hash: str) -> None:
    """``config.json``: the resolved configuration (scenario, strategy, seed) with its hash."""
    write_json_atomic(folder / CONFIG_FILE, {**config, "config_hash": config_hash})


def write_finished(folder: Path, result: RunResult, *, log_csv: str) -> None:
    """Record a finished run: config.json, log.csv, then results.json; then drop its checkpoint and error.txt."""
    write_config(folder, result.config, result.config_hash)
    write_text_atomic(folder / LOG_FILE, log_csv)  # before results.json: a finished run always has its whole log
    result.save(folder / RESULTS_FILE)
    (folder / CHECKPOINT).unlink(missing_ok=True)
    (folder / ERROR_FILE).unlink(missing_ok=True)


def write_error(folder: Path, text: str) -> None:
    """``error.txt`` of a run that raised (the next invocation of the sweep retries it)."""
    write_text_atomic(folder / ERROR_FILE, text)


def load_checkpoint(path: Path, notes: list[str]) -> Optional[dict]:
    """A run checkpoint loaded weights-only (no code runs); an unreadable one is deleted and the run restarts."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or not {"config_hash", "strategy", "steps", "timings", "torch_rng"} <= set(state):
            raise ValueError("not a clproto checkpoint")
        return state
    except Exception as exc:  # truncated, foreign, or a pickle that would run code: never trusted
        path.unlink(missing_ok=True)
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        notes.append(f"discarded an unreadable checkpoint ({type(exc).__name__}: {reason}); the run restarted")
        return None


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``checkpoint.pt``: a trained strategy's state after an experience, with what resuming needs."""
    write_torch_atomic(path, state)  # temp file removed on any failure
