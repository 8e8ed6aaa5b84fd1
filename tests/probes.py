"""The trust probes (issue 10): each a bad input or a fault, and what clproto must do with it.

A probe builds its files under a fresh folder, returns the ``clproto`` command line to run, and
states the exit code and what the one-line error must name (file, field, value). ``test_trust.py``
runs every probe of every ``PROBES`` list it imports, in-process, and also checks that nothing
partial is left behind: no temporary file anywhere under the folder (the cache included) and, for
exit code 2, no ``results.json`` or ``config.json`` at all.

Probes live in the ``probes_*.py`` modules beside this file, one per area, so each area's probes
read top to bottom; ``test_trust.py`` is the one table-driven module that runs them all.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import pytest


@dataclass(frozen=True)
class Probe:
    id: str  # pytest id, e.g. "scenario-negative-train-per-class"
    make: Callable[[Path], list[str]]  # builds files under the folder it is given; returns clproto's argv
    code: int = 2  # expected exit code (2: a named ConfigError; 1: some runs failed; 0: healed)
    says: tuple[str, ...] = ()  # substrings the printed error (stderr) must contain, case-sensitive
    prints: tuple[str, ...] = ()  # substrings stdout + stderr must contain (e.g. a heal note)
    patch: Optional[Callable[[pytest.MonkeyPatch, Path], None]] = None  # a fault to inject (disk full, ...)
    check: Optional[Callable[[Path], None]] = None  # further assertions on the folder after the run
    allow_results: bool = False  # exit 2 normally forbids any results.json/config.json under the folder
    marks: tuple = field(default_factory=tuple)  # pytest marks, e.g. (pytest.mark.slow,)
