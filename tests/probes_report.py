"""Trust probes of ``clproto report`` (issue 10, items 1 and 2): a table never pools results of different
configurations under one label, never counts one result twice, says how many results each cell pooled,
and report.html shows the resolved parameters behind every label.

The results folders are written directly as ``results.json`` files (a two-experience run from a hand-made
accuracy matrix, with a resolved configuration shaped like :func:`clproto.runner.resolved_config`): fast,
and every number is known.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from clproto.config import config_hash
from clproto.evaluation.evaluator import StepEvaluation
from clproto.evaluation.results import RunResult, Timings
from probes import Probe

SCENARIO = {"name": "split-x", "dataset": "digits", "kind": "class-incremental", "class_order": "random",
            "increment": 1, "train_per_class": 0, "description": "probe scenario"}
NMC = {"name": "nmc", "implementation": "nmc", "backbone": "pixels", "params": {"metric": "euclidean"},
       "description": "probe strategy"}


def write_run(root: Path, seed: int, final: float, *, scenario: dict = SCENARIO, strategy: dict = NMC) -> Path:
    """``root/<scenario>/<strategy>/seed<seed>/results.json`` whose final accuracy is ``final`` (two experiences)."""
    rows = [[1.0, None], [final, final]]  # A[t][j]; seen accuracy after the last step = final
    steps = [StepEvaluation(accuracy_row=r, task_accuracy_row=r, seen_accuracy=sum(r[: t + 1]) / (t + 1),
                            per_class_accuracy=[], base_accuracy=None, novel_accuracy=None) for t, r in enumerate(rows)]
    config = {"scenario": scenario, "strategy": strategy, "seed": seed}
    result = RunResult.from_steps(steps, few_shot=False, scenario=scenario["name"], strategy=strategy["name"], seed=seed,
                                  kind="class-incremental", config=config, config_hash=config_hash(config),
                                  versions={"clproto": "probe"}, class_order=[0, 1], experience_classes=[[0], [1]],
                                  test_sizes=[1, 1], timings=Timings())
    path = root / scenario["name"] / strategy["name"] / f"seed{seed}" / "results.json"
    result.save(path)
    return path


def cosine(strategy: dict = NMC) -> dict:
    return {**strategy, "params": {**strategy["params"], "metric": "cosine"}}


# --------------------------------------------------------------------------- different configs, one name
def _two_configs(tmp: Path, *extra: str) -> list[str]:
    for seed, final in ((0, 0.80), (1, 0.90)):
        write_run(tmp / "runs-euclid", seed, final)
    for seed, final in ((0, 0.40), (1, 0.50)):
        write_run(tmp / "runs-cosine", seed, final, strategy=cosine())
    return ["report", str(tmp / "runs-euclid"), str(tmp / "runs-cosine"), "--out", str(tmp / "rep"), *extra]


def _no_report(tmp: Path) -> None:
    assert not (tmp / "rep").exists(), "a refused report wrote files"


def _two_scenario_configs(tmp: Path) -> list[str]:
    write_run(tmp / "runs-full", 0, 0.8)
    write_run(tmp / "runs-small", 1, 0.6, scenario={**SCENARIO, "train_per_class": 20})
    return ["report", str(tmp / "runs-full"), str(tmp / "runs-small"), "--out", str(tmp / "rep")]


def _split_rows(tmp: Path) -> None:
    md = (tmp / "rep" / "tables.md").read_text(encoding="utf-8")
    assert "| nmc@metric=cosine | 45.00 ± 7.07 |" in md, md  # (0.4 + 0.5) / 2, never pooled with euclidean
    assert "| nmc@metric=euclidean | **85.00 ± 7.07** |" in md, md
    assert "| nmc |" not in md
    summary = (tmp / "rep" / "summary.md").read_text(encoding="utf-8")
    assert "nmc@metric=cosine" in summary and "(2 seeds;" in summary


# --------------------------------------------------------------------------- one result counted twice
def _same_folder_twice(tmp: Path) -> list[str]:
    for seed, final in ((0, 0.80), (1, 0.90)):
        write_run(tmp / "runs", seed, final)
    return ["report", str(tmp / "runs"), str(tmp / "runs"), "--out", str(tmp / "rep")]


def _copied_folder(tmp: Path) -> list[str]:
    for seed, final in ((0, 0.80), (1, 0.90)):
        write_run(tmp / "runs", seed, final)
    shutil.copytree(tmp / "runs", tmp / "runs-copy")
    return ["report", str(tmp / "runs"), str(tmp / "runs-copy"), "--out", str(tmp / "rep")]


def _counted_once(tmp: Path) -> None:
    md = (tmp / "rep" / "tables.md").read_text(encoding="utf-8")
    assert "over 2 seeds" in md and "| nmc | 85.00 ± 7.07 |" in md, md  # std over 2 results (ddof=1), not 4
    assert "4 seeds" not in md and "(n=" not in md
    assert (tmp / "rep" / "summary.csv").read_text(encoding="utf-8").count("\nsplit-x,nmc,") == 2


# --------------------------------------------------------------------------- cells pooling fewer results
def _missing_seed(tmp: Path) -> list[str]:
    for seed, final in ((0, 0.80), (1, 0.90), (2, 0.70)):
        write_run(tmp / "runs", seed, final)
    for seed, final in ((0, 0.40), (1, 0.50)):  # one seed missing
        write_run(tmp / "runs", seed, final, strategy={**NMC, "name": "other"})
    return ["report", str(tmp / "runs"), "--out", str(tmp / "rep")]


def _marked(tmp: Path) -> None:
    rep = tmp / "rep"
    md = (rep / "tables.md").read_text(encoding="utf-8")
    assert "over 3 seeds" in md and "| other | 45.00 ± 7.07 (n=2) |" in md and "| nmc | **80.00 ± 10.00** |" in md, md
    assert "45.00 $\\pm$ 7.07 (n=2)" in (rep / "tables.tex").read_text(encoding="utf-8")
    assert "45.00 ± 7.07 (n=2)" in (rep / "report.html").read_text(encoding="utf-8")
    summary = (rep / "summary.md").read_text(encoding="utf-8")
    assert "(3 seeds;" in summary and "45.00 ± 7.07 (n=2)" in summary, summary


# --------------------------------------------------------------------------- resolved parameters in report.html
def _one_run(tmp: Path) -> list[str]:
    write_run(tmp / "runs", 0, 0.8, strategy=cosine())
    return ["report", str(tmp / "runs"), "--out", str(tmp / "rep")]


def _shows_parameters(tmp: Path) -> None:
    text = (tmp / "rep" / "report.html").read_text(encoding="utf-8")
    assert "<details" in text and "strategy.params.metric" in text and "cosine" in text, "no resolved parameters in report.html"
    assert "strategy.backbone" in text and "scenario.train_per_class" in text


PROBES = [
    Probe("report-same-name-different-strategy-config", _two_configs, code=2, allow_results=True, check=_no_report,
          says=("runs-euclid", "runs-cosine", 'strategy.params.metric: "euclidean" vs "cosine"', "--split-configs")),
    Probe("report-same-name-different-scenario-config", _two_scenario_configs, code=2, allow_results=True,
          check=_no_report, says=("runs-full", "runs-small", "scenario.train_per_class: 0 vs 20")),
    Probe("report-split-configs-into-labelled-rows", lambda tmp: _two_configs(tmp, "--split-configs"), code=0,
          check=_split_rows),
    Probe("report-same-folder-twice-counted-once", _same_folder_twice, code=0, check=_counted_once,
          prints=("duplicate", "seed 0")),
    Probe("report-copied-folder-counted-once", _copied_folder, code=0, check=_counted_once,
          prints=("duplicate", "runs-copy")),
    Probe("report-cells-say-how-many-results", _missing_seed, code=0, check=_marked),
    Probe("report-html-shows-resolved-parameters", _one_run, code=0, check=_shows_parameters),
]
