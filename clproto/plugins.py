"""Plugins: modules or ``.py`` files whose ``register(registry)`` adds strategies to a copy of the registry.

A leaf module (it imports only the registry and the error type), so the CLI, the sweep workers and the
Python API load plugins the same way without importing each other.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from clproto.errors import ConfigError


def load_plugins(specs: list[str]):
    from clproto.strategies import REGISTRY

    if not specs:
        return REGISTRY
    registry = REGISTRY.copy()
    for spec in specs:
        if spec.endswith(".py"):
            path = Path(spec)
            if not path.exists():
                raise ConfigError("plugin file not found", where="--plugin", value=spec)
            mod_spec = importlib.util.spec_from_file_location(path.stem, path)
            module = importlib.util.module_from_spec(mod_spec)
            sys.modules[path.stem] = module
            mod_spec.loader.exec_module(module)  # type: ignore[union-attr]
        else:
            try:
                module = importlib.import_module(spec)
            except ImportError as exc:
                raise ConfigError(f"cannot import plugin: {exc}", where="--plugin", value=spec) from exc
        if not callable(getattr(module, "register", None)):
            raise ConfigError("plugin has no register(registry) function", where="--plugin", value=spec)
        try:
            module.register(registry)
        except (ValueError, TypeError) as exc:  # a duplicate name, a malformed strategy class
            raise ConfigError(f"register(registry) failed: {exc}", where="--plugin", value=spec,
                              expected="unique names (see `clproto list`) and classes following the Strategy protocol") from None
    return registry
