"""Writing small image folders (zip or directory) from the shared tiny fixture, for data tests."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

from clproto.data.dataset import Dataset


def png_bytes(image: np.ndarray) -> bytes:
    """(H, W, 3) or (H, W, 1) uint8 -> PNG bytes (lossless, so decoding gives the array back)."""
    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG")
    return buf.getvalue()


def image_folder_members(dataset: Dataset) -> dict[str, bytes]:
    """``classes.tsv`` + ``train/<class>/<i>.png`` + ``test/<class>/<i>.png`` of ``dataset``."""
    members = {"classes.tsv": "".join(f"{n}\tclass {n}, alias\n" for n in dataset.class_names).encode()}
    for split, xs, ys in (("train", dataset.train_x, dataset.train_y), ("test", dataset.test_x, dataset.test_y)):
        for i, (x, y) in enumerate(zip(xs, ys)):
            members[f"{split}/{dataset.class_names[y]}/{i:04d}.png"] = png_bytes(x)
    return members


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


def write_dir(path: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    return path


def subset_zip(source: Path, target: Path, *, train: int, test: int) -> Path:
    """A per-class subset of an image-folder zip: the first ``train`` / ``test`` members of each class."""
    counts: dict[tuple[str, str], int] = {}
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for name in sorted(src.namelist()):
            parts = name.split("/")
            if name.endswith("/"):
                continue
            if len(parts) == 3 and parts[0] in ("train", "test"):
                key = (parts[0], parts[1])
                if counts.get(key, 0) >= (train if parts[0] == "train" else test):
                    continue
                counts[key] = counts.get(key, 0) + 1
            dst.writestr(name, src.read(name))
    return target
