"""Where data, models and caches live.

Data root: ``--data-root``, else ``$CLPROTO_DATA``, else ``<user cache>/clproto/data``.
Models root: ``--models-root``, else ``$CLPROTO_MODELS``, else ``<user cache>/clproto/models``.
Cache root: ``--cache-dir``, else ``$CLPROTO_CACHE``, else ``<user cache>/clproto/cache``.
The user cache is ``$XDG_CACHE_HOME`` or ``~/.cache``.
"""

from __future__ import annotations

import os
from pathlib import Path


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clproto"


def data_root(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get("CLPROTO_DATA")
    return Path(env).expanduser() if env else _user_cache() / "data"


def models_root(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get("CLPROTO_MODELS")
    return Path(env).expanduser() if env else _user_cache() / "models"


def cache_root(override: str | os.PathLike | None = None) -> Path:
    if override:
        return Path(override).expanduser()
    env = os.environ.get("CLPROTO_CACHE")
    return Path(env).expanduser() if env else _user_cache() / "cache"
