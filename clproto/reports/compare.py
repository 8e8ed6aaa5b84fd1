"""``clproto compare``: every strategy against a baseline, seed-paired, per scenario and metric.

The results are pooled as for a report (:func:`clproto.reports.collect.collect`: one configuration
per (scenario, strategy) row, each seed once), so a pair is two runs of one scenario with the same
seed. For each scenario holding the baseline, each metric and each other strategy: the mean paired
difference (strategy − baseline, in points), its 95 % t-interval and a two-sided paired test
(:mod:`clproto.reports.paired`). Per-session metrics of few-shot runs (base / novel accuracy,
harmonic mean) are compared at the last session.

Default metrics follow the scenario's kind: class-incremental scenarios the headline
class-incremental metrics, few-shot ones the FSCIL metrics (:data:`DEFAULT_METRICS`). A metric named
with ``--metrics`` that a scenario's runs do not define (e.g. ``harmonic_mean`` for a
class-incremental scenario) is left out of that scenario with a note.
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from clproto.errors import ConfigError
from clproto.evaluation.results import RunResult
from clproto.reports.paired import ALPHA, TEST_NAMES, TESTS, WILCOXON_MIN_N, PairedDifference, pair_by_seed, paired_difference
from clproto.storage import write_text_atomic

# metric -> (title, higher is better)
METRICS = {
    "final_accuracy": ("Final acc.", True),
    "average_accuracy": ("Avg. acc. (ACC)", True),
    "average_incremental_accuracy": ("Avg. inc. acc.", True),
    "forgetting": ("Forgetting", False),
    "forgetting_from_first": ("Forgetting (from first)", False),
    "bwt": ("BWT", True),
    "task_il_final_accuracy": ("Task-IL acc.", True),
    "task_il_forgetting": ("Task-IL forgetting", False),
    "base_accuracy": ("Base acc. (last session)", True),
    "novel_accuracy": ("Novel acc. (last session)", True),
    "harmonic_mean": ("HM (last session)", True),
    "performance_drop": ("PD", False),
    "final_top5_accuracy": ("Top-5 acc.", True),
    "forward_transfer": ("FWT", True),
}
DEFAULT_METRICS = {
    "class-incremental": ("final_accuracy", "average_incremental_accuracy", "forgetting"),
    "few-shot": ("final_accuracy", "average_incremental_accuracy", "performance_drop", "novel_accuracy",
                 "harmonic_mean"),
}


@dataclass(frozen=True)
class Row:
    scenario: str
    metric: str
    strategy: str
    baseline: str
    diff: PairedDifference


@dataclass(frozen=True)
class Comparison:
    baseline: str
    test: str  # "t" or "wilcoxon"
    rows: list  # Row, ordered by scenario, metric (as requested), strategy
    notes: list  # what was left out, and why


def metric_value(result: RunResult, metric: str) -> Optional[float]:
    """The number compared for ``metric``: the headline value, or the last session's for per-session lists."""
    value = getattr(result.metrics, metric)
    if isinstance(value, list):
        return value[-1] if value else None
    return value


def _check_metrics(metrics: Optional[Sequence[str]]) -> None:
    for m in metrics or ():
        if m not in METRICS:
            raise ConfigError("unknown metric", where="--metrics", value=m, expected="one of " + ", ".join(METRICS))


def compare(results: list[RunResult], *, baseline: str, metrics: Optional[Sequence[str]] = None,
            test: str = "t") -> Comparison:
    """Every strategy against ``baseline`` in every scenario that has it; ``results`` pooled (one config per row)."""
    if test not in TESTS:
        raise ConfigError("unknown paired test", where="--test", value=test, expected=" or ".join(TESTS))
    _check_metrics(metrics)
    by_row: dict[tuple[str, str], dict[int, RunResult]] = {}
    for r in results:
        by_row.setdefault((r.scenario, r.strategy), {})[r.seed] = r
    scenarios = sorted({s for s, _ in by_row})
    if not any((s, baseline) in by_row for s in scenarios):
        raise ConfigError("no results of the baseline strategy", where="--baseline", value=baseline,
                          expected="one of " + ", ".join(sorted({t for _, t in by_row})))
    rows: list[Row] = []
    notes: list[str] = []
    for scenario in scenarios:
        if (scenario, baseline) not in by_row:
            notes.append(f"{scenario}: no {baseline} results; scenario left out")
            continue
        base = by_row[(scenario, baseline)]
        others = sorted(t for s, t in by_row if s == scenario and t != baseline)
        if not others:
            notes.append(f"{scenario}: only {baseline}; nothing to compare")
            continue
        kind = next(iter(base.values())).kind
        for metric in metrics or DEFAULT_METRICS.get(kind, DEFAULT_METRICS["class-incremental"]):
            runs = [r for s, t in by_row if s == scenario for r in by_row[(s, t)].values()]
            if all(metric_value(r, metric) is None for r in runs):
                notes.append(f"{scenario}: {metric} is not defined for its {kind} runs; left out")
                continue
            base_values = {seed: metric_value(r, metric) for seed, r in base.items()}
            for strategy in others:
                values = {seed: metric_value(r, metric) for seed, r in by_row[(scenario, strategy)].items()}
                seeds, x, b = pair_by_seed(values, base_values)
                if not seeds:
                    notes.append(f"{scenario} / {strategy}: no seed with a {metric} value in common with {baseline}")
                    continue
                rows.append(Row(scenario, metric, strategy, baseline, paired_difference(seeds, x, b, test=test)))
    if test == "wilcoxon" and any(r.diff.n < WILCOXON_MIN_N for r in rows):
        notes.append(f"fewer than {WILCOXON_MIN_N} paired seeds in some rows: there the two-sided Wilcoxon test "
                     f"cannot reach p < {ALPHA} (its smallest p-value is 2 / 2^n)")
    return Comparison(baseline, test, rows, notes)


# --------------------------------------------------------------------------- rendering
def _pts(v: Optional[float], sign: bool = True) -> str:
    return "–" if v is None else (f"{100 * v:+.2f}" if sign else f"{100 * v:.2f}")


def _p(d: PairedDifference) -> str:
    if d.p_value is None:
        return "–"
    text = f"{d.p_value:.3f}" if d.p_value >= 0.001 else f"{d.p_value:.1e}"
    return text + (" †" if d.significant else "")


def _ci(d: PairedDifference, sep: str = ", ") -> str:
    return "–" if d.ci_low is None else f"[{_pts(d.ci_low)}{sep}{_pts(d.ci_high)}]"


def _title(metric: str) -> str:
    title, higher = METRICS[metric]
    return f"{title} {'↑' if higher else '↓'}"


def caption(comp: Comparison, scenario: str) -> str:
    return (f"{scenario}: difference to {comp.baseline} (strategy − baseline, points; paired by seed; "
            f"95 % CI: t-interval over the differences; p: two-sided {TEST_NAMES[comp.test]}; † p < {ALPHA})")


def _scenarios(comp: Comparison) -> list[str]:
    return list(dict.fromkeys(r.scenario for r in comp.rows))


def to_markdown(comp: Comparison) -> str:
    out = []
    for scenario in _scenarios(comp):
        out += [f"**{caption(comp, scenario)}**", "", "| Strategy | Metric | n | Δ | 95 % CI | p |",
                "|---|---|---:|---:|---:|---:|"]
        for r in comp.rows:
            if r.scenario == scenario:
                d = r.diff
                out.append(f"| {r.strategy} | {_title(r.metric)} | {d.n} | {_pts(d.mean)} | {_ci(d)} | {_p(d)} |")
        out.append("")
    if not out:
        out = ["(nothing to compare)", ""]
    return "\n".join(out)


CSV_FIELDS = ["scenario", "metric", "strategy", "baseline", "n", "seeds", "mean_difference", "ci_low", "ci_high",
              "test", "statistic", "p_value", "significant"]


def to_csv(comp: Comparison) -> str:
    """One line per (scenario, metric, strategy); raw fractions (not points), empty where undefined."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_FIELDS)

    def num(v):
        return "" if v is None else repr(v)

    for r in comp.rows:
        d = r.diff
        w.writerow([r.scenario, r.metric, r.strategy, r.baseline, d.n, " ".join(map(str, d.seeds)), num(d.mean),
                    num(d.ci_low), num(d.ci_high), d.test, num(d.statistic), num(d.p_value), int(d.significant)])
    return buf.getvalue()


def _tex(text: str) -> str:
    from clproto.reports.tables import latex_escape

    return latex_escape(text)  # maps † and − too


def to_latex(comp: Comparison) -> str:
    """One booktabs table per scenario (needs ``\\usepackage{booktabs}``)."""
    out = ["% generated by `clproto compare`; needs \\usepackage{booktabs}", ""]
    for scenario in _scenarios(comp):
        out += [r"\begin{table}[t]", r"\centering", r"\small", rf"\caption{{{_tex(caption(comp, scenario))}}}",
                r"\begin{tabular}{llrrrr}", r"\toprule",
                r"Strategy & Metric & $n$ & $\Delta$ & 95\,\% CI & $p$ \\", r"\midrule"]
        for r in comp.rows:
            if r.scenario == scenario:
                d = r.diff
                cells = [r.strategy, _title(r.metric), str(d.n), _pts(d.mean), _ci(d), _p(d)]
                out.append(" & ".join(_tex(c) for c in cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(out)


def write_comparison(comp: Comparison, out: str | os.PathLike) -> dict[str, Path]:
    """``compare.md``, ``compare.csv`` and ``compare.tex`` in ``out`` (each written atomically)."""
    out = Path(out)
    paths = {"md": out / "compare.md", "csv": out / "compare.csv", "tex": out / "compare.tex"}
    write_text_atomic(paths["md"], to_markdown(comp))
    write_text_atomic(paths["csv"], to_csv(comp))
    write_text_atomic(paths["tex"], to_latex(comp))
    return paths
