"""`clproto compare`: seed-paired differences, t-intervals and paired tests against SciPy called here directly,
on hand-written results in class-incremental, few-shot and mixed folders."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from scipy import stats

from clproto.cli import main
from clproto.errors import ConfigError
from clproto.reports.compare import compare, to_latex, to_markdown
from clproto.reports.paired import paired_difference
from test_reports import make_result

# final (seen-class) accuracy per seed; "a" is the baseline
FINAL = {"a": [0.50, 0.55, 0.60, 0.52, 0.58, 0.61],
         "b": [0.56, 0.58, 0.69, 0.55, 0.66, 0.65],  # better on every seed
         "c": [0.49, 0.57, 0.58, 0.53, 0.57, None]}  # about the same; seed 5 missing


def _ci_runs():
    runs = []
    for strategy, finals in FINAL.items():
        for seed, f in enumerate(finals):
            if f is not None:  # two experiences; forgetting = 0.9 - A[1][0]
                runs.append(make_result("ci", strategy, seed, [[0.9, None], [f - 0.1, f + 0.1]], seen=[0.9, f]))
    return runs


def _fs_runs():
    runs = []
    for seed in range(3):
        for strategy, novel in (("p", [None, 0.5, 0.40 + 0.01 * seed]), ("q", [None, 0.6, 0.45 + 0.03 * seed])):
            runs.append(make_result("fs", strategy, seed, [[0.9, None, None], [0.8, 0.5, None], [0.7, 0.5, 0.4]],
                                    seen=[0.9, 0.8, 0.7 - 0.01 * seed], base=[0.9, 0.85, 0.8], novel=novel))
    return runs


def _write(runs, root):
    for r in runs:
        r.save(root / r.scenario / r.strategy / f"seed{r.seed}" / "results.json")


def _read_csv(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _expected(x, b, test="t"):
    """Mean difference, 95 % t-interval and p-value computed here with SciPy directly."""
    d = np.asarray(x) - np.asarray(b)
    lo, hi = stats.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=stats.sem(d))
    p = stats.ttest_rel(x, b).pvalue if test == "t" else stats.wilcoxon(x, b).pvalue
    return d.mean(), lo, hi, p


def test_class_incremental_folder_uses_class_incremental_metrics_and_matches_scipy(tmp_path, capsys):
    _write(_ci_runs(), tmp_path / "runs")
    assert main(["compare", str(tmp_path / "runs"), "--baseline", "a", "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "**ci: difference to a" in out and "| b | Final acc. ↑ | 6 |" in out  # stdout is the Markdown table
    rows = _read_csv(tmp_path / "cmp" / "compare.csv")
    assert {r["metric"] for r in rows} == {"final_accuracy", "average_incremental_accuracy", "forgetting"}
    final = {r["strategy"]: r for r in rows if r["metric"] == "final_accuracy"}

    mean, lo, hi, p = _expected(FINAL["b"], FINAL["a"])
    b = final["b"]
    assert (int(b["n"]), b["seeds"]) == (6, "0 1 2 3 4 5")
    assert float(b["mean_difference"]) == pytest.approx(mean) and mean == pytest.approx(0.055)  # (6+3+9+3+8+4)/6 points
    assert (float(b["ci_low"]), float(b["ci_high"])) == pytest.approx((lo, hi))
    assert float(b["p_value"]) == pytest.approx(p) and p < 0.05 and b["significant"] == "1"

    c = final["c"]  # paired over the five seeds both have
    mean, lo, hi, p = _expected(FINAL["c"][:5], FINAL["a"][:5])
    assert (int(c["n"]), c["seeds"]) == (5, "0 1 2 3 4")
    assert float(c["p_value"]) == pytest.approx(p) and p > 0.05 and c["significant"] == "0"
    assert (float(c["ci_low"]), float(c["ci_high"])) == pytest.approx((lo, hi))

    forgetting = {r["strategy"]: r for r in rows if r["metric"] == "forgetting"}  # 0.9 - (f - 0.1): minus final diff
    assert float(forgetting["b"]["mean_difference"]) == pytest.approx(-0.055)
    md = (tmp_path / "cmp" / "compare.md").read_text()
    assert md.strip() == out.split("wrote")[0].strip()
    assert "0.055" not in md and "+5.50" in md and "†" in md  # points, significance marked
    tex = (tmp_path / "cmp" / "compare.tex").read_text()
    assert r"\begin{tabular}" in tex and r"$^\dagger$" in tex and "−" not in tex


def test_few_shot_folder_uses_fscil_metrics_at_the_last_session(tmp_path, capsys):
    _write(_fs_runs(), tmp_path / "runs")
    assert main(["compare", str(tmp_path / "runs"), "--baseline", "p", "--out", str(tmp_path / "cmp")]) == 0
    rows = {r["metric"]: r for r in _read_csv(tmp_path / "cmp" / "compare.csv")}
    assert set(rows) == {"final_accuracy", "average_incremental_accuracy", "performance_drop", "novel_accuracy",
                         "harmonic_mean"}
    q_novel, p_novel = [0.45, 0.48, 0.51], [0.40, 0.41, 0.42]  # last session
    mean, lo, hi, p = _expected(q_novel, p_novel)
    assert float(rows["novel_accuracy"]["mean_difference"]) == pytest.approx(mean)
    assert float(rows["novel_accuracy"]["p_value"]) == pytest.approx(p)
    hm = lambda b, n: 2 * b * n / (b + n)  # noqa: E731
    mean, *_ = _expected([hm(0.8, n) for n in q_novel], [hm(0.8, n) for n in p_novel])
    assert float(rows["harmonic_mean"]["mean_difference"]) == pytest.approx(mean)
    # identical final accuracies on every seed: difference 0, interval [0, 0], no t-test (zero variance)
    final = rows["final_accuracy"]
    assert float(final["mean_difference"]) == 0.0 and float(final["ci_low"]) == float(final["ci_high"]) == 0.0
    assert final["p_value"] == "" and final["significant"] == "0"


def test_mixed_folder_and_a_metric_one_kind_lacks(tmp_path, capsys):
    runs = _ci_runs() + _fs_runs()
    for r in runs:  # one baseline name in both scenarios
        if r.strategy == "p":
            r.strategy = "a"
    _write(runs, tmp_path / "runs")
    assert main(["compare", str(tmp_path / "runs"), "--baseline", "a"]) == 0
    out, err = capsys.readouterr()
    assert "**ci:" in out and "**fs:" in out and "Novel acc." in out
    assert main(["compare", str(tmp_path / "runs"), "--baseline", "a", "--metrics", "harmonic_mean"]) == 0
    out, err = capsys.readouterr()
    assert "**ci:" not in out and "HM (last session)" in out
    assert "ci: harmonic_mean is not defined for its class-incremental runs" in err


def test_wilcoxon_option_matches_scipy_and_warns_below_six_seeds():
    comp = compare(_ci_runs(), baseline="a", metrics=["final_accuracy"], test="wilcoxon")
    rows = {r.strategy: r.diff for r in comp.rows}
    assert rows["b"].p_value == pytest.approx(stats.wilcoxon(FINAL["b"], FINAL["a"]).pvalue)
    assert rows["b"].p_value == pytest.approx(2 / 2 ** 6) and rows["b"].significant  # exact: all six differences > 0
    # c - a in points: -1 +2 -2 +1 -1, tied magnitudes (float noise in 0.49 - 0.50 must not break the ties)
    assert rows["c"].p_value == pytest.approx(stats.wilcoxon([-1, 2, -2, 1, -1]).pvalue)
    assert any("fewer than 6 paired seeds" in n for n in comp.notes)  # c has 5
    assert "Wilcoxon signed-rank test" in to_markdown(comp)


def test_one_pair_has_a_difference_but_no_interval_or_test():
    d = paired_difference([3], [0.7], [0.5])
    assert d.mean == pytest.approx(0.2) and d.ci_low is None and d.p_value is None and not d.significant
    comp = compare([make_result("ci", s, 3, [[0.5]]) for s in ("a", "b")], baseline="a")
    assert "| b | Final acc. ↑ | 1 | +0.00 | – | – |" in to_markdown(comp)
    assert "\\\\" in to_latex(comp)


def test_bad_input_is_a_named_error(tmp_path, capsys):
    _write(_ci_runs(), tmp_path / "runs")
    assert main(["compare", str(tmp_path / "runs"), "--baseline", "zzz"]) == 2
    assert "--baseline" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "runs"), "--baseline", "a", "--metrics", "nope"]) == 2
    assert "--metrics" in capsys.readouterr().err
    other = make_result("ci", "b", 0, [[0.5, None], [0.5, 0.5]], config={"strategy": {"alpha": 2}})
    other.save(tmp_path / "runs2" / "ci" / "b" / "seed0" / "results.json")
    assert main(["compare", str(tmp_path / "runs"), str(tmp_path / "runs2"), "--baseline", "a"]) == 2
    assert "different configurations" in capsys.readouterr().err
    with pytest.raises(ConfigError):
        compare(_ci_runs(), baseline="a", test="sign")


# --------------------------------------------------------------------------- clproto report --baseline
def test_report_marks_cells_that_differ_from_the_baseline(tmp_path, capsys):
    from clproto.reports.tables import all_tables, to_html, to_latex as table_latex, to_markdown as table_md

    tables = {t.key: t for t in all_tables(_ci_runs(), baseline="a")}
    final = tables["final_accuracy"]
    flagged = {(final.rows[i], final.columns[j]) for i, j in final.differs}
    assert flagged == {("b", "ci")}  # b: p < 0.05 (see above); c: p > 0.05; a is the baseline
    assert "| b | **61.50 ± 5.89** † |" in table_md(final) and "†: differs from a" in final.note
    assert r"$^\dagger$" in table_latex(final) and "†</td>" in to_html(final)
    summary = tables["ci__summary"]
    # every headline metric of b moves with its final accuracy here (A[1] = [f - 0.1, f + 0.1]): all marked, only b
    assert summary.differs == {(summary.rows.index("b"), j) for j in range(len(summary.columns))}
    assert all(not t.differs for t in all_tables(_ci_runs()))  # no baseline, no marks
    with pytest.raises(ConfigError, match="--baseline"):
        all_tables(_ci_runs(), baseline="zzz")

    _write(_ci_runs(), tmp_path / "runs")
    assert main(["report", str(tmp_path / "runs"), "--baseline", "a", "--out", str(tmp_path / "rep")]) == 0
    assert "†: differs from a" in (tmp_path / "rep" / "tables.md").read_text()
