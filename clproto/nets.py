"""Networks trained from scratch: CIFAR-style ResNet-20, (reduced) ResNet-18 and the ImageNet ResNet-18.

* ``resnet20`` — He et al., "Deep Residual Learning for Image Recognition", CVPR 2016, Sec. 4.2:
  3 stages of 3 basic blocks with 16/32/64 filters, 64-d features. The CIFAR backbone of
  TOPIC, CEC and TEEN.
* ``resnet18`` — the ImageNet ResNet-18 block layout [2, 2, 2, 2] with a 3×3 stem and no max-pool
  (the usual adaptation to 32×32 inputs); ``width`` is the base number of filters: 64 is the
  standard network (512-d features), 20 is the *reduced* ResNet-18 of GEM (Lopez-Paz &
  Ranzato 2017) and Mammoth (160-d features).
* ``resnet18-imagenet`` — the ImageNet ResNet-18 itself (He et al. 2016, Table 1): a 7×7 stride-2 stem
  and a 3×3 stride-2 max-pool before the same blocks, 512-d features. The backbone CEC and TEEN
  train from scratch on miniImageNet (84×84 inputs; CEC's ``models/resnet18_encoder.py``).
* ``convnet-small`` — three 3×3 conv + batch-norm + ReLU layers (32, 64, 64 filters, one 2×2
  max-pool), 64-d features: not from a paper, a fast stand-in for the 8×8 digits of the
  embedded default run, where a ResNet's many small layers cost more than they compute.

Every network maps ``(N, 3, H, W)`` float images to ``(N, feature_dim)`` features (global
average pooling after the last stage); heads live in the strategies.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from clproto.errors import ConfigError


class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    """Stem -> stages of basic blocks -> global average pool -> (N, feature_dim).

    ``stem = "cifar"``: conv 3×3 stride 1; ``"imagenet"``: conv 7×7 stride 2, then max-pool 3×3 stride 2.
    """

    def __init__(self, *, blocks: list[int], widths: list[int], in_channels: int = 3, stem: str = "cifar") -> None:
        super().__init__()
        if stem == "imagenet":
            self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]),
                                      nn.ReLU(), nn.MaxPool2d(3, 2, 1))  # (N, C, H/4, W/4)
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False), nn.BatchNorm2d(widths[0]),
                                      nn.ReLU())
        layers, c_in = [], widths[0]
        for i, (n, w) in enumerate(zip(blocks, widths)):
            for b in range(n):
                layers.append(BasicBlock(c_in, w, stride=2 if (b == 0 and i > 0) else 1))
                c_in = w
        self.layers = nn.Sequential(*layers)
        self.feature_dim = c_in
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.layers(self.stem(x))  # (N, C, H', W')
        return h.mean(dim=(2, 3))  # (N, feature_dim)


def resnet20(*, in_channels: int = 3) -> ResNet:
    return ResNet(blocks=[3, 3, 3], widths=[16, 32, 64], in_channels=in_channels)


def resnet18(*, width: int = 64, in_channels: int = 3, stem: str = "cifar") -> ResNet:
    return ResNet(blocks=[2, 2, 2, 2], widths=[width, 2 * width, 4 * width, 8 * width], in_channels=in_channels,
                  stem=stem)


class SmallConvNet(nn.Module):
    """conv(32) -> conv(64) -> max-pool 2 -> conv(64) -> global average pool -> (N, 64)."""

    def __init__(self, *, in_channels: int = 3) -> None:
        super().__init__()

        def layer(c_in: int, c_out: int) -> list[nn.Module]:
            return [nn.Conv2d(c_in, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]

        self.body = nn.Sequential(*layer(in_channels, 32), *layer(32, 64), nn.MaxPool2d(2), *layer(64, 64))
        self.feature_dim = 64

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))  # (N, 64)


ARCHITECTURES = {
    "resnet20": lambda in_channels=3: resnet20(in_channels=in_channels),
    "resnet18": lambda in_channels=3: resnet18(width=64, in_channels=in_channels),
    "resnet18-reduced": lambda in_channels=3: resnet18(width=20, in_channels=in_channels),
    "resnet18-imagenet": lambda in_channels=3: resnet18(width=64, in_channels=in_channels, stem="imagenet"),
    "convnet-small": lambda in_channels=3: SmallConvNet(in_channels=in_channels),
}


def build_network(name: str, *, in_channels: int = 3, where: str | None = None) -> nn.Module:
    if name not in ARCHITECTURES:
        raise ConfigError("unknown architecture", where=where, field="architecture", value=name,
                          expected="one of " + ", ".join(ARCHITECTURES))
    return ARCHITECTURES[name](in_channels=in_channels)
