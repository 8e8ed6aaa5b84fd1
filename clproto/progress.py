"""Progress bars (tqdm) that stay quiet when not wanted.

Whether bars are wanted is decided at the edge — the command line reads ``--no-progress`` and
``CLPROTO_PROGRESS`` (:func:`clproto.cli_common.setup`) — and passed down as ``enabled``: nothing
here reads or writes the environment.
"""

from __future__ import annotations

from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_bar(iterable: Iterable[T], *, desc: str, enabled: bool = True, total: int | None = None, unit: str = "it"):
    """Wrap ``iterable`` in a tqdm bar on stderr (shown only for work longer than ~1 s); ``enabled=False``: as is."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, mininterval=1.0, delay=1.0, dynamic_ncols=True)
