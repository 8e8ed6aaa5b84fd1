"""What identifies a run and what it ran with: the resolved configuration its hash is taken of
(:func:`resolved_config`), the identity of a scenario built in Python instead of read from a definition
(:func:`built_scenario_identity`), and the library versions recorded beside its results (:func:`versions`)."""

from __future__ import annotations

import hashlib
import platform
from typing import Optional

import numpy as np
import torch

from clproto.config import ResolvedStrategy, to_plain
from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import Scenario


def resolved_config(scenario: ScenarioConfig | dict, strategy: ResolvedStrategy, seed: int,
                    compute: Optional[dict] = None) -> dict:
    """The identity of a run: everything that can change its numbers (not paths or thread counts). ``compute``:
    :func:`clproto.devices.compute_identity` — None (absent) for cpu/fp32, so CPU identities stay as they were."""
    config = {"scenario": to_plain(scenario), "strategy": strategy.to_dict(), "seed": seed}
    return {**config, "compute": dict(compute)} if compute else config


def built_scenario_identity(scenario: Scenario) -> dict:
    """What identifies a scenario built in Python (e.g. by ``clproto.avalanche.from_avalanche``), which has no
    definition: its name and kind, the dataset's content hash, the class order, and each experience's classes
    and train/test indices (hashed), so the same stream always gets the same run identity."""
    def digest(indices) -> str:
        return hashlib.sha256(np.asarray(indices, dtype=np.int64).tobytes()).hexdigest()[:16]

    return {"name": scenario.name, "kind": scenario.kind, "built": "in Python", "dataset": scenario.dataset.identity,
            "class_order": [int(c) for c in scenario.class_order],
            "experiences": [{"classes": [int(c) for c in e.classes], "train": digest(e.train_indices),
                             "test": digest(e.test_indices)} for e in scenario]}


def versions() -> dict:
    """The versions a run's numbers may depend on (Python, clproto, torch, numpy, platform, torch threads),
    recorded in its ``results.json``."""
    from clproto._version import __version__

    out = {"python": platform.python_version(), "clproto": __version__, "torch": torch.__version__,
           "numpy": np.__version__, "platform": platform.platform(),
           # trained strategies' float reductions depend on it: identical numbers need the same count
           "torch_threads": torch.get_num_threads()}
    return out
