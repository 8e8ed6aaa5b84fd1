"""uint8 images -> the float batch a pretrained model expects (scaling, greyscale, resize, normalisation)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clproto.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """uint8 NHWC images -> the float NCHW batch a model expects."""

    size: int | None  # square input side; None keeps the images' own size
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # subtracted after scaling to [0, 1]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)  # divided by after the mean

    def describe(self) -> str:
        return f"rgb01|bilinear{self.size or 'native'}|mean{self.mean}|std{self.std}"

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        """uint8 NHWC numpy images -> the float NCHW batch, on the CPU."""
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ConfigError("images must be (N, H, W, 1 or 3) uint8", field="backbone", value=images.shape)
        return self.on_device(torch.from_numpy(np.array(images, copy=True)))  # (B, 3, S, S)

    def on_device(self, images: torch.Tensor) -> torch.Tensor:
        """A (B, H, W, C) uint8 tensor -> the float (B, 3, S, S) batch, computed on the tensor's device (the
        same operations in the same order on every device, so CPU numbers never change)."""
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ConfigError("images must be (N, H, W, 1 or 3) uint8", field="backbone", value=tuple(images.shape))
        x = images.permute(0, 3, 1, 2).float().div_(255.0)  # (B, C, H, W)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # greyscale -> (B, 3, H, W)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)  # (B, 3, S, S)
        if self.mean != (0.0, 0.0, 0.0) or self.std != (1.0, 1.0, 1.0):
            mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
            x = (x - mean) / std
        # (B, 3, S, S) stored channels-last, as the permuted NHWC batch already is: oneDNN's fast CPU path
        # (a plain NCHW copy made MobileNet 1.37x slower here — benchmarks/cache_cold_warm.py)
        return x.contiguous(memory_format=torch.channels_last)


def preprocess_for(spec, *, size: int | None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> Preprocess:
    """The model's own preprocessing (``size``, ``mean``, ``std``), overridden by the table's ``size`` / ``norm``."""
    if spec.size is not None:
        size = None if spec.size == "native" else int(spec.size)
    if spec.norm == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif spec.norm == "none":
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return Preprocess(size=size, mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))
