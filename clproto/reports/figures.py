"""Seaborn figures of a set of runs, written as PNG files.

* ``<scenario>__seen_accuracy.png`` — accuracy on all seen classes after each experience, one
  line per strategy, band = 95 % bootstrap confidence interval of the mean over seeds;
* ``<scenario>__<strategy>__accuracy_matrix.png`` — the accuracy matrix ``A[t][j]``, mean over seeds;
* ``forgetting.png`` — final average forgetting (Chaudhry et al.) per scenario and strategy,
  error bars = 95 % interval over seeds;
* ``<scenario>__base_novel.png`` (few-shot scenarios) — base- and novel-class accuracy per session.

The bootstrap uses a fixed seed, so the same results give the same images.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from functools import partial
from typing import Callable, Optional

import numpy as np
import pandas as pd

from clproto.evaluation.results import RunResult
from clproto.reports.collect import steps_frame, summary_frame

DPI = 130  # resolution of every PNG
CI = ("ci", 95)  # seaborn errorbar: 95 % bootstrap confidence interval over seeds
BOOT_SEED = 0  # seed of seaborn's bootstrap, for reproducible bands


@dataclass(frozen=True)
class Figure:
    path: Path  # the PNG file
    title: str  # caption in the HTML report
    scenario: Optional[str]  # section of the HTML report (None: across scenarios)
    kind: str  # "seen_accuracy", "accuracy_matrix", "forgetting", "base_novel"


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.@=," else "_" for ch in name)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no version stamp: identical bytes on re-runs
    plt.close(fig)
    return path


def _seen_accuracy(steps: pd.DataFrame, scenario: str, out: Path) -> Figure:
    import matplotlib.pyplot as plt
    import seaborn as sns

    block = steps[steps.scenario == scenario]
    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    sns.lineplot(data=block.assign(acc=100 * block.seen_accuracy), x="step", y="acc", hue="strategy", marker="o",
                 errorbar=CI, seed=BOOT_SEED, ax=ax)
    ax.set(xlabel="experience (session)", ylabel="accuracy on seen classes (%)", title=scenario)
    ax.set_xticks(sorted(block.step.unique()))
    ax.legend(fontsize="small", title=None)
    path = _save(fig, out / f"{_safe(scenario)}__seen_accuracy.png")
    return Figure(path, f"{scenario}: accuracy on all seen classes after each experience (band: 95 % CI over seeds)",
                  scenario, "seen_accuracy")


def _accuracy_matrix(runs: list[RunResult], out: Path) -> Figure:
    import matplotlib.pyplot as plt
    import seaborn as sns

    stacked = np.array([[[np.nan if v is None else v for v in row] for row in r.accuracy_matrix] for r in runs],
                       dtype=float)  # (seeds, T, T), NaN above the diagonal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN entries above the diagonal stay NaN
        A = np.nanmean(stacked, axis=0)  # (T, T)
    T = A.shape[0]
    scenario, strategy = runs[0].scenario, runs[0].strategy
    fig, ax = plt.subplots(figsize=(1.6 + 0.42 * T, 1.1 + 0.36 * T))
    sns.heatmap(100 * A, annot=T <= 12, fmt=".0f", vmin=0, vmax=100, cmap="viridis", square=True,
                cbar_kws={"label": "accuracy (%)"}, annot_kws={"fontsize": 7}, ax=ax,
                xticklabels=range(1, T + 1), yticklabels=range(1, T + 1))
    ax.set(xlabel="tested on experience", ylabel="after training on", title=f"{strategy}")
    path = _save(fig, out / f"{_safe(scenario)}__{_safe(strategy)}__accuracy_matrix.png")
    return Figure(path, f"{scenario} / {strategy}: accuracy matrix, mean over {len(runs)} seed(s)", scenario,
                  "accuracy_matrix")


def _forgetting(summary: pd.DataFrame, out: Path) -> Optional[Figure]:
    import matplotlib.pyplot as plt
    import seaborn as sns

    data = summary[summary.forgetting.notna()]
    if data.empty:
        return None
    n_sc, n_st = data.scenario.nunique(), data.strategy.nunique()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 + 0.35 * n_sc * n_st), 3.8))
    sns.barplot(data=data.assign(f=100 * data.forgetting), x="scenario", y="f", hue="strategy", errorbar=CI,
                seed=BOOT_SEED, capsize=0.1, ax=ax)
    ax.set(xlabel="", ylabel="forgetting (%) ↓", title="Average forgetting after the last experience")
    ax.legend(fontsize="small", title=None)
    path = _save(fig, out / "forgetting.png")
    return Figure(path, "Average forgetting after the last experience (Chaudhry et al. 2018; error bars: 95 % CI over seeds)",
                  None, "forgetting")


def _base_novel(steps: pd.DataFrame, scenario: str, out: Path) -> Optional[Figure]:
    import matplotlib.pyplot as plt
    import seaborn as sns

    block = steps[(steps.scenario == scenario)]
    if "base_accuracy" not in block or block.base_accuracy.isna().all():
        return None
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.6), sharey=True)
    for ax, split, column in ((axes[0], "base", "base_accuracy"), (axes[1], "novel", "novel_accuracy")):
        part = block.assign(acc=100 * block[column].astype(float))
        part = part[part.acc.notna()]
        sns.lineplot(data=part, x="step", y="acc", hue="strategy", marker="o", errorbar=CI, seed=BOOT_SEED,
                     ax=ax, legend=split == "novel")
        ax.set(xlabel="session", ylabel="accuracy (%)", title=f"{split} classes")
        ax.set_xticks(sorted(block.step.unique()))
    axes[1].legend(fontsize="small", title=None)
    fig.suptitle(scenario)
    path = _save(fig, out / f"{_safe(scenario)}__base_novel.png")
    return Figure(path, f"{scenario}: accuracy on base and on novel classes per session (band: 95 % CI over seeds)",
                  scenario, "base_novel")


def write_figures(results: list[RunResult], out: Path) -> list[Figure]:
    """Write every figure into ``out``; return them in report order."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    from clproto.progress import progress_bar

    sns.set_theme(style="whitegrid", context="paper")
    out.mkdir(parents=True, exist_ok=True)
    steps = steps_frame(results)
    jobs: list[Callable[[], Optional[Figure]]] = []  # in report order
    for scenario in sorted({r.scenario for r in results}):
        jobs.append(partial(_seen_accuracy, steps, scenario, out))
        jobs.append(partial(_base_novel, steps, scenario, out))
        runs = sorted((r for r in results if r.scenario == scenario), key=lambda r: (r.strategy, r.seed))
        for strategy in sorted({r.strategy for r in runs}):
            jobs.append(partial(_accuracy_matrix, [r for r in runs if r.strategy == strategy], out))
    jobs.append(partial(_forgetting, summary_frame(results), out))
    figures = [job() for job in progress_bar(jobs, desc="report figures", unit="figure")]
    return [f for f in figures if f is not None]
