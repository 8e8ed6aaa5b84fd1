"""Modules split into packages or several files keep every name importable where it was (issue 11, item 5).

The lists are the names each module defined before its split (``clproto/avalanche.py`` at 094bc83, 596
lines; ``clproto/strategies/avalanche_strategy.py``, 434; ``clproto/reports/figures.py``, 390; at 2700204,
``clproto/runner.py``, 397; ``clproto/scenarios/scenario.py``, 377; ``clproto/training/base_session.py``, 370;
``clproto/config.py``, 365 once StrategyConfig had its docstring),
without the leading-underscore helpers and the names the modules had themselves imported from elsewhere.
"""

from __future__ import annotations

import importlib

import pytest

BEFORE_SPLIT = {
    "clproto.avalanche": (
        "INDEX_ATTRIBUTE", "WHERE", "SUPPORTED_BENCHMARKS", "ScenarioInfo", "to_avalanche", "from_avalanche",
        "StrategyModule", "ClprotoTemplate", "AvalancheMetrics", "read_metrics",
    ),
    "clproto.strategies.avalanche_strategy": (
        "TASK_LABELS", "NOT_WRAPPED", "SUPPLIED", "wrapped_strategies", "AvalancheConfig", "Network", "BenchmarkView",
        "experience_seed", "seeded_globals", "AvalancheStrategy",
    ),
    "clproto.reports.figures": (
        "DPI", "FORMATS", "PALETTE", "MARKERS", "LINESTYLES", "DODGE", "UNCERTAINTY", "Style", "Figure",
        "strategy_styles", "write_figures",
    ),
    "clproto.runner": (
        "versions", "run_dir", "build_model", "check_kind", "resolved_config", "built_scenario_identity", "Runner",
    ),
    "clproto.scenarios.scenario": ("Experience", "Scenario", "build_scenario"),
    "clproto.config": (  # the names that moved to clproto/identity.py
        "NAME_CHARS", "check_name", "label_value", "config_diff", "to_plain", "config_hash", "without_descriptions",
        "run_hash",
    ),
    "clproto.training.base_session": (
        "OMIT_DEFAULT", "BASE_SCHEDULES", "BaseTrainingConfig", "config_identity", "TrainedBase", "CosineClassifier",
        "resize_images", "validation_split", "loop_config", "train_base_session", "encode",
    ),
}
PAIRS = [(module, name) for module, names in BEFORE_SPLIT.items() for name in names]


@pytest.mark.parametrize("module,name", PAIRS, ids=[f"{m}.{n}" for m, n in PAIRS])
def test_name_still_importable(module, name):
    namespace: dict = {}
    exec(f"from {module} import {name}", namespace)  # the statement users write
    obj = namespace[name]
    assert obj is getattr(importlib.import_module(module), name)
    if callable(obj):  # functions and classes kept their docstrings through the move
        assert obj.__doc__, f"{module}.{name} lost its docstring"


def test_avalanche_all_unchanged():
    import clproto.avalanche as av

    assert sorted(av.__all__) == sorted([
        "INDEX_ATTRIBUTE", "AvalancheMetrics", "ClprotoTemplate", "ScenarioInfo", "StrategyModule", "from_avalanche",
        "read_metrics", "to_avalanche",
    ])
    assert all(hasattr(av, n) for n in av.__all__)


def test_avalanche_constants_keep_their_values():
    """The constants users match against (the data attribute, the error `where`) are unchanged."""
    from clproto.avalanche import INDEX_ATTRIBUTE, WHERE
    from clproto.reports.figures import DPI, FORMATS

    assert (INDEX_ATTRIBUTE, WHERE, DPI, FORMATS) == ("clproto_index", "from_avalanche", 150, ("png", "pdf"))
