"""The look of a report's figures: the conventions every figure shares and one style per strategy.

:func:`strategy_styles` gives each strategy one colour, marker and line style for every figure of a
report (from a hash of its name); :class:`Figure` is what :func:`clproto.reports.figures.write_figures`
returns for each file. See :mod:`clproto.reports.figures` for the figures themselves.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

DPI = 150  # resolution of every PNG (shown at its natural size in report.html)
FORMATS = ("png", "pdf")  # figure file formats; report.html always embeds PNG
# colour-blind-safe colours: Okabe & Ito (2008) without yellow (too pale on white), then three of
# Paul Tol's "muted" scheme (wine, olive, indigo) for reports with more than seven strategies
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#d55e00", "#cc79a7", "#56b4e9", "#000000",
           "#882255", "#999933", "#332288")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "h")  # drawn hollow: overlapping markers stay visible
LINESTYLES = ("-", "--", "-.", ":")
DODGE = 0.24  # total horizontal spread of a line figure's points, as a fraction of the smallest step on x
UNCERTAINTY = "mean ± std over seeds (band / error bar: ± sample std, ddof=1)"  # in every caption


@dataclass(frozen=True)
class Style:
    colour: str  # "#rrggbb"
    marker: str  # matplotlib marker
    linestyle: str  # matplotlib line style


@dataclass(frozen=True)
class Figure:
    path: Path  # the figure file (PNG or PDF)
    png: bytes  # the PNG image embedded in report.html
    title: str  # caption in the HTML report
    scenario: Optional[str]  # section of the HTML report (None: across scenarios)
    kind: str  # "accuracy_vs_classes", "old_new", "base_novel", "accuracy_matrix", "forgetting"
    styles: dict = field(default_factory=dict)  # strategy -> {"colour", "marker", "linestyle"} as drawn


def _hash(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest(), "big")


def strategy_styles(names) -> dict[str, Style]:
    """One style per strategy name: colour, marker and line style from a hash of the name.

    Names are assigned in sorted order; a name whose colour (marker, line style) is already taken in
    this report takes the next free one, so no two strategies of a report share a colour while the
    palette lasts (then no two share colour and marker). Same names, same styles.
    """
    taken_colours: set[int] = set()
    taken_pairs: set[tuple[int, int]] = set()
    taken_markers: set[int] = set()
    taken_lines: set[int] = set()
    out: dict[str, Style] = {}
    C, M, L = len(PALETTE), len(MARKERS), len(LINESTYLES)
    for name in sorted(set(names)):
        h = _hash(name)
        c0, m0, l0 = h % C, (h // C) % M, (h // (C * M)) % L
        free = [c for c in ((c0 + k) % C for k in range(C)) if c not in taken_colours]
        c = free[0] if free else c0
        markers = [m for m in ((m0 + k) % M for k in range(M)) if (c, m) not in taken_pairs]
        m = next((m for m in markers if m not in taken_markers), markers[0] if markers else m0)
        l = next((l for l in ((l0 + k) % L for k in range(L)) if l not in taken_lines), l0)
        taken_colours.add(c)
        taken_markers.add(m)
        taken_pairs.add((c, m))
        taken_lines.add(l)
        out[name] = Style(PALETTE[c], MARKERS[m], LINESTYLES[l])
    return out


def _drawn(ax_list) -> dict:
    """strategy -> style as actually drawn (read back from the artists tagged with the strategy's gid)."""
    from matplotlib.colors import to_hex

    out: dict = {}
    for ax in ax_list:
        for line in ax.get_lines():
            gid = line.get_gid()
            if gid:
                out[gid] = {"colour": to_hex(line.get_color()), "marker": line.get_marker(),
                            "linestyle": line.get_linestyle()}
        for patch in ax.patches:
            gid = patch.get_gid()
            if gid and gid not in out:
                out[gid] = {"colour": to_hex(patch.get_facecolor()), "marker": None, "linestyle": None}
    return dict(sorted(out.items()))
