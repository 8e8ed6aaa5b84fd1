"""The figures of a report (matplotlib with seaborn's theme), as PNG or PDF files.

Per scenario, in report order:

* ``<scenario>__accuracy_vs_classes`` — accuracy on all seen classes against the number of classes
  seen after each experience (the curve of PyCIL / PILOT; for a few-shot scenario, the session
  accuracy: point t is session t);
* ``<scenario>__old_new`` (class-incremental) — accuracy on the old classes (every earlier
  experience, test-size weighted) and on the new ones (the experience just learned) after each step,
  :func:`clproto.evaluation.metrics.old_new_accuracy`;
* ``<scenario>__base_novel`` (few-shot) — base-class, novel-class accuracy and their harmonic mean
  per session;
* ``<scenario>__<strategy>__accuracy_matrix`` — the accuracy matrix ``A[t][j]``, mean over seeds;

and across scenarios ``forgetting`` — final average forgetting (Chaudhry et al. 2018), one panel per
scenario with its own axis and only the strategies run on it.

Conventions, the same in every figure (and stated in every caption): a point or bar is the mean
over seeds, the shaded band or error bar is ± the sample standard deviation over seeds (ddof=1, as
in the tables; none for one seed). A strategy has one colour, marker and line style in every figure
of a report (:func:`strategy_styles`: derived from its name, so stable across reports unless two
names of one report want the same colour); markers are hollow and the points of a line figure are
dodged horizontally by a fraction of the step width, so identical curves stay visible. Figures carry
no version stamp or date: the same results give the same bytes.

The styles and shared conventions are in :mod:`clproto.reports.figure_styles`, the drawing helpers
(grouping, mean ± std, curves, captions, saving) in :mod:`clproto.reports.figure_drawing`; every
name stays importable from this module.
"""

from __future__ import annotations

import math
import warnings
from functools import partial
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from clproto.evaluation.metrics import old_new_accuracy
from clproto.evaluation.results import RunResult
from clproto.reports.figure_drawing import (_by_strategy, _caption, _classes_seen, _legend, _lines, _mean_std, _safe,
                                            _save)
from clproto.reports.figure_styles import FORMATS, Figure, _drawn, strategy_styles
from clproto.reports.figure_styles import DODGE, DPI, LINESTYLES, MARKERS, PALETTE, UNCERTAINTY, Style  # noqa: F401 (importable from here as before)


def _accuracy_vs_classes(results: list[RunResult], scenario: str, styles, out: Path, fmt: str) -> Figure:
    import matplotlib.pyplot as plt

    groups = _by_strategy(results, scenario)
    few_shot = all(r.kind == "few-shot" for runs in groups.values() for r in runs)
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    _lines(ax, groups, styles, lambda r: r.seen_accuracy, _classes_seen)
    ticks = sorted({x for runs in groups.values() for r in runs for x in _classes_seen(r)})
    ax.set_xticks(ticks if len(ticks) <= 20 else ticks[:: math.ceil(len(ticks) / 20)])
    ax.set(xlabel="number of classes seen", ylabel="accuracy on seen classes (%)",
           title=f"{scenario}: {'session accuracy' if few_shot else 'accuracy vs classes seen'}")
    _legend(ax)
    path, png = _save(fig, out, f"{_safe(scenario)}__accuracy_vs_classes", fmt)
    what = ("accuracy on all seen classes after each session (point t = session t, session 1 = base)" if few_shot
            else "accuracy on all seen classes against the number of classes seen after each experience")
    return Figure(path, png, _caption(f"{scenario}: {what}", groups), scenario, "accuracy_vs_classes",
                  _drawn([ax]))


def _old_new(results: list[RunResult], scenario: str, styles, out: Path, fmt: str) -> Optional[Figure]:
    groups = _by_strategy(results, scenario)
    if any(r.kind != "class-incremental" for runs in groups.values() for r in runs):
        return None
    if max(len(r.seen_accuracy) for runs in groups.values() for r in runs) < 2:
        return None
    split = {(r.strategy, r.seed): old_new_accuracy(r.accuracy_matrix, r.test_sizes)
             for runs in groups.values() for r in runs}
    panels = [("old classes (earlier experiences)", lambda r: split[(r.strategy, r.seed)][0]),
              ("new classes (this experience)", lambda r: split[(r.strategy, r.seed)][1])]
    return _step_panels(groups, styles, panels, _step_numbers, xlabel="experience", width=10.0, scenario=scenario,
                        kind="old_new", out=out, fmt=fmt,
                        what="accuracy on the old classes (test-size-weighted over earlier experiences) and on the "
                             "new classes after each experience")


def _base_novel(results: list[RunResult], scenario: str, styles, out: Path, fmt: str) -> Optional[Figure]:
    groups = _by_strategy(results, scenario)
    if any(r.metrics.base_accuracy is None for runs in groups.values() for r in runs):
        return None
    panels = [(name, lambda r, key=key: getattr(r.metrics, key) or [])
              for key, name in (("base_accuracy", "base classes"), ("novel_accuracy", "novel classes"),
                                ("harmonic_mean", "harmonic mean of base and novel"))]
    return _step_panels(groups, styles, panels, _step_numbers, xlabel="session", width=13.0, scenario=scenario,
                        kind="base_novel", out=out, fmt=fmt,
                        what="accuracy on base and on novel classes and their harmonic mean per session "
                             "(novel and HM from session 2)")


def _step_numbers(run: RunResult) -> list[int]:
    """1-based experience (session) numbers of a run: the x values of the per-step panels."""
    return list(range(1, len(run.seen_accuracy) + 1))


def _step_panels(groups, styles, panels, x_of, *, xlabel: str, width: float, scenario: str, kind: str, out: Path,
                 fmt: str, what: str) -> Figure:
    """One row of panels sharing the y axis, each a curve per strategy of ``value(run)`` against ``x_of(run)``."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(width, 3.8), sharey=True)
    for ax, (name, value) in zip(axes, panels):
        _lines(ax, groups, styles, value, x_of)
        ax.set(xlabel=xlabel, ylabel="accuracy (%)", title=name)
        ax.set_xticks(sorted({t for runs in groups.values() for r in runs for t in x_of(r)}))
    _legend(axes[-1])
    fig.suptitle(scenario)
    path, png = _save(fig, out, f"{_safe(scenario)}__{kind}", fmt)
    return Figure(path, png, _caption(f"{scenario}: {what}", groups), scenario, kind, _drawn(axes))


def _accuracy_matrix(runs: list[RunResult], out: Path, fmt: str) -> Figure:
    """Heatmap of ``A[t][j]`` (mean over seeds): upper triangle blank, no grid, numbers sized to the cells."""
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    stacked = np.array([[[np.nan if v is None else v for v in row] for row in r.accuracy_matrix] for r in runs],
                       dtype=float)  # (seeds, T, T), NaN above the diagonal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN entries above the diagonal stay NaN
        A = 100 * np.nanmean(stacked, axis=0)  # (T, T)
    T = A.shape[0]
    scenario, strategy = runs[0].scenario, runs[0].strategy
    cell = max(0.1, min(0.55, 9.0 / T))  # inches per cell: the whole matrix stays under ~10 inches
    fig, ax = plt.subplots(figsize=(1.9 + cell * T, 1.3 + cell * T))
    cmap = colormaps["viridis"].with_extremes(bad="white")  # white: the blank upper triangle
    image = ax.imshow(np.ma.masked_invalid(A), cmap=cmap, vmin=0, vmax=100, interpolation="nearest")
    ax.grid(False)
    for spine in ax.spines.values():
        spine.set_visible(False)
    size = min(11.0, cell * 72 * 0.36)  # points: three digits fit in a cell
    if size >= 4.5:
        for t in range(T):
            for j in range(t + 1):
                if np.isfinite(A[t, j]):
                    r, g, b, _ = cmap(A[t, j] / 100)
                    ink = "black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white"
                    ax.text(j, t, f"{A[t, j]:.0f}", ha="center", va="center", fontsize=size, color=ink)
    every = max(1, math.ceil(T / 20))
    ticks = list(range(0, T, every))
    ax.set_xticks(ticks, [str(t + 1) for t in ticks])
    ax.set_yticks(ticks, [str(t + 1) for t in ticks])
    ax.tick_params(length=0)
    fig.colorbar(image, ax=ax, label="accuracy (%)", fraction=0.046, pad=0.04)
    ax.set(xlabel="tested on experience", ylabel="after training on", title=f"{scenario} — {strategy}")
    path, png = _save(fig, out, f"{_safe(scenario)}__{_safe(strategy)}__accuracy_matrix", fmt)
    n = len(runs)
    return Figure(path, png, f"{scenario} — {strategy}: accuracy matrix A[t][j] in %, mean over {n} seed{'s' if n > 1 else ''} "
                             "(std over seeds in results.json / tables); blank above the diagonal (not yet learned)",
                  scenario, "accuracy_matrix", {})


def _forgetting(results: list[RunResult], styles, out: Path, fmt: str) -> Optional[Figure]:
    """One panel per scenario with forgetting defined, each with its own axis and only its strategies."""
    import matplotlib.pyplot as plt

    panels = []
    for scenario in sorted({r.scenario for r in results}):
        groups = {k: v for k, v in _by_strategy(results, scenario).items()
                  if any(r.metrics.forgetting is not None for r in v)}
        if groups:
            panels.append((scenario, groups))
    if not panels:
        return None
    widths = [1.4 + 0.55 * len(g) for _, g in panels]
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, sum(widths)), 4.2), squeeze=False,
                             gridspec_kw={"width_ratios": widths})
    all_groups: dict[str, list[RunResult]] = {}
    for ax, (scenario, groups) in zip(axes[0], panels):
        for i, (name, runs) in enumerate(groups.items()):
            all_groups[f"{scenario}/{name}"] = runs
            m, s, _ = _mean_std([r.metrics.forgetting for r in runs])
            st = styles[name]
            ax.bar(i, 100 * m, width=0.7, color=st.colour, edgecolor="black", linewidth=0.6, gid=name)
            if math.isfinite(s):
                ax.errorbar(i, 100 * m, yerr=100 * s, color="black", capsize=4, linewidth=1)
            top = 100 * m + (100 * s if math.isfinite(s) else 0)
            ax.annotate(f"{100 * m:.1f}", (i, max(top, 0)), xytext=(0, 2), textcoords="offset points",
                        ha="center", va="bottom", fontsize=7)
        ax.set_xticks(range(len(groups)), list(groups), rotation=30, ha="right")
        ax.axhline(0, color="black", linewidth=0.6)
        ax.set(title=scenario, xlabel="")
        ax.margins(y=0.15)
        ax.grid(axis="x", visible=False)
    axes[0][0].set_ylabel("forgetting (%) ↓")
    fig.suptitle("Average forgetting after the last experience")
    path, png = _save(fig, out, "forgetting", fmt)
    return Figure(path, png, _caption("Average forgetting after the last experience (Chaudhry et al. 2018), one "
                                      "panel per scenario with its own axis", all_groups),
                  None, "forgetting", _drawn(axes[0]))


def write_figures(results: list[RunResult], out: Path, *, fmt: str = "png", progress: bool = True) -> list[Figure]:
    """Write every figure into ``out`` as ``fmt`` (png or pdf); return them in report order (a bar with ``progress``)."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    from clproto.progress import progress_bar

    if fmt not in FORMATS:
        raise ValueError(f"figure format {fmt!r}, expected one of {FORMATS}")
    sns.set_theme(style="whitegrid", context="paper")
    out.mkdir(parents=True, exist_ok=True)
    styles = strategy_styles(r.strategy for r in results)
    jobs: list[Callable[[], Optional[Figure]]] = []  # in report order
    for scenario in sorted({r.scenario for r in results}):
        jobs.append(partial(_accuracy_vs_classes, results, scenario, styles, out, fmt))
        jobs.append(partial(_old_new, results, scenario, styles, out, fmt))
        jobs.append(partial(_base_novel, results, scenario, styles, out, fmt))
        for runs in _by_strategy(results, scenario).values():
            jobs.append(partial(_accuracy_matrix, runs, out, fmt))
    jobs.append(partial(_forgetting, results, styles, out, fmt))
    figures = [job() for job in progress_bar(jobs, desc="report figures", enabled=progress, unit="figure")]
    return [f for f in figures if f is not None]
