"""Loading the dataset a scenario names: the built-in dataset kinds and :func:`load_dataset`.

=================================  ============================================================
``digits``                         scikit-learn's 8x8 digits (embedded, no download)
``CIFAR10`` ``MNIST``              torchvision datasets in ``<data root>/torchvision``
``FashionMNIST``
``CIFAR100``                       CIFAR-100's python pickles in ``<data root>/torchvision``
``imagefolder:PATH``               ``train/<class>/*`` + ``test/<class>/*`` (+ ``classes.tsv``)
``tinyimagenet:PATH``              the official Tiny-ImageNet layout
``miniimagenet:PATH``              miniImageNet, TOPIC's folders or CEC's ``images/`` + ``split/``
``cub200:PATH``                    CUB-200-2011's official layout
``imagenet-r:PATH``                ImageNet-R / ImageNet-A, PILOT's train/test split or the
``imagenet-a:PATH``                official class folders (split 80 / 20 per class)
=================================  ============================================================

Each kind lives in its module under :mod:`clproto.data.kinds` (which documents its layout, its
options and its errors) and is registered here, explicitly, in :func:`default_dataset_kinds`; add
your own with ``DATASETS.register(DatasetKind(...))`` (see :mod:`clproto.data.registry`). Relative
paths are resolved against the data root. Datasets missing from the data root are downloaded only
when allowed (``CLPROTO_DOWNLOAD=1`` or ``download=True``). Every error names the scenario
definition (``where``).
"""

from __future__ import annotations

import os
from pathlib import Path

from clproto.data.dataset import Dataset
from clproto.data.kinds.cifar100 import CIFAR100
from clproto.data.kinds.decoded import DECODE_VERSION
from clproto.data.kinds.embedded import DIGITS
from clproto.data.kinds.fscil_sets import CUB200, MINIIMAGENET
from clproto.data.kinds.imagefolder import IMAGEFOLDER, TINYIMAGENET
from clproto.data.kinds.imagenet_variants import IMAGENET_A, IMAGENET_R
from clproto.data.kinds.torchvision_sets import TORCHVISION
from clproto.data.paths import data_root as default_data_root
from clproto.data.paths import download_allowed
from clproto.data.registry import DatasetKind, DatasetKinds, DatasetRequest, parse_spec
from clproto.errors import ConfigError

__all__ = ["DATASETS", "DATASET_KINDS", "DECODE_VERSION", "DatasetKind", "default_dataset_kinds", "load_dataset"]


def default_dataset_kinds() -> DatasetKinds:
    kinds = DatasetKinds()
    for kind in (DIGITS, *TORCHVISION, CIFAR100, IMAGEFOLDER, TINYIMAGENET, MINIIMAGENET, CUB200, IMAGENET_R,
                 IMAGENET_A):
        kinds.register(kind)
    return kinds


DATASETS = default_dataset_kinds()
DATASET_KINDS = DATASETS.summaries()  # {"KIND[:PATH]": summary and options}, live (what `clproto list` prints)


def load_dataset(
    spec: str,
    *,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    where: str = "dataset",
    progress: bool = True,
    download: bool | None = None,
    kinds: DatasetKinds | None = None,
) -> Dataset:
    """Load the dataset named by ``spec`` (``KIND[:PATH][?option=value&...]``, see the module docstring)."""
    parsed = parse_spec(spec, DATASETS if kinds is None else kinds, where=where)
    root = default_data_root(data_root)
    path = None
    if parsed.path is not None:
        path = Path(parsed.path).expanduser()
        if not path.is_absolute():
            path = root / path
        if not path.exists():
            raise ConfigError(
                f"data file or folder {str(path)!r} does not exist (data root: {str(root)!r}; "
                "set --data-root or CLPROTO_DATA)",
                where=where,
                field="dataset",
                value=spec,
            )
    request = DatasetRequest(spec=spec, kind=parsed.kind.name, path=path, options=parsed.options, data_root=root,
                             cache_dir=None if cache_dir is None else str(cache_dir), progress=progress,
                             download=download_allowed(download), where=where)
    try:
        return parsed.kind.load(request)
    except ConfigError as exc:  # name the definition that asked for these data, like every other error
        if exc.where:
            raise
        raise ConfigError(exc.message, where=where, field=exc.field or "dataset", value=exc.value,
                          expected=exc.expected) from exc
