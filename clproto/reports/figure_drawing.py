"""Drawing helpers shared by the figures of a report: grouping runs, mean ± std, curves, captions, saving.

See :mod:`clproto.reports.figures` for the conventions (mean over seeds, ± sample std, dodged
hollow markers, reproducible bytes) these helpers implement.
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Callable

import numpy as np

from clproto.evaluation.results import RunResult
from clproto.reports.figure_styles import DODGE, DPI, UNCERTAINTY, Style
from clproto.storage import write_atomic


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_.@=," else "_" for ch in name)


def _save(fig, out: Path, stem: str, fmt: str) -> tuple[Path, bytes]:
    """Write ``<stem>.<fmt>`` atomically; return its path and the PNG bytes for report.html."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})  # no version stamp: same bytes on re-runs
    png = buf.getvalue()
    if fmt == "png":
        data = png
    else:  # vector: no creation date or producer, so the bytes are reproducible too
        buf = io.BytesIO()
        fig.savefig(buf, format="pdf", metadata={"Creator": None, "Producer": None, "CreationDate": None})
        data = buf.getvalue()
    plt.close(fig)
    path = out / f"{stem}.{fmt}"
    write_atomic(path, lambda fh: fh.write(data), nbytes=len(data))
    return path, png


def _by_strategy(results: list[RunResult], scenario: str) -> dict[str, list[RunResult]]:
    out: dict[str, list[RunResult]] = {}
    for r in sorted(results, key=lambda r: (r.strategy, r.seed)):
        if r.scenario == scenario:
            out.setdefault(r.strategy, []).append(r)
    return out


def _mean_std(values: list) -> tuple[float, float, int]:
    """Mean, sample std (ddof=1; NaN for one value) and count of the non-missing values."""
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    if not vals:
        return math.nan, math.nan, 0
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan
    return float(np.mean(vals)), std, len(vals)


def _classes_seen(run: RunResult) -> list[int]:
    """Number of classes seen after each experience."""
    counts = np.cumsum([len(c) for c in run.experience_classes])
    return [int(c) for c in counts][: len(run.seen_accuracy)]


def _seeds_text(groups: dict[str, list[RunResult]]) -> str:
    counts = sorted({len(runs) for runs in groups.values()})
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    return f"{n} seed{'s' if counts[-1] > 1 else ''}"


def _caption(text: str, groups: dict[str, list[RunResult]]) -> str:
    return f"{text}; {UNCERTAINTY}, {_seeds_text(groups)}"


def _lines(ax, groups: dict[str, list[RunResult]], styles: dict[str, Style],
           series: Callable[[RunResult], list], xs: Callable[[RunResult], list]) -> None:
    """One line per strategy: mean over seeds of ``series(run)[t]`` at ``xs(run)[t]``, band ± std, dodged."""
    xs_all = sorted({x for runs in groups.values() for r in runs for x in xs(r)})
    step = min((b - a for a, b in zip(xs_all, xs_all[1:])), default=1.0) or 1.0
    names = list(groups)
    for rank, name in enumerate(names):
        runs = groups[name]
        T = max(len(series(r)) for r in runs)
        x, mean, std = [], [], []
        for t in range(T):
            m, s, n = _mean_std([series(r)[t] if t < len(series(r)) else None for r in runs])
            if n == 0:
                continue
            x.append(float(np.mean([xs(r)[t] for r in runs if t < len(xs(r))])))
            mean.append(100 * m)
            std.append(100 * s)
        if not x:
            continue
        offset = DODGE * step * (rank / (len(names) - 1) - 0.5) if len(names) > 1 else 0.0
        x = np.asarray(x) + offset
        mean, std = np.asarray(mean), np.asarray(std)
        st = styles[name]
        ax.plot(x, mean, color=st.colour, marker=st.marker, linestyle=st.linestyle, markerfacecolor="white",
                markeredgewidth=1.4, markersize=6, linewidth=1.6, label=name, gid=name)
        if np.isfinite(std).any():
            band = np.nan_to_num(std)
            ax.fill_between(x, np.clip(mean - band, 0, 100), np.clip(mean + band, 0, 100), color=st.colour, alpha=0.15, linewidth=0)


def _legend(ax) -> None:
    ax.legend(fontsize="small", title=None, frameon=True)
