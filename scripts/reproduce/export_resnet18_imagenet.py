"""Write torchvision's ImageNet ResNet-18 as the TorchScript feature extractor TEEN's CUB-200 protocol fine-tunes.

    python scripts/reproduce/export_resnet18_imagenet.py --models-root MODELS [--weights FILE | --download]

TEEN (Wang et al., NeurIPS 2023; github.com/wangkiw/TEEN models/teen/Network.py: ``resnet18(True)``,
"follow TOPIC, models for cub is imagenet pre-trained") starts its CUB-200 base training from the ImageNet
ResNet-18: CEC's ``models/resnet18_encoder.py`` downloads torchvision's ``resnet18-5c106cde.pth``. clproto
fine-tunes a pretrained network given as a TorchScript feature extractor (a ``base-trained`` backbone with
``architecture = "torchscript:PATH"``, :mod:`clproto.training.pretrained`) that takes RGB in [0, 1] and scales
it itself. This script writes that file, ``<models root>/resnet18_imagenet_features.pt``: torchvision's
``resnet18`` without its classifier (512-d pooled features), ImageNet's mean/std standardisation in front.

Weights: ``--weights FILE`` (a torchvision ``resnet18`` state dict: ``resnet18-5c106cde.pth``, or
``resnet18-f37072fd.pth``, torchvision's ``ResNet18_Weights.IMAGENET1K_V1`` file — as far as we know the
same ImageNet weights re-saved, not checked here); else ``<models root>/torchvision/resnet18-f37072fd.pth``,
downloaded there by torchvision only with ``--download``. The file is read weights-only (no code in it runs).
Writes atomically; exit 2 with one line naming the file when the weights are missing or do not fit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

from clproto.data.paths import models_root as default_models_root  # noqa: E402
from clproto.errors import ConfigError  # noqa: E402
from clproto.storage import write_atomic  # noqa: E402

OUTPUT = "resnet18_imagenet_features.pt"  # what teen-paper-cub200.toml names, relative to the models root
TORCHVISION_FILE = "torchvision/resnet18-f37072fd.pth"  # ResNet18_Weights.IMAGENET1K_V1
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's preprocessing


class ImageNetFeatures(nn.Module):
    """RGB in [0, 1] ``(N, 3, S, S)`` -> ImageNet standardisation -> ResNet-18 without classifier -> ``(N, 512)``."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net.fc = nn.Identity()
        self.net = net
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x - self.mean) / self.std)  # (N, 512)


def read_weights(path: Path) -> dict:
    """A torchvision resnet18 state dict, read weights-only; ConfigError naming the file otherwise."""
    if not path.is_file():
        raise ConfigError(f"no weights file {str(path)!r}", where="--weights",
                          expected="a torchvision resnet18 state dict (--weights FILE), or --download")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read {str(path)!r}: {str(exc).strip().splitlines()[0][:200]}", where="--weights") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"{str(path)!r} holds no state dict of tensors", where="--weights")
    return state


def export(weights: dict, out: Path) -> ImageNetFeatures:
    """Build the scripted feature extractor from ``weights`` and write it to ``out`` atomically."""
    import torchvision

    net = torchvision.models.resnet18(weights=None)
    try:
        net.load_state_dict(weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[1:2] or [str(exc)[:200]]
        raise ConfigError(f"the weights do not fit torchvision's resnet18: {first[0].strip()}", where="--weights") from None
    module = ImageNetFeatures(net).eval()
    scripted = torch.jit.script(module)
    write_atomic(out, lambda fh: torch.jit.save(scripted, fh))
    return module


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-root", metavar="DIR", help="where to write it (default: $CLPROTO_MODELS)")
    p.add_argument("--weights", metavar="FILE", help=f"a torchvision resnet18 state dict (default: <models root>/{TORCHVISION_FILE})")
    p.add_argument("--download", action="store_true", help="let torchvision download IMAGENET1K_V1 when absent")
    args = p.parse_args(argv)
    root = default_models_root(args.models_root)
    try:
        if args.weights:
            path = Path(args.weights)
        else:
            path = root / TORCHVISION_FILE
            if not path.is_file() and args.download:
                import torchvision

                torchvision.models.ResNet18_Weights.IMAGENET1K_V1.get_state_dict(model_dir=str(path.parent), check_hash=True)
        export(read_weights(path), root / OUTPUT)
    except ConfigError as exc:
        print(f"export_resnet18_imagenet: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {root / OUTPUT} (from {path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
