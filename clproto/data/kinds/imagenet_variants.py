"""``imagenet-r:PATH`` and ``imagenet-a:PATH``: the 200-class ImageNet renditions / natural adversarial
examples, as PILOT (Sun et al. 2023, github.com/sun-hailong/LAMDA-PILOT) benchmarks them.

Two layouts are read, a directory or a zip:

* PILOT's archive (linked from its README): ``train/<wnid>/*.jpg`` and ``test/<wnid>/*.jpg``.
  PILOT's code does not split the data itself — ``utils/data.py`` (``iImageNetR.download_data``)
  reads ``./data/imagenet-r/train/`` and ``./data/imagenet-r/test/`` with torchvision's
  ``ImageFolder`` — so the 80 / 20 train/test split is the one fixed in that archive, used as is.
* The official archive (Hendrycks et al.): ``<wnid>/*.jpg`` class folders only (and a
  ``README.txt`` whose ``<wnid> <name>`` lines name the classes). clproto splits each class
  itself: a seeded permutation (``split_seed``) puts ``round(test_fraction x n)`` images (at
  least one) into test. Same proportion as PILOT's archive, not the same images: numbers from
  the two layouts are comparable in distribution only.

Labels follow the sorted class folder names (as ``ImageFolder``'s), so PyCIL/PILOT class orders,
which permute those labels, apply unchanged. Images have many sizes: each is decoded to ``size``
(default 224, PILOT's ViT input) — see :class:`clproto.data.kinds.decoded.ImageSize`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import numpy as np

from clproto.data.kinds.archive import Source, is_image, read_text
from clproto.data.kinds.decoded import ImageSize, Listing, decoded_cached
from clproto.data.kinds.imagefolder import read_imagefolder
from clproto.data.paths import cache_root
from clproto.data.registry import DatasetKind, DatasetRequest
from clproto.errors import ConfigError

LAYOUTS = "train/<wnid>/*.jpg + test/<wnid>/*.jpg (PILOT's archive), or <wnid>/*.jpg class folders (the official one)"
_README_LINE = re.compile(r"^(n\d{8})\s+(.+)$")


@dataclass(frozen=True)
class VariantOptions(ImageSize):
    size: int = 224  # PILOT's ViT-B/16 input size
    test_fraction: float = 0.2  # class-folder layout only: share of each class's images held out as test
    split_seed: int = 0  # class-folder layout only: seed of the per-class permutation

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must lie strictly between 0 and 1, not {self.test_fraction}")


def read_variant(src: Source, *, options: VariantOptions) -> Listing:
    if any(f.startswith("train/") for f in src.files):
        return read_imagefolder(src)  # PILOT's split, as shipped
    images = [f for f in src.files if is_image(f)]
    by_class: dict[str, list[str]] = {}
    for f in images:
        parts = f.split("/")
        if len(parts) != 2:
            raise ConfigError(f"{str(src.path)!r}: {f!r} is not <wnid>/<image>", field="dataset", expected=LAYOUTS)
        by_class.setdefault(parts[0], []).append(f)
    if not by_class:
        raise ConfigError(f"{str(src.path)!r} holds no class folders of images", field="dataset", expected=LAYOUTS)
    class_ids = sorted(by_class)
    train, test = [], []
    for k, c in enumerate(class_ids):
        members = sorted(by_class[c])
        if len(members) < 2:
            raise ConfigError(f"{str(src.path)!r}: class {c} has {len(members)} image, too few to split into "
                              "train and test", field="dataset", expected="at least 2 images per class")
        n_test = min(len(members) - 1, max(1, round(options.test_fraction * len(members))))
        held = set(np.random.default_rng([options.split_seed, k]).permutation(len(members))[:n_test].tolist())
        for i, m in enumerate(members):
            (test if i in held else train).append((c, m))
    names = {}
    if "README.txt" in src.fileset:
        for line in read_text(src, "README.txt").splitlines():
            if (m := _README_LINE.match(line.strip())) and m.group(1) in by_class:
                names[m.group(1)] = m.group(2).strip()
    return Listing(class_ids, names, train, test)


def _loader(kind: str):
    def load(req: DatasetRequest):
        o = req.options
        return decoded_cached(kind, req.path, partial(read_variant, options=o), cache_root(req.cache_dir),
                              progress=req.progress, size=o,
                              variant=f"test_fraction={o.test_fraction},split_seed={o.split_seed}")
    return load


IMAGENET_R = DatasetKind("imagenet-r", _loader("imagenet-r"), "ImageNet-R (200 classes): " + LAYOUTS,
                         path="required", options=VariantOptions)
IMAGENET_A = DatasetKind("imagenet-a", _loader("imagenet-a"), "ImageNet-A (200 classes): " + LAYOUTS,
                         path="required", options=VariantOptions)
