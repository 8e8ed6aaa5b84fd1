"""clproto: continual and few-shot class-incremental learning, simulated faithfully.

Python API (see the README)::

    import clproto
    scenario = clproto.load_scenario("scenarios/split-digits.toml")
    strategy = clproto.load_strategy("strategies/nmc-pixels.toml")
    result = clproto.Runner().run(scenario, strategy, seed=0)
    print(result.metrics.final_accuracy)
"""

from clproto._version import __version__  # noqa: F401 - clproto.__version__

from clproto.config import StrategyConfig, named_scenario, named_strategy, parse_override
from clproto.data import Dataset, load_dataset
from clproto.errors import ConfigError
from clproto.evaluation import Evaluator, Metrics, RunResult, metrics
from clproto.runner import Runner
from clproto.scenarios import Experience, Scenario, ScenarioConfig, build_scenario
from clproto.strategies import REGISTRY, Registry, Strategy


def load_scenario(path, *, overrides=()):
    """Read a scenario definition; ``overrides`` are ``"scenario.key=value"`` strings.

    ``path``: a TOML file with a ``[scenario]`` table. Returns a :class:`ScenarioConfig`; a
    :class:`ConfigError` names the file and field of bad input. As on the command line, a scenario
    whose fields the overrides change is named by them (``split-digits@test_per_class=20``), unless
    an override sets ``scenario.name`` itself.

    Example::

        scenario = clproto.load_scenario("scenarios/split-digits.toml", overrides=["scenario.test_per_class=20"])
        print(scenario.name)  # split-digits@test_per_class=20
    """
    from pathlib import Path

    return named_scenario(Path(path), [parse_override(o) if isinstance(o, str) else o for o in overrides])


def load_strategy(path, *, registry=None, overrides=()):
    """Read a strategy definition and check it against ``registry`` (default: :data:`REGISTRY`).

    ``path``: a TOML file with a ``[strategy]`` table; its ``implementation`` must be registered
    and ``[strategy.params]`` must fit that class's ``Config``. ``overrides``: ``"strategy.key=value"``
    strings; overrides that change it name it, as on the command line (``teen@alpha=0.25``).
    Returns the resolved strategy :meth:`Runner.run` takes; a :class:`ConfigError` names the file
    and field of bad input.

    Example::

        strategy = clproto.load_strategy("strategies/nmc.toml", overrides=["strategy.params.metric=cosine"])
        print(strategy.name)  # nmc@metric=cosine
    """
    from pathlib import Path

    return named_strategy(Path(path), [parse_override(o) if isinstance(o, str) else o for o in overrides],
                          registry or REGISTRY)


__all__ = [
    "ConfigError", "Dataset", "Evaluator", "Experience", "Metrics", "REGISTRY", "Registry", "RunResult", "Runner",
    "Scenario", "ScenarioConfig", "Strategy", "StrategyConfig", "build_scenario", "load_dataset", "load_scenario",
    "load_strategy", "metrics",
]
