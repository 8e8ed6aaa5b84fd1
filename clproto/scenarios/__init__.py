"""Scenario engine: a scenario is a sequence of class-incremental experiences."""

from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import Experience, Scenario, build_scenario

__all__ = ["Experience", "Scenario", "ScenarioConfig", "build_scenario"]
