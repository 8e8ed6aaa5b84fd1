"""Comparison tables (rows: strategies) rendered as Markdown, LaTeX, CSV and HTML.

Every cell is the mean ± sample standard deviation (ddof=1) over seeds of one number that
:mod:`clproto.evaluation.metrics` computed for each run; nothing here computes a metric.
Values are shown in percent with two decimals; the best mean of each column (highest, or
lowest for forgetting and performance drop) is bold, ties included, when the column has
more than one strategy. With a baseline strategy (``clproto report --baseline``), a cell whose
seeds differ from the baseline's in the same column (paired t-test, p < 0.05) is marked †. Tables:

* :func:`comparison_tables` — one per headline metric, columns = scenarios;
* :func:`scenario_table` — one per scenario, columns = headline metrics;
* :func:`session_table` — few-shot scenarios, in the style of TEEN's Table 3 (Wang et al.,
  NeurIPS 2023): accuracy on all seen classes after each session, their average ("Avg",
  the average incremental accuracy) and the performance drop ("PD", first minus last);
* :func:`base_novel_table` — few-shot scenarios: base / novel accuracy and their harmonic
  mean after the last session; :func:`harmonic_mean_table` — the harmonic mean per session.
"""

from __future__ import annotations

import csv
import html
import io
import math
from dataclasses import dataclass, replace
from typing import Optional

import numpy as np

from clproto.errors import ConfigError
from clproto.evaluation.results import RunResult
from clproto.reports.collect import SUMMARY_METRICS

# metrics of the cross-scenario comparison tables
COMPARISON_METRICS = ("final_accuracy", "average_incremental_accuracy", "forgetting")


@dataclass(frozen=True)
class Cell:
    mean: Optional[float]  # None: no run has a value (e.g. forgetting after one experience)
    std: Optional[float]  # sample std over seeds (ddof=1); None for a single seed
    n: int  # runs (seeds) aggregated
    by_seed: tuple = ()  # (seed, value) of each run with a value, when the seeds were given: for paired tests

    @classmethod
    def of(cls, values: list, seeds: Optional[list] = None) -> "Cell":
        keep = [i for i, v in enumerate(values) if v is not None and not (isinstance(v, float) and math.isnan(v))]
        vals = [float(values[i]) for i in keep]
        if not vals:
            return cls(None, None, 0)
        std = float(np.std(vals, ddof=1)) if len(vals) > 1 else None
        by_seed = tuple((seeds[i], float(values[i])) for i in keep) if seeds is not None else ()
        return cls(float(np.mean(vals)), std, len(vals), by_seed)

    def text(self, *, pm: str = " ± ") -> str:
        if self.mean is None:
            return "–"
        if self.std is None:
            return f"{100 * self.mean:.2f}"
        return f"{100 * self.mean:.2f}{pm}{100 * self.std:.2f}"


@dataclass(frozen=True)
class Table:
    key: str  # file-name stem, e.g. "final_accuracy" or "fscil-tinyimagenet100__sessions"
    title: str  # shown above the table
    columns: list  # column titles
    rows: list  # strategy names
    cells: list  # cells[i][j]: Cell of rows[i], columns[j]
    higher_is_better: list  # per column
    note: str = ""  # e.g. "accuracies in %, mean ± std over 5 seeds"
    pooled: tuple = ()  # per column: the results per cell the note states; other counts are marked "(n=k)"
    differs: frozenset = frozenset()  # (row, column) cells marked † (differ from a baseline row, p < 0.05)

    def mark(self, j: int, cell: Cell) -> str:
        """`` (n=k)`` when the cell pools a number of results other than its column's (nothing if empty)."""
        if cell.mean is None or j >= len(self.pooled) or cell.n == self.pooled[j]:
            return ""
        return f" (n={cell.n})"

    def marked(self) -> bool:
        return any(self.mark(j, c) for row in self.cells for j, c in enumerate(row))

    def dagger(self, i: int, j: int, sign: str = " †") -> str:
        """``sign`` for a cell that differs from the baseline (:func:`mark_differences`), else nothing."""
        return sign if (i, j) in self.differs else ""

    def best(self) -> list[set]:
        """Per column: the row indices whose (displayed) mean is the best; empty with fewer than 2 values."""
        out = []
        for j, higher in enumerate(self.higher_is_better):
            means = {i: round(100 * row[j].mean, 2) for i, row in enumerate(self.cells) if row[j].mean is not None}
            if len(means) < 2:
                out.append(set())
                continue
            target = max(means.values()) if higher else min(means.values())
            out.append({i for i, m in means.items() if m == target})
        return out


# --------------------------------------------------------------------------- building
def _groups(results: list[RunResult]) -> dict[tuple[str, str], list[RunResult]]:
    out: dict[tuple[str, str], list[RunResult]] = {}
    for r in sorted(results, key=lambda r: (r.scenario, r.strategy, r.seed)):
        out.setdefault((r.scenario, r.strategy), []).append(r)
    return out


def _order(names) -> list[str]:
    return sorted(dict.fromkeys(names))


def _finish(table: Table, column_runs: list[list[list[RunResult]]]) -> Table:
    """Set the per-column result counts and the note stating them.

    ``column_runs[j]``: the runs of each row in column j. A column's count is the most runs (seeds)
    of any of its rows; the note gives the one count, or the range over columns. A cell pooling
    another number of values (a seed missing, a metric undefined for some runs) is marked ``(n=k)``,
    and the note says what the mark means and whether rows with as many seeds used different ones.
    """
    pooled = tuple(max((len(runs) for runs in rows), default=0) for rows in column_runs)
    table = replace(table, pooled=pooled)
    counts = sorted({p for p in pooled if p > 0}) or [0]
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}–{counts[-1]}"
    note = f"accuracies in %, mean ± std over {n} seed{'s' if counts[-1] > 1 else ''}"
    if table.marked():
        note += "; (n=k): a cell over k results only"
    if any(_different_seeds(rows) for rows in column_runs):
        note += "; not the same seeds in every row"
    return replace(table, note=note)


def _different_seeds(rows: list[list[RunResult]]) -> bool:
    """Two rows with as many runs but not the same seeds (fewer runs are marked (n=k) anyway)."""
    sets = {frozenset(r.seed for r in runs) for runs in rows if runs}
    return len({len(s) for s in sets}) < len(sets)


def comparison_tables(results: list[RunResult]) -> list[Table]:
    """One table per headline metric: rows strategies, columns scenarios."""
    groups = _groups(results)
    scenarios = _order(s for s, _ in groups)
    strategies = _order(t for _, t in groups)
    tables = []
    for metric in COMPARISON_METRICS:
        title, higher = SUMMARY_METRICS[metric]
        cells = [[Cell.of([getattr(r.metrics, metric) for r in groups.get((sc, st), [])],
                          [r.seed for r in groups.get((sc, st), [])]) for sc in scenarios]
                 for st in strategies]
        if all(c.mean is None for row in cells for c in row):
            continue
        columns = [[groups.get((sc, st), []) for st in strategies] for sc in scenarios]
        tables.append(_finish(Table(metric, f"{title} {'↑' if higher else '↓'} by scenario", scenarios, strategies, cells,
                                    [higher] * len(scenarios)), columns))
    return tables


def scenario_table(results: list[RunResult], scenario: str) -> Table:
    """Rows strategies, columns the headline metrics, for one scenario."""
    groups = {k: v for k, v in _groups(results).items() if k[0] == scenario}
    strategies = _order(t for _, t in groups)
    metrics = [m for m in SUMMARY_METRICS if any(getattr(r.metrics, m) is not None for rs in groups.values() for r in rs)]
    cells = [[Cell.of([getattr(r.metrics, m) for r in groups[(scenario, st)]], [r.seed for r in groups[(scenario, st)]])
              for m in metrics] for st in strategies]
    table = Table(f"{scenario}__summary", scenario,
                  [SUMMARY_METRICS[m][0] + (" ↑" if SUMMARY_METRICS[m][1] else " ↓") for m in metrics], strategies, cells,
                  [SUMMARY_METRICS[m][1] for m in metrics])
    return _finish(table, [list(groups.values())] * len(metrics))


def _few_shot_groups(results: list[RunResult], scenario: str) -> tuple[dict, list[str], int]:
    groups = {k: v for k, v in _groups(results).items() if k[0] == scenario}
    sessions = max(len(r.seen_accuracy) for rs in groups.values() for r in rs)
    return groups, _order(t for _, t in groups), sessions


def _at(values: Optional[list], t: int) -> Optional[float]:
    return values[t] if values is not None and t < len(values) else None


def session_table(results: list[RunResult], scenario: str) -> Table:
    """TEEN Table 3 style: seen-class accuracy per session, average over sessions, performance drop."""
    groups, strategies, S = _few_shot_groups(results, scenario)
    columns = [str(t + 1) for t in range(S)] + ["Avg ↑", "PD ↓"]
    cells = []
    for st in strategies:
        runs = groups[(scenario, st)]
        seeds = [r.seed for r in runs]
        row = [Cell.of([_at(r.seen_accuracy, t) for r in runs], seeds) for t in range(S)]
        row.append(Cell.of([r.metrics.average_incremental_accuracy for r in runs], seeds))
        row.append(Cell.of([r.metrics.performance_drop for r in runs], seeds))
        cells.append(row)
    table = Table(f"{scenario}__sessions", f"{scenario}: accuracy on all seen classes per session (1 = base session)",
                  columns, strategies, cells, [True] * (S + 1) + [False])
    return _finish(table, [list(groups.values())] * len(columns))


def base_novel_table(results: list[RunResult], scenario: str) -> Table:
    """Base-class, novel-class accuracy and their harmonic mean after the last session."""
    groups, strategies, S = _few_shot_groups(results, scenario)
    cells = [[Cell.of([_at(getattr(r.metrics, f), len(r.seen_accuracy) - 1) for r in groups[(scenario, st)]],
                      [r.seed for r in groups[(scenario, st)]])
              for f in ("base_accuracy", "novel_accuracy", "harmonic_mean")] for st in strategies]
    table = Table(f"{scenario}__base_novel", f"{scenario}: base / novel accuracy after session {S}",
                  ["Base ↑", "Novel ↑", "HM ↑"], strategies, cells, [True] * 3)
    return _finish(table, [list(groups.values())] * 3)


def harmonic_mean_table(results: list[RunResult], scenario: str) -> Table:
    """Harmonic mean of base and novel accuracy after each incremental session."""
    groups, strategies, S = _few_shot_groups(results, scenario)
    cells = [[Cell.of([_at(r.metrics.harmonic_mean, t) for r in groups[(scenario, st)]], [r.seed for r in groups[(scenario, st)]])
              for t in range(1, S)]
             for st in strategies]
    table = Table(f"{scenario}__harmonic_mean", f"{scenario}: harmonic mean of base and novel accuracy per session",
                  [str(t + 1) for t in range(1, S)], strategies, cells, [True] * (S - 1))
    return _finish(table, [list(groups.values())] * (S - 1))


def mark_differences(table: Table, baseline: str) -> Table:
    """Mark † the cells that differ from ``baseline``'s cell of the same column: two-sided paired t-test
    over the seeds both have (:mod:`clproto.reports.paired`), p < 0.05. Unchanged without a baseline row."""
    from clproto.reports.paired import ALPHA, pair_by_seed, paired_difference

    if baseline not in table.rows:
        return table
    b = table.rows.index(baseline)
    flags = set()
    for i, row in enumerate(table.cells):
        for j, cell in enumerate(row):
            seeds, x, y = pair_by_seed(dict(cell.by_seed), dict(table.cells[b][j].by_seed))
            if i != b and len(seeds) >= 2 and paired_difference(seeds, x, y).significant:
                flags.add((i, j))
    note = f"{table.note}; †: differs from {baseline} (paired t-test over seeds, two-sided p < {ALPHA})"
    return replace(table, differs=frozenset(flags), note=note)


def all_tables(results: list[RunResult], *, baseline: Optional[str] = None) -> list[Table]:
    """Comparison tables, then per scenario its summary (and, few-shot, the per-session tables); with
    ``baseline``, cells that differ significantly from that strategy's are marked († :func:`mark_differences`)."""
    if baseline is not None and baseline not in {r.strategy for r in results}:
        raise ConfigError("no results of the baseline strategy", where="--baseline", value=baseline,
                          expected="one of " + ", ".join(_order(r.strategy for r in results)))
    tables = [mark_differences(t, baseline) if baseline is not None else t for t in _all_tables(results)]
    return tables


def _all_tables(results: list[RunResult]) -> list[Table]:
    tables = comparison_tables(results)
    for scenario in _order(r.scenario for r in results):
        tables.append(scenario_table(results, scenario))
        runs = [r for r in results if r.scenario == scenario]
        if all(r.metrics.performance_drop is not None for r in runs):
            tables += [session_table(results, scenario), base_novel_table(results, scenario)]
            if max(len(r.seen_accuracy) for r in runs) > 1:
                tables.append(harmonic_mean_table(results, scenario))
    return tables


# --------------------------------------------------------------------------- rendering
def to_markdown(table: Table) -> str:
    best = table.best()
    lines = [f"**{table.title}** ({table.note})" if table.note else f"**{table.title}**", "",
             "| Strategy | " + " | ".join(table.columns) + " |", "|---|" + "---:|" * len(table.columns)]
    for i, (name, row) in enumerate(zip(table.rows, table.cells)):
        texts = [(f"**{c.text()}{table.mark(j, c)}**" if i in best[j] else c.text() + table.mark(j, c)) + table.dagger(i, j)
                 for j, c in enumerate(row)]
        lines.append(f"| {name} | " + " | ".join(texts) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "↑": r"$\uparrow$", "↓": r"$\downarrow$", "±": r"$\pm$", "–": "--",
                  "†": r"$^\dagger$", "−": "$-$"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))


def to_latex(table: Table) -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``)."""
    best = table.best()
    lines = [r"\begin{table}[t]", r"\centering", r"\small",
             rf"\caption{{{latex_escape(table.title)} ({latex_escape(table.note)})}}",
             rf"\label{{tab:{latex_escape(table.key).replace(chr(92) + '_', '-')}}}",
             r"\begin{tabular}{l" + "r" * len(table.columns) + "}", r"\toprule",
             "Strategy & " + " & ".join(latex_escape(c) for c in table.columns) + r" \\", r"\midrule"]
    for i, (name, row) in enumerate(zip(table.rows, table.cells)):
        texts = []
        for j, c in enumerate(row):
            t = c.text(pm=r" $\pm$ ") + table.mark(j, c) if c.mean is not None else "--"
            texts.append((rf"\textbf{{{t}}}" if i in best[j] else t) + table.dagger(i, j, r"$^\dagger$"))
        lines.append(latex_escape(name) + " & " + " & ".join(texts) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


BEST_ATTR = ' class="best"'


def to_html(table: Table) -> str:
    best = table.best()
    head = "".join(f"<th>{html.escape(c)}</th>" for c in table.columns)
    body = []
    for i, (name, row) in enumerate(zip(table.rows, table.cells)):
        tds = "".join(f"<td{BEST_ATTR if i in best[j] else ''}>{html.escape(c.text() + table.mark(j, c) + table.dagger(i, j))}</td>"
                      for j, c in enumerate(row))
        body.append(f"<tr><th scope=\"row\">{html.escape(name)}</th>{tds}</tr>")
    return (f"<table id=\"{html.escape(table.key)}\"><caption>{html.escape(table.title)}"
            f"<span class=\"note\"> ({html.escape(table.note)})</span></caption>"
            f"<thead><tr><th>Strategy</th>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


CSV_FIELDS = ["table", "strategy", "column", "mean", "std", "n", "best"]


def to_csv(tables: list[Table]) -> str:
    """Long format, one line per cell: raw fractions (not percent), ``best`` 1 for the bold cells."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)
    for t in tables:
        best = t.best()
        for i, (name, row) in enumerate(zip(t.rows, t.cells)):
            for j, c in enumerate(row):
                w.writerow([t.key, name, t.columns[j], "" if c.mean is None else repr(c.mean),
                            "" if c.std is None else repr(c.std), c.n, int(i in best[j])])
    return buf.getvalue()
