"""Collecting results.json files into pandas frames (one row per run, or per run and step)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from clproto.errors import ConfigError
from clproto.evaluation.results import RunResult
from clproto.reports.pooling import Pooled, pool

# metric -> (column title, higher is better)
SUMMARY_METRICS = {
    "final_accuracy": ("Final acc.", True),
    "average_incremental_accuracy": ("Avg. inc. acc.", True),
    "forgetting": ("Forgetting", False),
    "bwt": ("BWT", True),
    "task_il_final_accuracy": ("Task-IL acc.", True),
}
# the headline metrics of a few-shot scenario's table (TOPIC/CEC/TEEN report session accuracies, their average,
# PD; ALICE base / novel / HM of the last session): class-IL forgetting rewards a strategy that never learns
# the few-shot classes, so it is not among them
FEW_SHOT_METRICS = {
    "final_accuracy": ("Last session acc.", True),
    "average_incremental_accuracy": ("Avg. acc.", True),
    "performance_drop": ("PD", False),
    "final_base_accuracy": ("Base", True),
    "final_novel_accuracy": ("Novel", True),
    "final_harmonic_mean": ("HM", True),
}


def find_results(paths: Iterable[str | os.PathLike]) -> list[Path]:
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_file() and p.name == "results.json":
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(p.rglob("results.json")))
        else:
            raise ConfigError("no such results file or folder", where=str(p))
    if not found:
        raise ConfigError("no results.json found", where=", ".join(str(p) for p in paths))
    return found


def load_sources(paths: Iterable[str | os.PathLike]) -> list[tuple[RunResult, Path]]:
    """Every results.json under ``paths`` (a file found twice is read twice: :func:`collect` reports it)."""
    out = []
    for f in find_results(paths):
        try:
            out.append((RunResult.load(f), f))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # JSON and UTF-8 errors are ValueErrors
            raise ConfigError(f"not a clproto results file: {exc}", where=str(f)) from exc
    return out


def load_results(paths: Iterable[str | os.PathLike]) -> list[RunResult]:
    return [r for r, _ in load_sources(paths)]


def collect(paths: Iterable[str | os.PathLike], *, split_configs: bool = False) -> Pooled:
    """The results under ``paths``, ready to report: one configuration per row, each seed once
    (:func:`clproto.reports.pooling.pool`; its notes name every duplicate dropped)."""
    sources = load_sources(paths)
    return pool([r for r, _ in sources], [p for _, p in sources], split_configs=split_configs)


def summary_frame(results: list[RunResult]) -> pd.DataFrame:
    """One row per run: scenario, strategy, seed and the headline metrics."""
    rows = []
    for r in results:
        row = {"scenario": r.scenario, "strategy": r.strategy, "seed": r.seed, "kind": r.kind,
               "experiences": len(r.seen_accuracy), "time_s": r.timings.total_s}
        for m in SUMMARY_METRICS:
            row[m] = getattr(r.metrics, m)
        if r.metrics.performance_drop is not None:
            row["performance_drop"] = r.metrics.performance_drop
            hm = [h for h in (r.metrics.harmonic_mean or []) if h is not None]
            row["final_harmonic_mean"] = hm[-1] if hm else None
            if r.kind == "few-shot":  # the last session's base / novel accuracy and every session's accuracy
                row["final_base_accuracy"] = (r.metrics.base_accuracy or [None])[-1]
                row["final_novel_accuracy"] = (r.metrics.novel_accuracy or [None])[-1]
                row.update({f"session_{t + 1}": a for t, a in enumerate(r.seen_accuracy)})
        rows.append(row)
    return pd.DataFrame(rows)


def steps_frame(results: list[RunResult]) -> pd.DataFrame:
    """One row per run and step: seen-class accuracy (and base/novel for few-shot)."""
    rows = []
    for r in results:
        for t, acc in enumerate(r.seen_accuracy):
            row = {"scenario": r.scenario, "strategy": r.strategy, "seed": r.seed, "step": t + 1, "seen_accuracy": acc}
            if r.metrics.base_accuracy is not None:
                row["base_accuracy"] = r.metrics.base_accuracy[t]
                row["novel_accuracy"] = r.metrics.novel_accuracy[t]
                row["harmonic_mean"] = r.metrics.harmonic_mean[t]
            rows.append(row)
    return pd.DataFrame(rows)
