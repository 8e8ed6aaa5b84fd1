"""Run logs: ``log.csv`` in every run folder, mirrored to TensorBoard or Weights & Biases on request.

``results.json`` stays the contract (metrics, matrices); the log adds what happened along the way,
one row per event, with the columns ``event,experience,epoch,key,value``:

=========  ==========  =====  ==============================================  ==========================
event      experience  epoch  key                                             value
=========  ==========  =====  ==============================================  ==========================
loss       t           e      ``train_loss``                                  mean training loss of epoch
                                                                              e of experience t (sample-
                                                                              weighted over its steps);
                                                                              trained strategies only
accuracy   t                  ``seen``                                        accuracy on every seen
                                                                              class's test samples after
                                                                              training on experience t
accuracy   t                  ``exp<j>`` (j = 0..t)                           A[t][j]: class-IL accuracy
                                                                              on experience j's test set
accuracy   t                  ``base`` / ``novel`` (few-shot scenarios)       base- / novel-class accuracy
timing     t                  ``fit_s`` / ``eval_s``                          seconds training / scoring
timing     (empty)            ``data_s`` / ``features_s`` / ``total_s``       run-level seconds
=========  ==========  =====  ==============================================  ==========================

Empty cells are empty strings. ``log.csv`` is written whole (temporary file + rename) at the end of
a run, just before ``results.json``: a run that crashes leaves no ``log.csv`` (its rows so far are
kept in the run checkpoint, so a resumed run's log is complete), and a ``log.csv`` is never a
half-written file. TensorBoard and W&B receive the same rows as they happen (tag ``<event>/<key>``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol

from clproto.errors import ConfigError

LOG_FILE = "log.csv"
COLUMNS = ("event", "experience", "epoch", "key", "value")
LOGGERS = ("tensorboard", "wandb")  # optional mirrors; log.csv is always written
TENSORBOARD_DIR = "tensorboard"  # inside the run folder
Row = list  # [event: str, experience: int | None, epoch: int | None, key: str, value: float]


@dataclass(frozen=True)
class LoggerSettings:
    """Which mirrors every run writes to (``--logger``, ``--wandb-project``, ``--wandb-offline``)."""

    loggers: tuple = ()  # names from LOGGERS
    wandb_project: str = "clproto"  # W&B project of every run
    wandb_offline: bool = False  # W&B offline mode (also: WANDB_MODE=offline in the environment)

    def __post_init__(self) -> None:
        for name in self.loggers:
            if name not in LOGGERS:
                raise ConfigError("unknown logger", where="--logger", value=name, expected=" or ".join(LOGGERS))

    def to_dict(self) -> dict:
        return {"loggers": list(self.loggers), "wandb_project": self.wandb_project, "wandb_offline": self.wandb_offline}

    @classmethod
    def from_dict(cls, d: Optional[dict]) -> "LoggerSettings":
        d = d or {}
        return cls(loggers=tuple(d.get("loggers", ())), wandb_project=d.get("wandb_project", "clproto"),
                   wandb_offline=bool(d.get("wandb_offline", False)))


def check_available(settings: LoggerSettings) -> None:
    """Every requested mirror's package imports; otherwise a ConfigError naming it (exit 2 before any run)."""
    for name in settings.loggers:
        _import(name)


def _import(name: str):
    try:
        if name == "tensorboard":
            from torch.utils.tensorboard import SummaryWriter  # needs the `tensorboard` package

            return SummaryWriter
        import wandb

        return wandb
    except ImportError as exc:
        raise ConfigError(f"the {name} logger needs the {name!r} package, which is not installed ({exc})",
                          where="--logger", value=name,
                          expected=f"pip install 'clproto[{name}]' (or pip install {name})") from None


class Sink(Protocol):
    def write(self, rows: list[Row]) -> None: ...

    def close(self, ok: bool) -> None: ...


class TensorBoardSink:
    """torch's SummaryWriter in ``<run>/tensorboard``; loss rows step by epoch over the run, the rest by experience."""

    def __init__(self, *, folder: Path, config: dict) -> None:
        self.writer = _import("tensorboard")(log_dir=str(folder / TENSORBOARD_DIR))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=1) + "\n```")
        self.epochs = 0  # loss rows written: the global epoch step

    def write(self, rows: list[Row]) -> None:
        for event, exp, epoch, key, value in rows:
            if event == "loss":
                step = self.epochs
                self.epochs += 1
            else:
                step = exp if exp is not None else 0
            self.writer.add_scalar(f"{event}/{key}", value, step)

    def close(self, ok: bool) -> None:
        self.writer.flush()
        self.writer.close()


class WandbSink:
    """One W&B run per clproto run: ``wandb.init(project, name=label, config, dir=<run>)``, one ``log`` per event."""

    def __init__(self, *, folder: Path, label: str, config: dict, project: str, offline: bool) -> None:
        wandb = _import("wandb")
        kwargs: dict[str, Any] = {"project": project, "name": label, "config": config, "dir": str(folder)}
        if offline:  # else WANDB_MODE (e.g. offline) or the user's W&B settings decide
            kwargs["mode"] = "offline"
        folder.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(**kwargs)

    def write(self, rows: list[Row]) -> None:
        exp, epoch = rows[0][1], rows[0][2]
        data: dict[str, Any] = {f"{r[0]}/{r[3]}": r[4] for r in rows}
        if exp is not None:
            data["experience"] = exp
        if epoch is not None:
            data["epoch"] = epoch
        self.run.log(data)

    def close(self, ok: bool) -> None:
        self.run.finish(exit_code=0 if ok else 1)


@dataclass
class RunLog:
    """The rows of one run (restored from a checkpoint on resume) and the mirrors they are sent to."""

    rows: list = field(default_factory=list)  # Row lists, in order
    sinks: list = field(default_factory=list)  # Sink objects

    @classmethod
    def open(cls, settings: LoggerSettings, *, folder: Optional[Path], label: str, config: dict,
             rows: Optional[list] = None) -> "RunLog":
        log = cls(rows=[list(r) for r in rows or []])
        if folder is None or not settings.loggers:
            return log
        try:
            for name in settings.loggers:
                if name == "tensorboard":
                    log.sinks.append(TensorBoardSink(folder=folder, config=config))
                else:
                    log.sinks.append(WandbSink(folder=folder, label=label, config=config,
                                               project=settings.wandb_project, offline=settings.wandb_offline))
        except BaseException:
            log.close(ok=False)
            raise
        return log

    def _add(self, rows: list[Row]) -> None:
        self.rows.extend(rows)
        for sink in self.sinks:
            sink.write(rows)

    def loss(self, experience: int, epoch: int, value: float) -> None:
        self._add([["loss", experience, epoch, "train_loss", float(value)]])

    def step(self, t: int, evaluation, *, fit_s: float, eval_s: float) -> None:
        """Accuracies after training on experience ``t`` (a StepEvaluation) and its timings."""
        rows = [["accuracy", t, None, "seen", evaluation.seen_accuracy]]
        rows += [["accuracy", t, None, f"exp{j}", a] for j, a in enumerate(evaluation.accuracy_row) if a is not None]
        for key in ("base", "novel"):
            value = getattr(evaluation, f"{key}_accuracy")
            if value is not None:
                rows.append(["accuracy", t, None, key, value])
        self._add(rows)
        self._add([["timing", t, None, "fit_s", fit_s], ["timing", t, None, "eval_s", eval_s]])

    def run_timings(self, timings) -> None:
        self._add([["timing", None, None, k, getattr(timings, k)] for k in ("data_s", "features_s", "total_s")])

    def csv_text(self) -> str:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(COLUMNS)
        for event, exp, epoch, key, value in self.rows:
            w.writerow([event, "" if exp is None else exp, "" if epoch is None else epoch, key, repr(float(value))])
        return buf.getvalue()

    def save(self, path: str | os.PathLike) -> None:
        from clproto.storage import write_text_atomic

        write_text_atomic(path, self.csv_text())

    def close(self, ok: bool) -> None:
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close(ok)


def read_log(path: str | os.PathLike) -> list[dict]:
    """The rows of a ``log.csv`` as dicts (experience/epoch ints or None, value float)."""
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in ("experience", "epoch"):
            r[k] = int(r[k]) if r[k] != "" else None
        r["value"] = float(r["value"])
    return rows
