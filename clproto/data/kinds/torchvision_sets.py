"""``CIFAR10``, ``MNIST``, ``FashionMNIST``: torchvision datasets under ``<data root>/torchvision``.

Read from the files torchvision keeps there; a missing dataset is downloaded only when downloads
are allowed (``CLPROTO_DOWNLOAD=1``, see :func:`clproto.data.paths.download_allowed`), otherwise it
is a :class:`ConfigError` naming the folder and the files to put in it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clproto.data.dataset import Dataset
from clproto.data.kinds.decoded import hash_arrays
from clproto.data.registry import DatasetKind, DatasetRequest
from clproto.errors import ConfigError

# what torchvision looks for under <data root>/torchvision, for the "where to put the files" message
FILES = {
    "CIFAR10": "cifar-10-python.tar.gz from https://www.cs.toronto.edu/~kriz/, extracted: "
               "cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}",
    "MNIST": "MNIST/raw/{train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte",
    "FashionMNIST": "FashionMNIST/raw/{train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte",
}


def missing(name: str, folder: Path, files: str, where: str, reason: str = "") -> ConfigError:
    return ConfigError(
        f"{name} is not in {str(folder)!r}{f' ({reason})' if reason else ''}: put {files} there, "
        "or let clproto download it (CLPROTO_DOWNLOAD=1)",
        where=where, field="dataset", value=name, expected="the dataset's files under <data root>/torchvision")


def load_torchvision(req: DatasetRequest) -> Dataset:
    import torchvision

    name = req.kind
    cls = getattr(torchvision.datasets, name)
    folder = req.data_root / "torchvision"
    try:
        train = cls(str(folder), train=True, download=False)
        test = cls(str(folder), train=False, download=False)
    except RuntimeError as exc:  # "Dataset not found or corrupted"
        if not req.download:
            raise missing(name, folder, FILES[name], req.where, str(exc).split(".")[0]) from exc
        try:
            train = cls(str(folder), train=True, download=True)
            test = cls(str(folder), train=False, download=True)
        except Exception as exc2:  # network or file errors: say where we looked
            raise ConfigError(f"could not download torchvision {name} into {str(folder)!r}: {exc2}",
                              where=req.where, field="dataset", value=name) from exc2

    def arrays(ds) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(ds.data)
        if x.ndim == 3:  # (N, H, W) greyscale -> (N, H, W, 1)
            x = x[..., None]
        return np.ascontiguousarray(x, dtype=np.uint8), np.asarray(ds.targets, dtype=np.int64)

    train_x, train_y = arrays(train)
    test_x, test_y = arrays(test)
    return Dataset(
        name=name,
        train_x=train_x,
        train_y=train_y,
        test_x=test_x,
        test_y=test_y,
        class_names=tuple(str(c) for c in train.classes),
        identity=hash_arrays(f"torchvision-{name}", train_x, train_y, test_x, test_y),
    )


TORCHVISION = tuple(DatasetKind(name, load_torchvision, f"torchvision {name} in <data root>/torchvision "
                                "(downloaded when absent only with CLPROTO_DOWNLOAD=1)")
                    for name in ("CIFAR10", "MNIST", "FashionMNIST"))
