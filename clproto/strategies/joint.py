"""Joint training: the upper bound of class-incremental learning.

At experience ``t`` the network is trained with cross-entropy on the union of the training sets
of experiences ``0..t`` — every sample seen so far, i.e. the "Joint" row of continual-learning
tables (e.g. Mammoth, Buzzega et al., NeurIPS 2020; PRD, Asadi et al., ICML 2023), evaluated
after every step like the other strategies. Training continues from the previous step's
weights (the cumulative variant), with the same backbone, epochs per experience, optimiser and
schedule as fine-tuning and PRD; the loss and prediction are fine-tuning's
(:mod:`clproto.strategies.finetune`), only the data differs. Samples are remembered by index
into the dataset, not copied.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from clproto.context import RunContext
from clproto.data.rows import ImageRows
from clproto.errors import ConfigError
from clproto.scenarios.scenario import Experience
from clproto.strategies.finetune import FineTune, FineTuneConfig


@dataclass(frozen=True)
class JointConfig(FineTuneConfig):
    """The shared training fields; ``epochs`` are passes over all data seen so far, per experience."""


class Joint:
    """Joint (cumulative) training on all data seen so far (upper bound)."""

    Config = JointConfig
    input_kind = "images"

    def __init__(self, *, config: JointConfig = JointConfig(), num_classes: int, seed: int = 0,
                 context: RunContext | None = None) -> None:
        self.config = config
        self.learner = FineTune(config=config, num_classes=num_classes, seed=seed, context=context)
        self.indices = np.empty(0, dtype=np.int64)  # (n_seen,) training-set indices of every sample seen so far

    @property
    def loop(self):
        """The training loop (shared with the inner fine-tuning learner), for its listeners."""
        return self.learner.loop

    def fit_experience(self, experience: Experience) -> None:
        if len(experience.train_indices) == 0:
            raise ConfigError(f"experience {experience.index} has no training samples", field="dataset")
        self.indices = np.concatenate([self.indices, experience.train_indices])
        data = experience.dataset
        x = ImageRows(data.train_x, self.indices)  # (n_seen, H, W, C) uint8, streamed by the loop
        y = torch.from_numpy(data.train_y[self.indices])  # (n_seen,)
        self.learner.train_on(x, y, classes=experience.classes, experience=experience.index, desc="joint")

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        return self.learner.predict_scores(x)

    def state_dict(self) -> dict:
        return {"learner": self.learner.state_dict(), "indices": torch.from_numpy(self.indices.copy())}  # weights-only loadable

    def load_state_dict(self, state: dict) -> None:
        self.learner.load_state_dict(state["learner"])
        self.indices = np.asarray(state["indices"].numpy() if torch.is_tensor(state["indices"]) else state["indices"],
                                  dtype=np.int64).copy()
