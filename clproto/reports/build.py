"""Writing a report folder: tables (Markdown, CSV, LaTeX), figures (PNG or PDF), one HTML page and a manifest.

Tables show mean ± std over seeds (sample standard deviation, ddof=1; "±0.00" for one seed
is printed as just the mean), accuracies in percent, the best value per column in bold. The
header states the seed count; a cell over another number of results says so: ``45.00 (n=2)``.
Only results that :func:`clproto.reports.pooling.pool` accepts are reported (one configuration
per row, each seed once).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Optional

import pandas as pd

from clproto.errors import ConfigError
from clproto.evaluation.results import RunResult
from clproto.reports.collect import FEW_SHOT_METRICS, SUMMARY_METRICS, summary_frame
from clproto.reports.pooling import pool
from clproto.storage import write_json_atomic, write_text_atomic


def _fmt(mean: float, std: float, n: int, seeds: int) -> str:
    """``seeds``: the count the table's header states; a cell over another number of results is marked."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    mark = f" (n={n})" if n != seeds else ""
    if n <= 1 or std is None or math.isnan(std):
        return f"{100 * mean:.2f}{mark}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}{mark}"


def aggregate(df: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Mean, std and count over seeds for each (scenario, strategy)."""
    g = df.groupby(["scenario", "strategy"], sort=False)
    out = g[metrics].agg(["mean", "std", "count"])
    return out


def markdown_table(df: pd.DataFrame, *, bold_best: bool = True) -> str:
    """Rows: (scenario, strategy); columns: headline metrics as mean ± std over seeds.

    A few-shot scenario's headline metrics are :data:`~clproto.reports.collect.FEW_SHOT_METRICS` (last-session,
    average, PD, base / novel / HM of the last session), followed by the accuracy after each session."""
    metrics = [m for m in SUMMARY_METRICS if m in df and df[m].notna().any()]
    agg = aggregate(df, metrics)
    lines = []
    for scenario, block in agg.groupby(level=0, sort=False):
        rows = df[df.scenario == scenario]
        if "kind" in rows and (rows.kind == "few-shot").all():
            lines.extend(_few_shot_block(scenario, rows, bold_best=bold_best))
            continue
        seeds = rows.groupby("strategy").seed.nunique()
        n_seeds = int(seeds.max())
        lines.append(f"**{scenario}** ({n_seeds} seed{'s' if n_seeds > 1 else ''}; accuracies in %, mean ± std over seeds)\n")
        lines.extend(_metric_rows(block, metrics, SUMMARY_METRICS, n_seeds, bold_best))
        lines.append("")
    return "\n".join(lines)


def _metric_rows(block: pd.DataFrame, metrics: list[str], titles: dict, n_seeds: int, bold_best: bool) -> list[str]:
    """Header, rule and one line per strategy of ``block`` (aggregated metrics), the best of each column in bold."""
    head = ["Strategy"] + [titles[m][0] + (" ↑" if titles[m][1] else " ↓") for m in metrics]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    best = {}
    for m in metrics:
        means = block[(m, "mean")].astype(float)
        if means.notna().any() and len(means) > 1:
            best[m] = means.max() if titles[m][1] else means.min()
    for (_, strategy), row in block.iterrows():
        cells = [str(strategy)]
        for m in metrics:
            mean, std, n = row[(m, "mean")], row[(m, "std")], row[(m, "count")]
            text = _fmt(mean, std, int(n), n_seeds)
            if bold_best and m in best and mean == best[m]:
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _few_shot_block(scenario: str, rows: pd.DataFrame, *, bold_best: bool) -> list[str]:
    """A few-shot scenario: headline metrics, then the mean accuracy after each session."""
    metrics = [m for m in FEW_SHOT_METRICS if m in rows and rows[m].notna().any()]
    n_seeds = int(rows.groupby("strategy").seed.nunique().max())
    lines = [f"**{scenario}** ({n_seeds} seed{'s' if n_seeds > 1 else ''}; few-shot; accuracies in %, mean ± std "
             "over seeds; base / novel / HM of the last session; PD = first - last session)\n"]
    lines.extend(_metric_rows(aggregate(rows, metrics), metrics, FEW_SHOT_METRICS, n_seeds, bold_best))
    sessions = [c for c in rows.columns if c.startswith("session_") and rows[c].notna().any()]
    sessions.sort(key=lambda c: int(c.split("_")[1]))
    if sessions:
        means = rows.groupby("strategy", sort=False)[sessions].mean()  # (strategies, sessions)
        lines += ["", "Accuracy after each session (%, mean over seeds):", "",
                  "| Strategy | " + " | ".join(c.split("_")[1] for c in sessions) + " |", "|" + "---|" * (len(sessions) + 1)]
        for strategy, row in means.iterrows():
            lines.append(f"| {strategy} | " + " | ".join("–" if pd.isna(v) else f"{100 * v:.2f}" for v in row) + " |")
    lines.append("")
    return lines


MANIFEST = "manifest.json"  # what the last report wrote into its folder (files, figure styles, command)
# figure files clproto writes or wrote (earlier versions included): stale ones are removed even without a manifest
OWN_FIGURE = re.compile(r"^(forgetting|.+__(seen_accuracy|accuracy_matrix|base_novel|accuracy_vs_classes|old_new))"
                        r"\.(png|pdf)$")


def _previous_files(out: Path) -> set[str]:
    """File names the previous report listed in its manifest (nothing if there is none or it is unreadable)."""
    try:
        files = json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        return set()
    return {f for f in files if isinstance(f, str)}


def _remove_stale(out: Path, keep: set[str], previous: set[str]) -> list[str]:
    """Delete the files an earlier report wrote into ``out`` that this one did not (its manifest's files and
    clproto's own figure names only: a file clproto did not write is never touched)."""
    own = {p.name for p in out.iterdir() if p.is_file() and OWN_FIGURE.match(p.name)}
    removed = []
    for name in sorted((previous | own) - keep):
        if Path(name).name != name or name.startswith(".") or name in ("", ".."):
            continue  # a manifest entry that is not a plain file name of this folder
        path = out / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
            removed.append(name)
    return removed


def write_report(results: list[RunResult], out: str | os.PathLike, *, title: str = "clproto report",
                 fmt: str = "png", command: Optional[str] = None, baseline: Optional[str] = None,
                 progress: bool = True) -> dict[str, Path]:
    """Write the report folder ``out``; return the written paths by role.

    ``summary.md`` / ``summary.csv`` (one table per scenario with one line per strategy; one CSV line per
    run), ``tables.md`` / ``tables.tex`` / ``tables.csv`` (every table of :mod:`clproto.reports.tables`),
    the figures of :mod:`clproto.reports.figures` as ``fmt`` files (``png``, or ``pdf`` for vector
    figures; report.html embeds PNG either way), ``report.html`` (self-contained) and ``manifest.json``
    (the files written, each figure's strategy -> colour / marker / line style as drawn, ``command``).
    Files an earlier report wrote here and this one did not are removed (those its manifest lists, and
    clproto's figure names); other files are left alone. ``command``: the command line that regenerates
    the report, shown in report.html. With ``baseline``, table cells that differ significantly from that
    strategy's are marked † (:func:`~clproto.reports.tables.mark_differences`). ``progress``: a bar while
    the figures are drawn.
    """
    from clproto.reports.figures import FORMATS, write_figures
    from clproto.reports.html import write_html
    from clproto.reports.tables import all_tables, to_csv, to_latex, to_markdown

    if not results:
        raise ConfigError("no results to report")
    if fmt not in FORMATS:
        raise ConfigError("unknown figure format", field="--format", value=fmt, expected=" or ".join(FORMATS))
    pooled = pool(results)  # raises on one name with two configurations
    if pooled.notes:
        raise ConfigError(f"results must be pooled before writing a report: {pooled.notes[0]}",
                          expected="results from clproto.reports.collect.collect (or pooling.pool)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = _previous_files(out)
    df = summary_frame(results)
    paths = {"markdown": out / "summary.md", "csv": out / "summary.csv", "tables_md": out / "tables.md",
             "tables_tex": out / "tables.tex", "tables_csv": out / "tables.csv", "html": out / "report.html"}
    write_text_atomic(paths["markdown"], markdown_table(df))
    write_text_atomic(paths["csv"], df.sort_values(["scenario", "strategy", "seed"]).to_csv(index=False))
    tables = all_tables(results, baseline=baseline)
    write_text_atomic(paths["tables_md"], "\n".join(to_markdown(t) for t in tables))
    write_text_atomic(paths["tables_tex"], "% generated by `clproto report`; needs \\usepackage{booktabs}\n\n"
                 + "\n".join(to_latex(t) for t in tables))
    write_text_atomic(paths["tables_csv"], to_csv(tables))
    figures = write_figures(results, out, fmt=fmt, progress=progress)
    for i, f in enumerate(figures):
        paths[f"figure{i}"] = f.path
    paths["manifest"] = out / MANIFEST
    files = sorted(p.name for p in paths.values())
    write_html(paths["html"], results, tables, figures, title=title, command=command, files=files)
    manifest = {"command": command, "files": files,
                "figures": {f.path.name: {"kind": f.kind, "scenario": f.scenario, "caption": f.title,
                                          "strategies": f.styles} for f in figures}}
    write_json_atomic(paths["manifest"], manifest)
    _remove_stale(out, set(files), previous)
    return paths
