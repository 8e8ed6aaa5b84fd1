"""Where data, models and caches live.

Data root: ``--data-root``, else ``$CLPROTO_DATA``, else ``<user cache>/clproto/data``.
Models root: ``--models-root``, else ``$CLPROTO_MODELS``, else ``<user cache>/clproto/models``.
Cache root: ``--cache-dir``, else ``$CLPROTO_CACHE``, else ``<user cache>/clproto/cache``.
Downloads of missing datasets: ``download=True``, else ``$CLPROTO_DOWNLOAD=1``; off by default.
The user cache is ``$XDG_CACHE_HOME`` or ``~/.cache``. Roots are made absolute (against the current
directory), so a path built under a root never gets resolved against it a second time.
"""

from __future__ import annotations

import os
from pathlib import Path


def _root(override, env_var: str, default: str) -> Path:
    value = override or os.environ.get(env_var)
    return (Path(value).expanduser() if value else _user_cache() / default).absolute()


def _user_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "clproto"


def data_root(override: str | os.PathLike | None = None) -> Path:
    return _root(override, "CLPROTO_DATA", "data")


def models_root(override: str | os.PathLike | None = None) -> Path:
    return _root(override, "CLPROTO_MODELS", "models")


def cache_root(override: str | os.PathLike | None = None) -> Path:
    return _root(override, "CLPROTO_CACHE", "cache")


def download_allowed(override: bool | None = None) -> bool:
    """May a dataset missing from the data root be downloaded? ``download=`` else ``$CLPROTO_DOWNLOAD``
    (``1``/``true``/``yes``); off by default, so an offline run fails at once saying where to put the files."""
    if override is not None:
        return bool(override)
    return os.environ.get("CLPROTO_DOWNLOAD", "").strip().lower() in ("1", "true", "yes")
