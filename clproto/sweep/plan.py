"""Planning, before anything runs: which runs are finished, which to run, which to refuse; one sweep per folder.

A run is identified by the hash of its fully resolved configuration: a folder whose
``results.json`` (else ``config.json``) records that configuration is finished (or started) by
this very run; a folder holding another configuration is an error naming the fields that differ,
before anything runs (unless ``--overwrite``). The identity is recomputed from the recorded
configuration, so a change of hashing scheme does not orphan old runs.

One sweep at a time writes into an output folder: it holds an advisory lock on
``<out>/.sweep.lock``, which the kernel releases even when the sweep is killed with ``kill -9``.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional

from clproto.config import config_diff, run_hash
from clproto.errors import ConfigError
from clproto.run_folder import CONFIG_FILE, RESULTS_FILE, RUN_FILES
from clproto.sweep.tasks import RunSpec

LOCK_FILE = ".sweep.lock"


def plan(specs: list[RunSpec], out: str | os.PathLike, *, overwrite: bool = False,
         remove: bool = True) -> tuple[list[RunSpec], list[RunSpec]]:
    """Split ``specs`` into (to run, finished).

    A folder holding another configuration is an error naming the fields that differ, unless
    ``overwrite``: then its run files are removed (only those: results.json, config.json, error.txt,
    checkpoint.pt) and the run is redone (``remove=False``: only planned, nothing removed).
    """
    todo, finished, conflicts = [], [], []
    for spec in specs:
        folder = spec.folder(out)
        try:
            recorded = _recorded(folder)
        except ConfigError:
            if not overwrite:
                raise
            recorded = ({"config_hash": None}, folder)
        if recorded is not None and _recorded_identity(recorded[0]) != spec.config_hash:
            if not overwrite:
                conflicts.append((spec, recorded))
                continue
            if not remove:
                todo.append(spec)
                continue
            for name in RUN_FILES:
                (folder / name).unlink(missing_ok=True)
        (finished if (folder / RESULTS_FILE).exists() else todo).append(spec)
    if conflicts:
        spec, (data, path) = conflicts[0]
        diff = config_diff(_recorded_config(data), spec.config)
        shown = "; ".join(diff[:4]) + (f"; and {len(diff) - 4} more" if len(diff) > 4 else "")
        more = f" ({len(conflicts)} runs conflict; the first is shown)" if len(conflicts) > 1 else ""
        raise ConfigError(
            f"the output folder holds a run of the same name with a different configuration{more}: "
            f"{shown or 'config hash ' + str(data.get('config_hash'))} (recorded vs this run)",
            where=str(path), expected="another --out folder, or --overwrite to replace those runs")
    return todo, finished


def _recorded(folder: Path) -> Optional[tuple[dict, Path]]:
    """The run file recorded in a folder (results.json first, else config.json), as a dict with its path."""
    for name in (RESULTS_FILE, CONFIG_FILE):
        f = folder / name
        if f.exists():
            try:
                with open(f, encoding="utf-8") as fh:
                    data = json.load(fh)
                if not isinstance(data, dict):
                    raise ValueError("not a JSON object")
                return data, f
            except (ValueError, OSError) as exc:
                raise ConfigError(f"unreadable run file ({exc})", where=str(f),
                                  expected="a file written by clproto; delete the folder (or use --overwrite) "
                                           "to redo the run") from None
    return None


def _recorded_config(data: dict) -> dict:
    """The resolved configuration in a results.json (under ``config``) or a config.json (the file itself)."""
    return data["config"] if "config" in data else {k: v for k, v in data.items() if k != "config_hash"}


def _recorded_identity(data: dict) -> Optional[str]:
    """A recorded run's identity, recomputed from its configuration (the stored hash may use an older scheme)."""
    try:
        return run_hash(_recorded_config(data))
    except (TypeError, ValueError, AttributeError):
        return None


def clean_partial(folder: Path) -> None:
    """Remove temporary files a killed writer may have left (never a finished file)."""
    if folder.is_dir():
        for tmp in folder.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)


def check_out(out: Path) -> Path:
    """An output folder that is (or can become) a writable folder; checked before anything runs."""
    if out.exists() and not out.is_dir():
        raise ConfigError("exists and is not a folder", where="--out", value=str(out), expected="a folder path")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"cannot create the folder: {parent} is a file", where="--out", value=str(out))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"not writable ({parent})", where="--out", value=str(out),
                          expected="a folder you can write to")
    return out


# --------------------------------------------------------------------------- one sweep per output folder
def check_not_locked(out: Path) -> None:
    """Fail at once (before any preparation) when another sweep holds ``<out>/.sweep.lock``; creates nothing."""
    try:
        import fcntl
    except ImportError:
        return
    if not (out / LOCK_FILE).exists():
        return
    fd = os.open(out / LOCK_FILE, os.O_RDONLY)
    try:
        _lock(fd, out)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextmanager
def exclusive(out: Path) -> Iterator[None]:
    """Hold an advisory lock on ``<out>/.sweep.lock`` (released by the kernel even on kill -9)."""
    try:
        import fcntl  # noqa: F401 - only to know whether locks exist here (POSIX)
    except ImportError:  # not POSIX: no lock
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _lock(fd, out)
        yield
    finally:
        os.close(fd)


def _lock(fd: int, out: Path) -> None:
    """Take the advisory lock on ``fd`` without waiting; a sweep holding it already is a ConfigError."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise ConfigError("another sweep is running on this output folder", where=str(out),
                          expected="to wait for it to finish, or another --out") from None
