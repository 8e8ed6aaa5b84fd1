"""Synthetic stand-ins for the standard datasets that are not on this machine, in their real layouts and names.

Every stand-in is written into a test's ``tmp_path``: the CIFAR-100 python pickles (random pixels),
miniImageNet in TOPIC's folders or CEC's ``images/`` + ``split/*.csv``, CUB-200-2011's official
files, ImageNet-R/A as PILOT's ``train/``+``test/`` or the official class folders — small random
JPEG/PNG images of varying sizes, named as the published index lists name them.
"""

from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from clproto.scenarios.index_lists import read_session_lists


def image_bytes(rng: np.random.Generator, *, fmt: str = "JPEG", size: tuple[int, int] | None = None) -> bytes:
    """A random RGB image (w, h between 12 and 40 pixels unless given), encoded as ``fmt``."""
    w, h = size or (int(rng.integers(12, 41)), int(rng.integers(12, 41)))
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def write_files(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _images(rng: np.random.Generator, names: list[str]) -> dict[str, bytes]:
    """Random images for ``names``; every third one a PNG (the rest JPEG) whatever its suffix says."""
    return {n: image_bytes(rng, fmt="PNG" if i % 3 == 2 else "JPEG") for i, n in enumerate(names)}


# --------------------------------------------------------------------------- CIFAR-100
def write_cifar100(data_root: Path, train_y: np.ndarray, test_y: np.ndarray, *, seed: int = 0,
                   archive: bool = False) -> dict[str, np.ndarray]:
    """``<data_root>/torchvision/cifar-100-python/{train,test,meta}`` (or the ``.tar.gz`` holding them),
    random pixels, with the given fine labels. Returns the arrays written, channels last."""
    rng = np.random.default_rng(seed)
    folder = data_root / "torchvision"
    members, out = {}, {}
    for split, y in (("train", train_y), ("test", test_y)):
        data = np.frombuffer(rng.bytes(len(y) * 3072), np.uint8).reshape(len(y), 3072)  # (N, 3 x 32 x 32), channel-major
        members[split] = pickle.dumps({"batch_label": f"{split} batch", "fine_labels": [int(v) for v in y],
                                       "coarse_labels": [int(v) // 5 for v in y],
                                       "filenames": [f"img_{i}.png" for i in range(len(y))], "data": data}, protocol=2)
        out[f"{split}_x"] = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        out[f"{split}_y"] = np.asarray(y, dtype=np.int64)
    members["meta"] = pickle.dumps({"fine_label_names": [f"fine{c:02d}" for c in range(100)],
                                    "coarse_label_names": [f"coarse{c:02d}" for c in range(20)]}, protocol=2)
    folder.mkdir(parents=True, exist_ok=True)
    if archive:
        with tarfile.open(folder / "cifar-100-python.tar.gz", "w:gz", compresslevel=1) as tar:
            for name, raw in members.items():
                info = tarfile.TarInfo(f"cifar-100-python/{name}")
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
    else:
        write_files(folder / "cifar-100-python", members)
    return out


def topic_cifar100_labels() -> tuple[np.ndarray, np.ndarray]:
    """Training labels (50 000) that make the shipped TOPIC CIFAR-100 lists consistent, and test labels (100 x 100).

    The lists give indices only (the labels are in the real pickles), so the stand-in labels the base list's
    indices 500 at a time as classes 0..59, session k's 25 indices 5 at a time as the next 5 classes, and the
    remaining indices so that every class has 500 training images."""
    lists = read_session_lists("fscil-topic/cifar100").entries
    y = np.full(50_000, -1, dtype=np.int64)
    base = np.array([int(e) for e in lists[0]])
    y[base] = np.arange(len(base)) // 500  # 60 classes x 500
    for k, entries in enumerate(lists[1:]):
        y[np.array([int(e) for e in entries])] = 60 + 5 * k + np.arange(len(entries)) // 5
    rest = np.flatnonzero(y < 0)  # 40 novel classes x 495 unlisted images
    y[rest] = 60 + np.arange(len(rest)) // 495
    return y, np.repeat(np.arange(100), 100)


# --------------------------------------------------------------------------- lists derived from the shipped ones
def reduced_lists(protocol: str, folder: Path, *, base_per_class: int) -> Path:
    """The shipped path-named lists with the base session cut to ``base_per_class`` images per class (the few-shot
    sessions unchanged), written as ``session_<k>.txt`` into ``folder``."""
    lists = read_session_lists(protocol).entries
    kept, count = [], {}
    for e in lists[0]:
        c = e.split("/")[-2]
        if count.get(c, 0) < base_per_class:
            kept.append(e)
            count[c] = count.get(c, 0) + 1
    folder.mkdir(parents=True, exist_ok=True)
    for k, entries in enumerate([kept, *lists[1:]], 1):
        (folder / f"session_{k}.txt").write_text("".join(f"{e}\n" for e in entries))
    return folder


def listed_names(folder_or_protocol: str | Path) -> list[str]:
    """``<class folder>/<file>`` of every entry of a path-named protocol, in list order."""
    return ["/".join(e.split("/")[-2:]) for es in read_session_lists(str(folder_or_protocol)).entries for e in es]


# --------------------------------------------------------------------------- miniImageNet
def write_miniimagenet(root: Path, train: list[str], *, layout: str = "topic", test_per_class: int = 1,
                       extra_train: int = 0, seed: int = 0) -> Path:
    """miniImageNet holding the training images ``train`` (``<wnid>/<file>``), ``extra_train`` more per class and
    ``test_per_class`` test images per class: TOPIC's ``train/``+``test/`` folders or CEC's ``images/``+``split/``."""
    rng = np.random.default_rng(seed)
    classes = sorted({n.split("/")[0] for n in train})
    train = list(train) + [f"{c}/{c}{90000 + i:08d}.jpg" for c in classes for i in range(extra_train)]
    test = [f"{c}/{c}{99000 + i:08d}.jpg" for c in classes for i in range(test_per_class)]
    if layout == "topic":
        files = _images(rng, [f"train/{n}" for n in train] + [f"test/{n}" for n in test])
    else:  # CEC: one flat images/ folder, the class in the CSVs
        files = _images(rng, [f"images/{n.split('/')[1]}" for n in train + test])
        for split, names in (("train", train), ("test", test)):
            rows = "".join(f"{n.split('/')[1]},{n.split('/')[0]}\n" for n in names)
            files[f"split/{split}.csv"] = ("filename,label\n" + rows).encode()
    return write_files(root, files)


# --------------------------------------------------------------------------- CUB-200-2011
def write_cub(root: Path, train: list[str], *, test_per_class: int = 1, seed: int = 0) -> Path:
    """``root/CUB_200_2011/`` in the official layout with the training images ``train`` (``<class dir>/<file>``)
    and ``test_per_class`` test images per class; ``attributes.txt`` beside it, as in the official archive."""
    rng = np.random.default_rng(seed)
    classes = sorted({n.split("/")[0] for n in train})
    test = [f"{c}/{c.split('.', 1)[1]}_test_{i}.jpg" for c in classes for i in range(test_per_class)]
    everything = sorted([(n, 1) for n in train] + [(n, 0) for n in test])  # images.txt: by class dir, then file
    files = {f"CUB_200_2011/images/{n}": data for n, data in _images(rng, [n for n, _ in everything]).items()}
    cid = {c: i + 1 for i, c in enumerate(classes)}
    files["CUB_200_2011/images.txt"] = "".join(f"{i} {n}\n" for i, (n, _) in enumerate(everything, 1)).encode()
    files["CUB_200_2011/train_test_split.txt"] = "".join(f"{i} {t}\n" for i, (_, t) in enumerate(everything, 1)).encode()
    files["CUB_200_2011/image_class_labels.txt"] = "".join(
        f"{i} {cid[n.split('/')[0]]}\n" for i, (n, _) in enumerate(everything, 1)).encode()
    files["CUB_200_2011/classes.txt"] = "".join(f"{cid[c]} {c}\n" for c in classes).encode()
    files["attributes.txt"] = b"1 has_bill_shape::curved_(up_or_down)\n"
    return write_files(root, files)


# --------------------------------------------------------------------------- ImageNet-R / ImageNet-A
def wnids(n: int) -> list[str]:
    return [f"n{1440764 + 37 * c:08d}" for c in range(n)]


def write_imagenet_variant(root: Path, *, classes: int, per_class: int | tuple[int, int], layout: str = "pilot",
                           seed: int = 0) -> Path:
    """PILOT's ``train/<wnid>/`` + ``test/<wnid>/`` (``per_class`` = (train, test)) or the official
    ``<wnid>/`` class folders with a README naming the classes (``per_class`` = images per class)."""
    rng = np.random.default_rng(seed)
    names = []
    for c, w in enumerate(wnids(classes)):
        if layout == "pilot":
            n_train, n_test = per_class  # type: ignore[misc]
            names += [f"train/{w}/{w}_{i}.jpg" for i in range(n_train)] + [f"test/{w}/{w}_{i}.jpg" for i in range(n_test)]
        else:
            names += [f"{w}/art_{i}.jpg" for i in range(per_class)]  # type: ignore[arg-type]
    files = _images(rng, names)
    if layout != "pilot":
        files["README.txt"] = ("ImageNet-R stand-in\n" + "".join(f"{w} class {c}\n" for c, w in enumerate(wnids(classes)))).encode()
    return write_files(root, files)


