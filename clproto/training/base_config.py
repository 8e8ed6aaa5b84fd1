"""The settings of base-session training (:mod:`clproto.training.base_session`): :class:`BaseTrainingConfig`, the
typed table of a ``base-trained`` backbone, with its checks, and :func:`config_identity`, the fields that identify a
training configuration in cache keys.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from clproto.errors import ConfigError
from clproto.nets import ARCHITECTURES
from clproto.training.pretrained import PREFIX, is_pretrained

# A field added after base-trained backbones were first cached carries this metadata: while it holds its default
# it is left out of every identity (cache keys, feature identities, recorded tables), so those of existing
# definitions do not change (config_identity; clproto.features.backbone.kinds.to_table).
OMIT_DEFAULT = {"omit_when_default": True}
BASE_SCHEDULES = ("cosine-steps", "cosine", "step")  # learning-rate schedules of base training


@dataclass(frozen=True)
class BaseTrainingConfig:
    # clproto.nets architecture (TEEN: resnet20 on CIFAR, resnet18 on mini/CUB), or "torchscript:PATH": fine-tune
    # that pretrained TorchScript network (PATH relative to the models root; clproto.training.pretrained)
    architecture: str = "resnet20"
    epochs: int = 10  # passes over the base training split (TEEN CIFAR-100: 600)
    batch_size: int = 128  # samples per SGD step (TEEN: 256)
    lr: float = 0.1  # initial learning rate, then decayed by `schedule` (default: cosine to 0) (TEEN: 0.1)
    momentum: float = 0.9  # Nesterov momentum (TEEN: 0.9)
    weight_decay: float = 5e-4  # L2 weight decay (TEEN: 5e-4)
    scale: float = 16.0  # cosine-classifier temperature s (TEEN `temperature`: 16)
    image_size: int = 32  # resize images to image_size² before training and extraction; 0 keeps their size
    crop_padding: int = 4  # random crop after zero padding by this many pixels; 0 disables cropping
    flip: bool = True  # random horizontal flip
    val_fraction: float = 0.1  # per-class share of base training images held out to pick the best epoch
    seed: int = 0  # training seed (init, validation split, batches, augmentation), not the run seed
    # learning rate of the network when set (the cosine head keeps lr); None: lr for both. For fine-tuning a
    # pretrained network, smaller than the new head's (TEEN's CUB script uses one lr, 0.004, for both)
    network_lr: float | None = field(default=None, metadata=OMIT_DEFAULT)
    # learning-rate schedule: "cosine-steps" (cosine decay after every step), "cosine" (once per epoch, as TEEN's
    # CosineAnnealingLR) or "step" (multiplied by gamma after each of the milestones, as TEEN's MultiStepLR on CUB)
    schedule: str = field(default="cosine-steps", metadata=OMIT_DEFAULT)
    milestones: tuple[int, ...] = field(default=(), metadata=OMIT_DEFAULT)  # "step": epochs (TEEN CUB: 50, 100, ..., 300)
    gamma: float = field(default=0.1, metadata=OMIT_DEFAULT)  # "step": the decay factor (TEEN CUB: 0.25)
    # "": train every parameter; else the network's parameters before the first one whose name starts with this
    # prefix (definition order; a TorchScript network's own names, e.g. "blocks.6") stay frozen: partial fine-tuning
    train_from: str = field(default="", metadata=OMIT_DEFAULT)

    def __post_init__(self) -> None:
        if is_pretrained(self.architecture):
            if not self.architecture[len(PREFIX):].strip():
                raise ConfigError("a pretrained architecture names its TorchScript file", field="architecture",
                                  value=self.architecture, expected=f"{PREFIX}PATH (relative to the models root)")
        elif self.architecture not in ARCHITECTURES:
            raise ConfigError("unknown architecture", field="architecture", value=self.architecture,
                              expected="one of " + ", ".join(ARCHITECTURES) + f", or {PREFIX}PATH (a pretrained "
                              "TorchScript network to fine-tune)")
        if self.network_lr is not None and not self.network_lr > 0:
            raise ConfigError("must be positive (or left out: the network then uses lr)", field="network_lr",
                              value=self.network_lr)
        for name in ("epochs", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ConfigError("must be a positive integer", field=name, value=v)
        for name in ("image_size", "crop_padding", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError("must be a non-negative integer", field=name, value=v)
        if not self.lr > 0 or not self.scale > 0:
            field_ = "lr" if not self.lr > 0 else "scale"
            raise ConfigError("must be positive", field=field_, value=getattr(self, field_))
        if not 0 <= self.momentum < 1 or not self.weight_decay >= 0:
            raise ConfigError("momentum must lie in [0, 1) and weight_decay be >= 0", field="momentum",
                              value=(self.momentum, self.weight_decay))
        if not 0 <= self.val_fraction < 1:
            raise ConfigError("must lie in [0, 1)", field="val_fraction", value=self.val_fraction)
        if self.schedule not in BASE_SCHEDULES:
            raise ConfigError("unknown schedule", field="schedule", value=self.schedule,
                              expected=" or ".join(BASE_SCHEDULES))
        if not isinstance(self.milestones, (list, tuple)) or any(
                isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in self.milestones):
            raise ConfigError("must be a list of positive epoch numbers", field="milestones", value=self.milestones)
        object.__setattr__(self, "milestones", tuple(self.milestones))  # hashable: tables key the feature store
        if self.milestones and self.schedule != "step":
            raise ConfigError('milestones apply to schedule = "step" only', field="milestones",
                              value=list(self.milestones), expected=f'schedule = "step" (not {self.schedule!r})')
        if not 0 < self.gamma <= 1:
            raise ConfigError("must lie in (0, 1]", field="gamma", value=self.gamma)


def config_identity(config: BaseTrainingConfig) -> dict:
    """The fields that identify a training configuration (hashed by cache keys): every field, except those
    marked OMIT_DEFAULT while they hold their default."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if not (f.metadata.get("omit_when_default") and getattr(config, f.name) == f.default)}
