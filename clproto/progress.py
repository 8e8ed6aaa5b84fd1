"""Progress bars (tqdm) that stay quiet when not wanted."""

from __future__ import annotations

import os
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_enabled(requested: bool = True) -> bool:
    return requested and os.environ.get("CLPROTO_PROGRESS", "1") != "0"


def progress_bar(iterable: Iterable[T], *, desc: str, enabled: bool = True, total: int | None = None, unit: str = "it"):
    """Wrap ``iterable`` in a tqdm bar on stderr (shown only for work longer than ~1 s)."""
    if not progress_enabled(enabled):
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, mininterval=1.0, delay=1.0, dynamic_ncols=True)
