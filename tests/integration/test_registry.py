"""The strategy registry, and a smoke run of every registered strategy."""

from dataclasses import dataclass
from pathlib import Path

import pytest

import clproto
from clproto.config import read_toml, strategy_from_dict
from clproto.errors import ConfigError
from clproto.runner import Runner
from clproto.scenarios import ScenarioConfig
from clproto.strategies import REGISTRY, Registry
from clproto.strategies.nmc import NMC

DEFAULTS = Path(clproto.__file__).parent / "defaults" / "strategies"


def test_duplicate_name_is_an_error():
    reg = Registry()
    reg.register("nmc", NMC)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("nmc", NMC)


def test_malformed_class_is_rejected():
    class NoConfig:
        input_kind = "features"

    with pytest.raises(TypeError, match="Config"):
        Registry().register("x", NoConfig)


def test_unknown_implementation_lists_known_ones():
    with pytest.raises(ConfigError) as err:
        REGISTRY.get("nope", where="s.toml")
    assert "nmc" in str(err.value) and "s.toml" in str(err.value)


def test_importing_registers_nothing_new():
    # the default registry is built explicitly; copies are independent
    reg = REGISTRY.copy()

    @dataclass(frozen=True)
    class C:
        pass

    class S(NMC):
        Config = C

    reg.register("extra", S)
    assert "extra" in reg and "extra" not in REGISTRY


def _definition_for(name: str) -> dict:
    """The packaged digits-sized definition of an implementation if there is one, else its defaults."""
    for f in sorted(DEFAULTS.glob("*.toml")):
        d = read_toml(f)["strategy"]
        if d.get("implementation") == name:
            return d
    definition = {"name": name, "implementation": name, "backbone": "pixels", "params": TINY_PARAMS.get(name, {})}
    if REGISTRY.get(name).cls.input_kind == "images":  # no digits definition (e.g. "avalanche"): finetune's budget
        definition["params"] = read_toml(DEFAULTS / "finetune-digits.toml")["strategy"]["params"]
    return definition


TINY_PARAMS = {"ranpac": {"projection_dim": 256}}  # defaults too costly for a fast test (RanPAC: M = 10 000 solves)


@pytest.mark.parametrize("name", REGISTRY.names())
def test_every_registered_strategy_runs(tiny_dataset, name):
    entry = REGISTRY.get(name)
    if "class-incremental" in entry.scenario_kinds:
        sc = ScenarioConfig(name="tiny-ci", dataset="tiny", increment=2)
    else:
        sc = ScenarioConfig(name="tiny-fs", dataset="tiny", kind="few-shot", base_classes=2, ways=2, shots=3)
    definition = _definition_for(name)
    if entry.cls.input_kind == "images":  # the packaged digits budget (3 epochs) is too short for 24 images
        definition = definition | {"params": definition.get("params", {}) | {"epochs": 10}}
    strategy = strategy_from_dict(definition, REGISTRY)
    runner = Runner(progress=False, datasets={"tiny": tiny_dataset})  # the shared synthetic fixture
    result = runner.run(sc, strategy, seed=0)
    assert len(result.accuracy_matrix) == 3
    assert all(0.0 <= a <= 1.0 for a in result.seen_accuracy)
    # the first experience (2 classes, chance 1/2) is learnt on the separable fixture
    assert result.seen_accuracy[0] >= 0.9
    # and after three experiences it still beats chance (1/6 over six classes)
    assert result.metrics.final_accuracy > 1 / 6
