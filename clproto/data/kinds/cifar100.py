"""``CIFAR100``: CIFAR-100 from its python-version pickles, where torchvision keeps them.

Looked for under ``<data root>/torchvision``: the extracted ``cifar-100-python/{train,test,meta}``
or the archive ``cifar-100-python.tar.gz`` (read in place). Absent, it is downloaded through
torchvision only when downloads are allowed (``CLPROTO_DOWNLOAD=1``); otherwise a
:class:`ConfigError` says where to put which files.

The samples keep the pickle order (``fine_labels``, the 100 fine classes in ``meta``'s order),
as torchvision does: the TOPIC few-shot index lists (``fscil-topic/cifar100``) are indices into
that training order, and PyCIL's class orders are permutations of those labels. The pickles are
read with an unpickler that admits only the numpy array constructors, so a tampered file cannot
run code.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from clproto.data.dataset import Dataset
from clproto.data.kinds.decoded import hash_arrays
from clproto.data.kinds.torchvision_sets import missing
from clproto.data.registry import DatasetKind, DatasetRequest
from clproto.errors import ConfigError

FOLDER = "cifar-100-python"
ARCHIVE = "cifar-100-python.tar.gz"
URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
FILES = f"{ARCHIVE} ({URL}) or its extracted {FOLDER}/{{train,test,meta}}"
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}  # bytes in protocol-2 pickles


class _ArraysOnly(pickle.Unpickler):
    """Unpickles dicts, lists, strings, numbers and numpy arrays — nothing that could run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refused to load {module}.{name}")
        return super().find_class(module, name)


def read_pickle(raw: bytes, label: str) -> dict:
    try:
        obj = _ArraysOnly(io.BytesIO(raw), encoding="latin1").load()
    except Exception as exc:
        raise ConfigError(f"{label} is not a CIFAR-100 python pickle: {exc}", field="dataset",
                          expected=f"the files of {URL}") from exc
    if not isinstance(obj, dict):
        raise ConfigError(f"{label} holds a {type(obj).__name__}, not a dict", field="dataset")
    return {(k.decode("latin1") if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _members(folder: Path, where: str, download: bool) -> dict[str, tuple[bytes, str]]:
    """``{"train"|"test"|"meta": (bytes, label for errors)}`` from the folder, else the archive."""
    extracted = folder / FOLDER
    if all((extracted / m).is_file() for m in ("train", "test", "meta")):
        return {m: ((extracted / m).read_bytes(), str(extracted / m)) for m in ("train", "test", "meta")}
    archive = folder / ARCHIVE
    if not archive.is_file():
        if not download:
            present = sorted(p.name for p in extracted.iterdir()) if extracted.is_dir() else []
            raise missing("CIFAR100", folder, FILES, where,
                          f"{FOLDER}/ holds only {present}" if extracted.is_dir() else f"no {FOLDER}/ or {ARCHIVE}")
        _download(folder, where)
        return _members(folder, where, False)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            return {m: (tar.extractfile(f"{FOLDER}/{m}").read(), f"{archive}:{FOLDER}/{m}")  # type: ignore[union-attr]
                    for m in ("train", "test", "meta")}
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise ConfigError(f"{str(archive)!r} is not a readable CIFAR-100 archive: {exc}", where=where, field="dataset",
                          expected=f"the archive of {URL}") from exc


def _download(folder: Path, where: str) -> None:
    import torchvision

    try:  # downloads, checks the archive's MD5 and extracts it
        torchvision.datasets.CIFAR100(str(folder), train=True, download=True)
    except Exception as exc:
        raise ConfigError(f"could not download CIFAR-100 into {str(folder)!r}: {exc}", where=where, field="dataset",
                          value="CIFAR100", expected=f"network access, or {FILES} put there by hand") from exc


def _split(entry: dict, label: str) -> tuple[np.ndarray, np.ndarray]:
    data, labels = entry.get("data"), entry.get("fine_labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ConfigError(f"{label}: 'data' is not an (N, 3072) uint8 array", field="dataset",
                          value=getattr(data, "shape", type(data).__name__))
    y = np.asarray(labels if labels is not None else [], dtype=np.int64)  # (N,)
    if len(y) != len(data) or (len(y) and (y.min() < 0 or y.max() > 99)):
        raise ConfigError(f"{label}: 'fine_labels' must give a label in 0..99 for each of the {len(data)} images",
                          field="dataset")
    x = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))  # (N, 32, 32, 3), channels last
    return x, y


def load_cifar100(req: DatasetRequest) -> Dataset:
    members = _members(req.data_root / "torchvision", req.where, req.download)
    train_x, train_y = _split(read_pickle(*members["train"]), members["train"][1])
    test_x, test_y = _split(read_pickle(*members["test"]), members["test"][1])
    names = read_pickle(*members["meta"]).get("fine_label_names")
    if not isinstance(names, list) or len(names) != 100:
        raise ConfigError(f"{members['meta'][1]}: 'fine_label_names' is not a list of 100 names", field="dataset")
    return Dataset(name="CIFAR100", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                   class_names=tuple(str(n) for n in names),
                   # the same identity as when torchvision read these arrays (feature caches stay valid)
                   identity=hash_arrays("torchvision-CIFAR100", train_x, train_y, test_x, test_y))


CIFAR100 = DatasetKind("CIFAR100", load_cifar100, f"CIFAR-100, {FOLDER}/ or {ARCHIVE} in <data root>/torchvision "
                       "(downloaded when absent only with CLPROTO_DOWNLOAD=1)")
