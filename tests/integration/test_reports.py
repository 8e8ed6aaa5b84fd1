"""Report tables against hand-made results: mean ± std over seeds, best per column bold, TEEN-style session tables."""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import math

import pytest

from clproto.errors import ConfigError
from clproto.evaluation.evaluator import StepEvaluation
from clproto.evaluation.results import RunResult, Timings
from clproto.reports.build import markdown_table, write_report
from clproto.reports.collect import collect, load_results, summary_frame
from clproto.reports.pooling import _split_labels, describe_difference, flatten, identity, pool
from clproto.reports.tables import (all_tables, base_novel_table, comparison_tables, harmonic_mean_table, latex_escape,
                                    scenario_table, session_table, to_csv, to_html, to_latex, to_markdown)


def make_result(scenario: str, strategy: str, seed: int, A: list[list], *, seen: list[float] | None = None,
                base: list | None = None, novel: list | None = None, config: dict | None = None) -> RunResult:
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
                                kind="few-shot" if few else "class-incremental",
                                config={**(config or {}), "seed": seed}, config_hash=f"h{seed}",
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
    # q has one seed where the header says 2: every cell says so; the lowest drop is best
    assert "| q | 80.00 (n=1) | 70.00 (n=1) | **65.00 (n=1)** | 71.67 (n=1) | **15.00 (n=1)** |" in md
    assert t.note == "accuracies in %, mean ± std over 2 seeds; (n=k): a cell over k results only"


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
    assert r"my\_method & 10.00 (n=1) & -- \\" in tex  # one seed where column ci has 2
    assert r"b & 65.00 $\pm$ 7.07 & -- \\" in tex
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
    assert {"ci__accuracy_vs_classes.png", "fs__base_novel.png", "fs__p__accuracy_matrix.png", "forgetting.png",
            "ci__old_new.png"} <= names
    assert "fs__base_novel.png" in names and "ci__base_novel.png" not in names  # base/novel only for few-shot
    assert "fs__old_new.png" not in names  # old/new only for class-incremental (few-shot: base/novel)
    tables_md = paths["tables_md"].read_text()
    assert "fs: accuracy on all seen classes per session" in tables_md and "| PD ↓ |" in tables_md
    assert "ci: accuracy on all seen classes per session" not in tables_md
    assert "| a | **85.00 ± 7.07** |" in markdown_table(summary_frame(loaded))  # the CLI's table still works
    assert not list((tmp_path / "report").glob(".*.tmp"))
    with pytest.raises(ConfigError):
        write_report([], tmp_path / "empty")


# --------------------------------------------------------------------------- what may be pooled (issue 10)
def uniform_results() -> list[RunResult]:
    """Every cell pools its scenario's seeds: "ci" 3 per strategy, few-shot "fs" 2 (the reference runs: 5 or 3)."""
    out = []
    for seed in range(3):
        out.append(make_result("ci", "a", seed, [[1.0, None], [0.5 + 0.125 * seed, 1.0]]))
        out.append(make_result("ci", "b", seed, [[0.75, None], [0.5, 0.25 * seed]]))
    for seed in range(2):
        for name, drop in (("p", 0.25), ("q", 0.125)):
            seen = [0.75, 0.75 - drop / 2, 0.75 - drop * (1 + seed) / 2]
            out.append(make_result("fs", name, seed, [[0.75, None, None], [0.5, 0.5, None], [0.5, 0.25, 0.5]],
                                   seen=seen, base=[0.75, 0.625, 0.5], novel=[None, 0.5, 0.25 * (1 + seed)]))
    return out


# sha256 of every rendering below, as the code before the per-cell counts (commit 9b4230a) wrote them; since
# issue 14 the console table's few-shot block has its own metrics (its class-incremental block is unchanged:
# diffed against the previous code when the hash was updated)
UNIFORM_SHA256 = "7c330a437b50ca278aad3a656a5b05809624cf32a5f9c7005fb9fbb2499a231d"


def test_tables_are_unchanged_when_every_cell_pools_the_header_count():
    results = uniform_results()
    tables = all_tables(results)
    md = "\n".join(to_markdown(t) for t in tables)
    summary = markdown_table(summary_frame(results))
    other = "\n".join(to_latex(t) for t in tables) + to_csv(tables) + "".join(to_html(t) for t in tables)
    assert "(n=" not in md + summary + other
    assert "**Final acc. ↑ by scenario** (accuracies in %, mean ± std over 2–3 seeds)" in md  # per column: 3 or 2
    assert "| b | 37.50 ± 12.50 | – |" in md and "**fs** (2 seeds; few-shot; accuracies in %, mean ± std over seeds;" in summary
    # byte for byte what the README's reference tables were made with
    assert hashlib.sha256((md + "\n" + summary + "\n" + other).encode()).hexdigest() == UNIFORM_SHA256, md + summary


def test_a_missing_seed_is_marked_in_every_format():
    results = [r for r in uniform_results() if not (r.strategy == "b" and r.seed == 2)]  # b: finals 0.25, 0.375
    final = comparison_tables(results)[0]
    assert final.pooled == (3, 2)  # columns ci, fs: the most seeds of any row
    assert "| b | 31.25 ± 8.84 (n=2) | – |" in to_markdown(final) and "| a | **81.25 ± 6.25** | – |" in to_markdown(final)
    assert r"b & 31.25 $\pm$ 8.84 (n=2) & -- \\" in to_latex(final)
    assert "<td>31.25 ± 8.84 (n=2)</td>" in to_html(final)
    row = next(r for r in csv.DictReader(io.StringIO(to_csv([final]))) if r["strategy"] == "b" and r["column"] == "ci")
    assert row["n"] == "2"
    assert "| b | 31.25 ± 8.84 (n=2) |" in markdown_table(summary_frame(results))
    assert "not the same seeds" not in final.note  # b's seeds are a's minus one: the mark says it


def test_rows_over_different_seeds_say_so():
    results = [r for r in uniform_results() if r.scenario == "ci"]
    for r in results:
        if r.strategy == "b":
            r.seed += 3  # b: seeds 3, 4, 5; a: 0, 1, 2
    t = scenario_table(results, "ci")
    assert t.note == "accuracies in %, mean ± std over 3 seeds; not the same seeds in every row" and not t.marked()


CFG = {"scenario": {"name": "ci", "train_per_class": 0}, "strategy": {"name": "a", "backbone": "pixels",
                                                                      "params": {"alpha": 0.5, "metric": "euclidean"}}}


def _with(config: dict, **changes) -> dict:
    """``_with(CFG, **{"strategy.params.alpha": 0.25})``: a copy with dotted fields changed."""
    out = copy.deepcopy(config)
    for path, value in changes.items():
        *parents, last = path.split(".")
        node = out
        for p in parents:
            node = node[p]
        node[last] = value
    return out


def _runs(config: dict, seeds=(0, 1), strategy: str = "a", base: float = 0.5) -> list[RunResult]:
    return [make_result("ci", strategy, s, [[1.0, None], [base + 0.1 * s, 1.0]], config=config) for s in seeds]


def test_identity_is_the_configuration_without_the_seed():
    a0, a1 = _runs(CFG)
    assert a0.config["seed"] == 0 and identity(a0) == identity(a1)
    assert identity(_runs(_with(CFG, **{"strategy.params.alpha": 0.25}))[0]) != identity(a0)
    assert flatten(CFG)["strategy.params.alpha"] == 0.5 and "strategy.params" not in flatten(CFG)
    assert describe_difference(CFG, _with(CFG, **{"strategy.params.alpha": 0.25, "scenario.train_per_class": 20})) \
        == "scenario.train_per_class: 0 vs 20, strategy.params.alpha: 0.5 vs 0.25"
    other = copy.deepcopy(CFG)
    del other["strategy"]["backbone"]
    assert describe_difference(CFG, other) == 'strategy.backbone: "pixels" vs (absent)'


def test_two_configurations_under_one_name_are_an_error_naming_folders_and_fields(tmp_path):
    results = _runs(CFG) + _runs(_with(CFG, **{"strategy.params.alpha": 0.25}))
    paths = [tmp_path / d / f"seed{r.seed}" / "results.json" for d, r in zip(["old", "old", "new", "new"], results)]
    with pytest.raises(ConfigError) as err:
        pool(results, paths)
    text = str(err.value)
    assert str(tmp_path / "old" / "seed0") in text and str(tmp_path / "new" / "seed0") in text
    assert "strategy.params.alpha: 0.5 vs 0.25" in text and "--split-configs" in text
    with pytest.raises(ConfigError, match="alpha"):  # the report writer refuses them too
        write_report(results, tmp_path / "report")
    assert not (tmp_path / "report").exists()


def test_split_configurations_become_labelled_rows():
    results = _runs(CFG) + _runs(_with(CFG, **{"strategy.params.alpha": 0.25}), base=0.2)
    pooled = pool(results, split_configs=True)
    assert sorted({r.strategy for r in pooled.results}) == ["a@alpha=0.25", "a@alpha=0.5"]
    assert pooled.notes == ["ci / a: 2 configurations, shown as rows a@alpha=0.5, a@alpha=0.25"]
    final = comparison_tables(pooled.results)[0]
    assert _cell(final, "a@alpha=0.5", "ci").mean == pytest.approx(0.775)  # (0.75 + 0.8) / 2: never mixed
    assert _cell(final, "a@alpha=0.25", "ci").mean == pytest.approx(0.625)  # (0.6 + 0.65) / 2
    assert all(r.config["strategy"]["name"] == "a" for r in pooled.results)  # the recorded definition is untouched


def test_split_labels_stay_distinct_and_short():
    ids = ["1111111122", "2222222233"]
    both = [CFG, _with(CFG, **{"strategy.params.alpha": 0.25, "scenario.train_per_class": 20})]
    assert _split_labels("a", both, ids) == ["a@train_per_class=0,alpha=0.5", "a@train_per_class=20,alpha=0.25"]
    lr = [_with(CFG, **{"strategy.lr": 1, "strategy.params.lr": 2}), _with(CFG, **{"strategy.lr": 3, "strategy.params.lr": 4})]
    assert _split_labels("a", lr, ids) == ["a@strategy.lr=1,strategy.params.lr=2", "a@strategy.lr=3,strategy.params.lr=4"]
    assert _split_labels("t@lr=0.1", [CFG, _with(CFG, **{"strategy.params.metric": "cosine"})], ids) \
        == ["t@lr=0.1,metric=euclidean", "t@lr=0.1,metric=cosine"]  # a sweep label gets more fields
    long = [CFG, _with(CFG, **{"strategy.params.alpha": list(range(30))})]
    assert _split_labels("a", long, ids) == ["a#11111111", "a#22222222"]


def test_a_split_label_that_is_another_rows_name_is_an_error():
    real = _runs(_with(CFG, **{"strategy.name": "a@alpha=0.25"}), strategy="a@alpha=0.25")
    results = _runs(CFG) + _runs(_with(CFG, **{"strategy.params.alpha": 0.25})) + real
    with pytest.raises(ConfigError, match="a@alpha=0.25"):
        pool(results, split_configs=True)


def test_a_duplicate_is_counted_once_and_reported(tmp_path):
    runs = _runs(CFG, seeds=(0, 1, 2))
    for d in ("runs", "copy"):
        for r in runs:
            r.save(tmp_path / d / "ci" / "a" / f"seed{r.seed}" / "results.json")
    changed = make_result("ci", "a", 1, [[1.0, None], [0.0, 1.0]], config=CFG)
    changed.save(tmp_path / "copy" / "ci" / "a" / "seed1" / "results.json")
    pooled = collect([tmp_path / "runs", tmp_path / "copy"])
    assert sorted(r.seed for r in pooled.results) == [0, 1, 2]
    assert len(pooled.notes) == 3 and all("counted once" in n and "copy" in n and "runs" in n for n in pooled.notes)
    assert "their numbers differ (final acc. 80.00 vs 50.00); the first is used" in pooled.notes[1]
    final = comparison_tables(pooled.results)[0]
    assert final.note == "accuracies in %, mean ± std over 3 seeds" and _cell(final, "a", "ci").n == 3
    again = collect([tmp_path / "runs", tmp_path / "runs"])
    assert len(again.results) == 3 and "(read twice)" in again.notes[0]
    with pytest.raises(ConfigError, match="seed 0"):  # the writer takes only pooled results
        write_report(runs + runs[:1], tmp_path / "report")


def test_a_results_file_that_is_not_json_is_a_named_error(tmp_path):
    bad = tmp_path / "runs" / "x" / "results.json"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\xff\xfe not json")
    with pytest.raises(ConfigError, match="not a clproto results file"):
        collect([tmp_path / "runs"])
