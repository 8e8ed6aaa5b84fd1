"""Pretrained TorchScript networks as the starting point of base-session training (fine-tuning).

A ``base-trained`` backbone whose ``architecture`` is ``"torchscript:PATH"`` starts from the TorchScript
feature extractor in ``PATH`` (relative to the models root, as the ``torchscript`` backbone kind) instead
of a randomly initialised :mod:`clproto.nets` network, and fine-tunes it on the base session. This is
TEEN's protocol for CUB-200 (Wang et al., NeurIPS 2023, Sec. 5.1 / App. B: an ImageNet-pretrained
ResNet-18 fine-tuned on the 100 base classes; official ``scripts/cub.sh``: lr 0.004 for the whole network,
cosine classifier at temperature 32), with the MobileNetV1 of ``../shared/models`` in place of the ResNet-18.

TorchScript modules train like any ``nn.Module``: their parameters require grad, ``train()`` / ``eval()``
switch their mode, ``state_dict`` / ``load_state_dict`` read and write every parameter and buffer. The
module is wrapped in :class:`PretrainedNetwork` (``feature_dim``, greyscale repeated to 3 channels).

The model scales its input itself (the shared MobileNets: ``(x·255 − 128)/128`` on RGB in [0, 1]), so
base training feeds it plain ``x / 255`` (:data:`IDENTITY_SCALING`), not dataset-standardised pixels.
The fine-tuned weights are cached as a state dict (read back weights-only); the network is always rebuilt
from the TorchScript file plus that state dict, whose content hash is part of the cache key.
"""

from __future__ import annotations

import functools
import hashlib
import os
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from clproto.data.paths import models_root as default_models_root
from clproto.errors import ConfigError

PREFIX = "torchscript:"  # architecture = "torchscript:PATH": start from this TorchScript file
IDENTITY_SCALING = (0.0, 1.0)  # (mean, std) of the input scaling: x / 255 in [0, 1], the model's own input


def is_pretrained(architecture: str) -> bool:
    """``architecture`` names a TorchScript file (``torchscript:PATH``), not a :mod:`clproto.nets` network."""
    return isinstance(architecture, str) and architecture.startswith(PREFIX)


def file_label(architecture: str) -> str:
    """A file-name-safe label: ``torchscript-<file stem>`` (cache file names start with it)."""
    stem = Path(architecture[len(PREFIX):]).stem
    return "torchscript-" + "".join(c if c.isalnum() or c in "._-" else "_" for c in stem)


class PretrainedNetwork(nn.Module):
    """A TorchScript feature extractor ``(N, 3, S, S)`` RGB in [0, 1] -> ``(N, feature_dim)``, trainable."""

    def __init__(self, *, module: torch.jit.ScriptModule, feature_dim: int) -> None:
        super().__init__()
        self.module = module  # the scripted network; its parameters are this module's "module.*"
        self.feature_dim = feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:  # greyscale: the same channel as R, G and B (as the frozen torchscript kind)
            x = x.expand(-1, 3, -1, -1)  # (N, 3, S, S)
        return self.module(x)  # (N, D)


def resolve(architecture: str, *, models_root: str | os.PathLike | None = None, where: str | None = None) -> Path:
    """The TorchScript file of ``torchscript:PATH`` (PATH relative to the models root, or absolute); must exist."""
    text = architecture[len(PREFIX):]
    root = default_models_root(models_root)
    path = Path(text).expanduser()
    path = path if path.is_absolute() else root / path
    if not path.is_file():
        raise ConfigError(f"model file {str(path)!r} does not exist (models root: {str(root)!r}; set --models-root "
                          "or CLPROTO_MODELS)", where=where, field="backbone.architecture", value=architecture)
    return path


def file_hash(path: Path) -> str:
    """Content hash of the TorchScript file (its code and initial weights): part of the trained weights' key."""
    stat = path.stat()
    return _file_hash(str(path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def load_pretrained(architecture: str, *, side: int, models_root: str | os.PathLike | None = None,
                    where: str | None = None) -> PretrainedNetwork:
    """The network of ``torchscript:PATH``, in train-ready form, probed on two ``side``² images.

    Not a TorchScript file, no parameters, or an output other than ``(N, D)``: a ConfigError naming the file.
    """
    path = resolve(architecture, models_root=models_root, where=where)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch 2.14 deprecates TorchScript; loading works
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(f"{str(path)!r} is not a loadable TorchScript file ({first})", where=where,
                          field="backbone.architecture", value=architecture,
                          expected="a file saved by torch.jit.save (a state dict needs its architecture: "
                          "the checkpoint backbone kind)") from None
    params = [p for p in module.parameters() if p.is_floating_point()]
    if not params:
        raise ConfigError(f"{str(path)!r} has no floating-point parameters to fine-tune", where=where,
                          field="backbone.architecture", value=architecture)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            probe = module(torch.zeros(2, 3, side, side))  # (2, D)
    except Exception as exc:
        raise ConfigError(f"{str(path)!r} failed on a batch of shape (2, 3, {side}, {side}): "
                          f"{str(exc).strip()[:200]}", where=where, field="backbone.image_size", value=side) from None
    if not isinstance(probe, torch.Tensor) or probe.ndim != 2 or probe.shape[0] != 2:
        shape = tuple(probe.shape) if isinstance(probe, torch.Tensor) else type(probe).__name__
        raise ConfigError(f"{str(path)!r} returns {shape} for 2 images", where=where, field="backbone.architecture",
                          value=architecture, expected="a (2, D) tensor of features")
    module.train(was_training)
    return PretrainedNetwork(module=module, feature_dim=int(probe.shape[1]))
