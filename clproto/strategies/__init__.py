"""Strategies and the default registry.

``REGISTRY`` lists every built-in implementation explicitly, here and only here. Add your own
with ``clproto.REGISTRY.register(name, cls)`` (or a copy of it), see the README.
"""

from clproto.strategies.base import Registered, Registry, Strategy, build_strategy
from clproto.strategies.nmc import NMC, NMCConfig


def default_registry() -> Registry:
    reg = Registry()
    reg.register("nmc", NMC, description="nearest-mean classifier on frozen features (Janson et al. 2022; SimpleCIL)")
    return reg


REGISTRY = default_registry()

__all__ = ["NMC", "NMCConfig", "REGISTRY", "Registered", "Registry", "Strategy", "build_strategy", "default_registry"]
