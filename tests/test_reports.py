"""Report tables against hand-made results: mean ± std over seeds, best per column bold, TEEN-style session tables."""

from __future__ import annotations

import csv
import io
import math

import pytest

from clproto.errors import ConfigError
from clproto.evaluation.evaluator import StepEvaluation
from clproto.evaluation.results import RunResult, Timings
from clproto.reports.build import markdown_table, write_report
from clproto.reports.collect import load_results, summary_frame
from clproto.reports.tables import (base_novel_table, comparison_tables, harmonic_mean_table, latex_escape,
                                    scenario_table, session_table, to_csv, to_latex, to_markdown)


def make_result(scenario: str, strategy: str, seed: int, A: list[list], *, seen: list[float] | None = None,
                base: list | None = None, novel: list | None = None) -> RunResult:
    """A RunResult from a hand-written accuracy matrix (lower triangle) and, for few-shot, base/novel accuracies."""
    T = len(A)
    steps = []
    for t in range(T):
        row = [A[t][j] if j <= t else None for j in range(T)]
        steps.append(StepEvaluation(accuracy_row=row, task_accuracy_row=row,
                                    seen_accuracy=seen[t] if seen else sum(row[: t + 1]) / (t + 1),
                                    per_class_accuracy=[], base_accuracy=base[t] if base else None,
                                    novel_accuracy=novel[t] if novel else None))
    few = base is not None
    return RunResult.from_steps(steps, few_shot=few, scenario=scenario, strategy=strategy, seed=seed,
                                kind="few-shot" if few else "class-incremental", config={}, config_hash=f"h{seed}",
                                versions={"clproto": "test"}, class_order=[], experience_classes=[[0]] * T,
                                test_sizes=[1] * T, timings=Timings())


def class_incremental_results() -> list[RunResult]:
    """Two strategies on scenario "ci" (two seeds each); strategy "a" alone on scenario "other" (one seed)."""
    return [
        # a: final seen accuracy (mean of last row) 0.80 and 0.90; forgetting (1.0-0.6)=0.4 and (1.0-0.8)=0.2
        make_result("ci", "a", 0, [[1.0, None], [0.6, 1.0]]),
        make_result("ci", "a", 1, [[1.0, None], [0.8, 1.0]]),
        # b: final 0.60 and 0.70; forgetting 0.2 and 0.0
        make_result("ci", "b", 0, [[0.6, None], [0.4, 0.8]]),
        make_result("ci", "b", 1, [[0.6, None], [0.6, 0.8]]),
        make_result("other", "a", 0, [[0.5, None], [0.5, 0.5]]),
    ]


def few_shot_results() -> list[RunResult]:
    """Three sessions; session accuracies and base/novel given directly (as the evaluator would measure them)."""
    return [
        make_result("fs", "p", 0, [[0.9, None, None], [0.8, 0.5, None], [0.7, 0.5, 0.4]], seen=[0.9, 0.8, 0.7],
                    base=[0.9, 0.85, 0.8], novel=[None, 0.5, 0.4]),
        make_result("fs", "p", 1, [[0.9, None, None], [0.8, 0.5, None], [0.7, 0.5, 0.4]], seen=[0.9, 0.7, 0.5],
                    base=[0.9, 0.85, 0.6], novel=[None, 0.5, 0.4]),
        make_result("fs", "q", 0, [[0.8, None, None], [0.7, 0.6, None], [0.6, 0.6, 0.6]], seen=[0.8, 0.7, 0.65],
                    base=[0.8, 0.7, 0.6], novel=[None, 0.6, 0.6]),
    ]


def _cell(table, row: str, column: str):
    return table.cells[table.rows.index(row)][table.columns.index(column)]


def test_comparison_table_mean_std_and_bold_best():
    tables = {t.key: t for t in comparison_tables(class_incremental_results())}
    final = tables["final_accuracy"]
    assert final.rows == ["a", "b"] and final.columns == ["ci", "other"]
    a = _cell(final, "a", "ci")
    assert a.n == 2 and a.mean == pytest.approx(0.85) and a.std == pytest.approx(math.sqrt(0.005))  # ddof=1
    assert _cell(final, "b", "ci").mean == pytest.approx(0.65)
    assert _cell(final, "a", "other").text() == "50.00"  # one seed: no ±
    assert _cell(final, "b", "other").text() == "–"  # never run
    md = to_markdown(final)
    assert "| a | **85.00 ± 7.07** | 50.00 |" in md  # a single value in a column is not bolded
    assert "| b | 65.00 ± 7.07 | – |" in md
    forgetting = tables["forgetting"]  # lower is better: b (0.1) beats a (0.3)
    assert "| b | **10.00 ± 14.14** | – |" in to_markdown(forgetting)
    assert "| a | 30.00 ± 14.14 | 0.00 |" in to_markdown(forgetting)


def test_ties_are_all_bold_and_scenario_table_has_metric_columns():
    results = [make_result("ci", s, 0, [[1.0, None], [0.5, 0.5]]) for s in ("x", "y")]
    md = to_markdown(comparison_tables(results)[0])
    assert "| x | **50.00** |" in md and "| y | **50.00** |" in md
    t = scenario_table(class_incremental_results(), "ci")
    assert t.columns[:3] == ["Final acc. ↑", "Avg. inc. acc. ↑", "Forgetting ↓"]
    assert _cell(t, "b", "BWT ↑").mean == pytest.approx(-0.1)


def test_session_table_in_the_style_of_teen_table_3():
    t = session_table(few_shot_results(), "fs")
    assert t.columns == ["1", "2", "3", "Avg ↑", "PD ↓"]
    p2 = _cell(t, "p", "2")
    assert p2.mean == pytest.approx(0.75) and p2.std == pytest.approx(math.sqrt(0.005))
    assert _cell(t, "p", "Avg ↑").mean == pytest.approx(0.75)  # means of (0.9+0.8+0.7)/3, (0.9+0.7+0.5)/3
    assert _cell(t, "p", "PD ↓").mean == pytest.approx(0.3)  # (0.2 + 0.4) / 2
    assert _cell(t, "q", "PD ↓").mean == pytest.approx(0.15)
    md = to_markdown(t)
    assert "| p | **90.00 ± 0.00** | **75.00 ± 7.07** | 60.00 ± 14.14 | **75.00 ± 7.07** | 30.00 ± 14.14 |" in md
    assert "| q | 80.00 | 70.00 | **65.00** | 71.67 | **15.00** |" in md  # the lowest drop is best


def test_base_novel_and_harmonic_mean_tables():
    t = base_novel_table(few_shot_results(), "fs")
    assert t.columns == ["Base ↑", "Novel ↑", "HM ↑"]
    assert _cell(t, "p", "Base ↑").mean == pytest.approx(0.7)
    hm_p = [2 * 0.8 * 0.4 / 1.2, 2 * 0.6 * 0.4 / 1.0]
    assert _cell(t, "p", "HM ↑").mean == pytest.approx(sum(hm_p) / 2)
    assert _cell(t, "q", "HM ↑").mean == pytest.approx(0.6)
    h = harmonic_mean_table(few_shot_results(), "fs")
    assert h.columns == ["2", "3"]  # no harmonic mean in the base session
    assert _cell(h, "q", "2").mean == pytest.approx(2 * 0.7 * 0.6 / 1.3)


def test_latex_and_csv_renderings():
    t = comparison_tables(class_incremental_results() + [make_result("ci", "my_method", 0, [[1.0, None], [0.0, 0.2]])])[0]
    tex = to_latex(t)
    assert r"\toprule" in tex and r"\bottomrule" in tex and r"\begin{tabular}{lrr}" in tex
    assert r"a & \textbf{85.00 $\pm$ 7.07} & 50.00 \\" in tex
    assert r"my\_method & 10.00 & -- \\" in tex
    assert latex_escape("50% & a_b") == r"50\% \& a\_b"
    rows = list(csv.DictReader(io.StringIO(to_csv([t]))))
    assert len(rows) == 3 * 2
    a = next(r for r in rows if r["strategy"] == "a" and r["column"] == "ci")
    assert float(a["mean"]) == pytest.approx(0.85) and a["n"] == "2" and a["best"] == "1"
    assert next(r for r in rows if r["strategy"] == "b" and r["column"] == "other")["mean"] == ""


def test_write_report_writes_every_format_and_reloads(tmp_path):
    results = class_incremental_results() + few_shot_results()
    for r in results:
        r.save(tmp_path / "runs" / r.scenario / r.strategy / f"seed{r.seed}" / "results.json")
    loaded = load_results([tmp_path / "runs"])
    paths = write_report(loaded, tmp_path / "report")
    for key in ("markdown", "csv", "tables_md", "tables_tex", "tables_csv", "html"):
        assert paths[key].exists() and paths[key].stat().st_size > 0
    names = {p.name for p in (tmp_path / "report").glob("*.png")}
    assert {"ci__seen_accuracy.png", "fs__base_novel.png", "fs__p__accuracy_matrix.png", "forgetting.png"} <= names
    assert "fs__base_novel.png" in names and "ci__base_novel.png" not in names  # base/novel only for few-shot
    tables_md = paths["tables_md"].read_text()
    assert "fs: accuracy on all seen classes per session" in tables_md and "| PD ↓ |" in tables_md
    assert "ci: accuracy on all seen classes per session" not in tables_md
    assert "| a | **85.00 ± 7.07** |" in markdown_table(summary_frame(loaded))  # the CLI's table still works
    assert not list((tmp_path / "report").glob(".*.tmp"))
    with pytest.raises(ConfigError):
        write_report([], tmp_path / "empty")
