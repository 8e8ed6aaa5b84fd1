"""Writing a report folder: summary tables (Markdown, CSV) and figures (PNG).

Tables show mean ± std over seeds (sample standard deviation, ddof=1; "±0.00" for one seed
is printed as just the mean), accuracies in percent, the best value per column in bold.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from clproto.evaluation.results import RunResult
from clproto.reports.collect import SUMMARY_METRICS, steps_frame, summary_frame


def _fmt(mean: float, std: float, n: int) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if n <= 1 or std is None or math.isnan(std):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def aggregate(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean, std and count over seeds for each (scenario, strategy)."""
    g = df.groupby(["scenario", "strategy"], sort=False)
    out = g[metrics].agg(["mean", "std", "count"])
    return out


def markdown_table(df: pd.DataFrame, *, bold_best: bool = True) -> str:
    """Rows: (scenario, strategy); columns: headline metrics as mean ± std over seeds."""
    metrics = [m for m in SUMMARY_METRICS if m in df and df[m].notna().any()]
    agg = aggregate(df, metrics)
    lines = []
    for scenario, block in agg.groupby(level=0, sort=False):
        seeds = df[df.scenario == scenario].groupby("strategy").seed.nunique()
        lines.append(f"**{scenario}** ({int(seeds.max())} seed{'s' if seeds.max() > 1 else ''}; accuracies in %, mean ± std over seeds)\n")
        head = ["Strategy"] + [SUMMARY_METRICS[m][0] + (" ↑" if SUMMARY_METRICS[m][1] else " ↓") for m in metrics]
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        best = {}
        for m in metrics:
            means = block[(m, "mean")].astype(float)
            if means.notna().any() and len(means) > 1:
                best[m] = means.max() if SUMMARY_METRICS[m][1] else means.min()
        for (_, strategy), row in block.iterrows():
            cells = [str(strategy)]
            for m in metrics:
                mean, std, n = row[(m, "mean")], row[(m, "std")], row[(m, "count")]
                text = _fmt(mean, std, int(n))
                if bold_best and m in best and mean == best[m]:
                    text = f"**{text}**"
                cells.append(text)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _plots(results: list[RunResult], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="paper")
    written = []
    steps = steps_frame(results)
    for scenario, block in steps.groupby("scenario", sort=False):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        sns.lineplot(data=block.assign(acc=100 * block.seen_accuracy), x="step", y="acc", hue="strategy",
                     marker="o", errorbar=("ci", 95), ax=ax)
        ax.set(xlabel="experience", ylabel="seen-class accuracy (%)", title=f"{scenario}")
        ax.set_xticks(sorted(block.step.unique()))
        fig.tight_layout()
        path = out / f"{scenario}__seen_accuracy.png"
        fig.savefig(path, dpi=150)
        plt.close(fig)
        written.append(path)
    by_key: dict[tuple[str, str], list[RunResult]] = {}
    for r in results:
        by_key.setdefault((r.scenario, r.strategy), []).append(r)
    for (scenario, strategy), runs in by_key.items():
        A = np.array([[np.nan if v is None else v for v in row] for row in runs[0].accuracy_matrix])
        if len(runs) > 1:
            A = np.nanmean([[[np.nan if v is None else v for v in row] for row in r.accuracy_matrix] for r in runs], axis=0)
        T = A.shape[0]
        fig, ax = plt.subplots(figsize=(1.2 + 0.45 * T, 0.9 + 0.4 * T))
        sns.heatmap(100 * A, annot=T <= 12, fmt=".0f", vmin=0, vmax=100, cmap="viridis", square=True,
                    cbar_kws={"label": "accuracy (%)"}, ax=ax,
                    xticklabels=range(1, T + 1), yticklabels=range(1, T + 1))
        ax.set(xlabel="evaluated on experience", ylabel="after training on", title=f"{strategy}\n{scenario}")
        fig.tight_layout()
        path = out / f"{scenario}__{strategy}__accuracy_matrix.png"
        fig.savefig(path, dpi=150)
        plt.close(fig)
        written.append(path)
    return written


def write_report(results: list[RunResult], out: str | os.PathLike) -> dict[str, Path]:
    """Write ``summary.md``, ``summary.csv`` and PNG figures into ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    df = summary_frame(results)
    md = markdown_table(df)
    paths = {"markdown": out / "summary.md", "csv": out / "summary.csv"}
    _atomic_text(paths["markdown"], md)
    tmp = out / ".summary.csv.tmp"
    df.sort_values(["scenario", "strategy", "seed"]).to_csv(tmp, index=False)
    os.replace(tmp, paths["csv"])
    for i, p in enumerate(_plots(results, out)):
        paths[f"figure{i}"] = p
    return paths


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
