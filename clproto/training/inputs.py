"""From stored uint8 images to network input: the one augmentation and the one input scaling.

Every network clproto trains (the strategies' own networks through the
:class:`~clproto.training.loop.TrainingLoop`, base-session backbones, the Avalanche wrapper) sees its
images through these two functions:

* :func:`augment` — random crop after zero padding, then random horizontal flip, batched on the
  uint8 ``(B, H, W, C)`` tensor, every draw from an explicit generator;
* :func:`to_input` — ``x / 255`` standardised by a :class:`Normalization` and laid out as
  ``(B, C, H, W)`` float32 in channels-last memory.

The normalisation belongs to the network's definition, not to this module: the strategies' networks
use the fixed scaling ``Normalization()`` (mean 0.5, std 0.25 for every channel, no dataset
statistics), a base-trained backbone the per-channel statistics of its base-session images
(:class:`~clproto.training.base_session.TrainedBase` keeps them with its weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from clproto.errors import ConfigError


@dataclass(frozen=True)
class Normalization:
    """Input scaling ``x / 255 -> (x / 255 - mean) / std``, per channel; one value applies to every channel."""

    mean: tuple[float, ...] = (0.5,)  # per-channel mean of x / 255 (default: clproto's fixed scaling)
    std: tuple[float, ...] = (0.25,)  # per-channel standard deviation of x / 255 (default: clproto's fixed scaling)

    def __post_init__(self) -> None:
        mean, std = tuple(float(m) for m in self.mean), tuple(float(s) for s in self.std)
        if not mean or len(mean) != len(std):
            raise ConfigError("mean and std need the same number of values (one, or one per channel)",
                              field="normalization", value={"mean": self.mean, "std": self.std})
        if not all(s > 0 for s in std):
            raise ConfigError("std must be positive", field="normalization.std", value=self.std)
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "std", std)

    def apply(self, x: torch.Tensor, *, channel_dim: int = -1) -> torch.Tensor:
        """Pixel values 0..255 (uint8 or float, channels along ``channel_dim``) -> standardised float32, same shape."""
        shape = [1] * x.dim()
        shape[channel_dim] = len(self.mean)
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(shape)  # broadcast over all but channels
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(shape)
        return (x.float() / 255.0 - mean) / std


def augment(x: torch.Tensor, *, padding: int, flip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding, then random horizontal flip; uint8 in, uint8 out.

    ``x`` is ``(B, H, W, C)`` uint8 on any device; every sample draws its own offsets and flip from ``generator``
    (in this order: B top offsets, B left offsets, B flips). The draws come from the generator (a CPU one) and
    are moved to ``x``'s device, so the same generator gives the same crops and flips on every device.
    """
    B, H, W, C = x.shape
    if padding > 0:
        padded = x.new_zeros(B, H + 2 * padding, W + 2 * padding, C)  # (B, H+2p, W+2p, C)
        padded[:, padding:padding + H, padding:padding + W] = x
        dev = x.device
        oy = torch.randint(0, 2 * padding + 1, (B,), generator=generator).to(dev)  # (B,) top offsets
        ox = torch.randint(0, 2 * padding + 1, (B,), generator=generator).to(dev)  # (B,) left offsets
        rows = (oy[:, None] + torch.arange(H, device=dev))[:, :, None]  # (B, H, 1)
        cols = (ox[:, None] + torch.arange(W, device=dev))[:, None, :]  # (B, 1, W)
        x = padded[torch.arange(B, device=dev)[:, None, None], rows, cols]  # (B, H, W, C)
    if flip:
        mirror = (torch.rand(B, generator=generator) < 0.5).to(x.device)  # (B,)
        x = torch.where(mirror[:, None, None, None], x.flip(2), x)
    return x


def to_input(x: torch.Tensor, normalization: Normalization = Normalization()) -> torch.Tensor:
    """uint8 ``(B, H, W, C)`` images -> standardised float32 ``(B, C, H, W)`` in channels-last memory."""
    f = normalization.apply(x)  # (B, H, W, C)
    return f.permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)  # (B, C, H, W)
