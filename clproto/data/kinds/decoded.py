"""Decoding image files once into the cache, and memory-mapping them on every later load.

A reader lists an image source (:class:`Listing`: class ids, names, train/test members); the images
are decoded straight into ``.npy`` files under ``<cache root>/decoded/<name>-<key>/`` (key: the zip's
or folder's content hash, :data:`DECODE_VERSION` and the decoding options; see :mod:`clproto.features.cache`;
entries are written and checked by :mod:`clproto.storage`), so neither decoding nor loading holds a second copy in RAM;
written pages are handed back as decoding goes (:mod:`clproto.pages`), so a store larger than RAM decodes
with a bounded resident set, and readers stream it per batch (:mod:`clproto.features.batches`).

Images are kept as stored (``size = 0``: every image must then have the same size) or resized on
decode to ``size`` x ``size`` (:class:`ImageSize`): ``fit = "crop"`` scales the shorter side to
``size`` and keeps the centre square (torchvision's ``Resize(size)`` + ``CenterCrop(size)``),
``"stretch"`` scales both sides to ``size``. Resampling is PIL's bicubic filter (antialiased when
shrinking). A member that is not a decodable image and images of mixed sizes (without ``size``) are
:class:`ConfigError` naming the file and member; nothing is left in the cache.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from clproto.data.dataset import Dataset
from clproto.data.kinds.archive import Source
from clproto.errors import ConfigError

DECODE_VERSION = "2"  # bump when the decoding below changes, to invalidate decoded caches
FITS = ("crop", "stretch")
RELEASE_BYTES = 32 << 20  # decoded bytes between two releases of the written pages (clproto.pages): RSS stays bounded


@dataclass(frozen=True)
class ImageSize:
    """Options of the image-decoding kinds (``?size=..&fit=..``)."""

    size: int = 0  # decode every image to size x size pixels; 0 keeps them as stored (all of one size)
    fit: str = "crop"  # "crop": shorter side to `size`, then the centre square; "stretch": both sides to `size`

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be 0 (as stored) or a positive number of pixels, not {self.size}")
        if self.fit not in FITS:
            raise ValueError(f"fit must be one of {', '.join(FITS)}, not {self.fit!r}")

    def variant(self) -> str:
        """What the decoding options add to the cache key ("" when images are kept as stored)."""
        return f"size={self.size},fit={self.fit}" if self.size else ""


@dataclass
class Listing:
    """Members of one source: (class id, member) pairs per split, plus class names.

    ``train_names`` (one per training member) is what ``Dataset.train_names`` keeps, for published
    index lists to find images by ``<class folder>/<file>``; by default the member paths themselves.
    """

    class_ids: list[str]
    class_names: dict[str, str]
    train: list[tuple[str, str]]
    test: list[tuple[str, str]]
    train_names: Optional[list[str]] = field(default=None)


def decode_image(src: Source, name: str, size: ImageSize = ImageSize()) -> np.ndarray:
    """One member as ``(H, W, 3)`` uint8 RGB (greyscale and palette images converted), resized if asked."""
    from PIL import Image

    data = src.read(name)  # a damaged zip member is a ConfigError naming it (CRC-32)
    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = im.convert("RGB")
            return np.asarray(_resized(rgb, size) if size.size else rgb, dtype=np.uint8)  # (H, W, 3)
    except Exception as exc:
        reason = "not an image format PIL recognises" if type(exc).__name__ == "UnidentifiedImageError" else str(exc)
        raise ConfigError(f"cannot decode image member {name!r} of {str(src.path)!r}: {reason}",
                          field="dataset") from exc


def _resized(im, size: ImageSize):
    from PIL import Image

    s = size.size
    if size.fit == "stretch":
        return im.resize((s, s), Image.Resampling.BICUBIC)
    w, h = im.size
    scale = s / min(w, h)
    nw, nh = max(s, round(w * scale)), max(s, round(h * scale))  # the shorter side becomes exactly s
    left, top = (nw - s) // 2, (nh - s) // 2
    return im.resize((nw, nh), Image.Resampling.BICUBIC).crop((left, top, left + s, top + s))


def _decode_into(folder: Path, split: str, src: Source, members: list[tuple[str, str]], label_of: dict[str, int],
                 size: ImageSize, progress: bool, entry: Path) -> dict[str, np.ndarray]:
    """Decode ``members`` straight into ``<folder>/<split>_x.npy`` (a memory map: no second copy in RAM)."""
    from clproto.pages import release_all, release_rows
    from clproto.storage import open_array
    from clproto.progress import progress_bar

    first = decode_image(src, members[0][1], size)
    x = open_array(folder / f"{split}_x.npy", dtype=np.uint8, shape=(len(members), *first.shape),
                   entry=entry)  # (N, H, W, 3), disk space reserved before a byte is written
    y = np.array([label_of[cid] for cid, _ in members], dtype=np.int64)  # (N,)
    every = max(1, RELEASE_BYTES // max(1, first.nbytes))  # images per release
    bar = progress_bar(range(len(members)), desc=f"decode {src.path.name} {split}", enabled=progress, unit="img")
    for i in bar:
        arr = first if i == 0 else decode_image(src, members[i][1], size)
        if arr.shape != first.shape:
            raise ConfigError(
                f"image {members[i][1]!r} in {str(src.path)!r} is {arr.shape[1]}x{arr.shape[0]}, "
                f"others are {first.shape[1]}x{first.shape[0]}",
                field="dataset",
                expected="all images of one size, or a size to resize them to (e.g. ?size=224)",
            )
        x[i] = arr
        if (i + 1) % every == 0:  # written pages leave the resident set (they stay in the page cache)
            release_rows(x, i + 1 - every, i + 1)
    release_all(x)
    np.save(folder / f"{split}_y.npy", y, allow_pickle=False)
    return {f"{split}_x": x, f"{split}_y": np.load(folder / f"{split}_y.npy", mmap_mode="r")}


def decoded_cached(kind: str, path: Path, reader: Callable[[Source], Listing], cache: Path, *, progress: bool,
                   size: ImageSize = ImageSize(), variant: str = "", keep: tuple[str, ...] = ()) -> Dataset:
    """Decode the source at ``path`` once into ``<cache>/decoded/<name>-<key>/`` and memory-map it after.

    ``variant`` names whatever else changes the decoded arrays (e.g. a split fraction); with the
    decoding options it joins the cache key, so each variant is its own entry.
    """
    from clproto.storage import CorruptEntry, discard_entry, note_corrupt, write_entry

    extra = ",".join(v for v in (size.variant(), variant) if v)
    identity = hash_path(path, f"{kind}-decode-v{DECODE_VERSION}" + (f"-{extra}" if extra else ""))
    entry = cache / "decoded" / f"{path.stem}-{identity[:24]}"
    for attempt in range(2):
        try:
            return _read_decoded(entry, path.stem, identity, verify=attempt == 0)  # (verified if not just written)
        except FileNotFoundError:
            pass
        except CorruptEntry as exc:
            note_corrupt("decoded cache entry", entry, exc, f"decoding {path.name} again")
            discard_entry(entry)  # decode again below
        listing: dict = {}

        def fill(tmp: Path) -> dict[str, np.ndarray]:
            src = Source(path, keep=keep)
            try:
                found = reader(src)
                label_of = {c: i for i, c in enumerate(found.class_ids)}
                listing["class_names"] = [found.class_names.get(c, c) for c in found.class_ids]
                # sample order = listing order
                listing["train_names"] = found.train_names or [member for _, member in found.train]
                return {**_decode_into(tmp, "train", src, found.train, label_of, size, progress, entry),
                        **_decode_into(tmp, "test", src, found.test, label_of, size, progress, entry)}
            finally:
                src.close()

        meta = {"kind": "decoded", "dataset": path.stem, "source": str(path), "dataset_identity": identity,
                "decode_version": DECODE_VERSION, **({"decode_options": extra} if extra else {})}
        write_entry(entry, fill=fill, meta=meta, late_meta=listing)
    raise RuntimeError(f"decoded cache entry {entry} could not be read back after writing it")


def _read_decoded(entry: Path, name: str, identity: str, *, verify: bool) -> Dataset:
    """The dataset of a decoded entry; CorruptEntry when its arrays or class names do not fit together."""
    from clproto.storage import CorruptEntry, read_entry, read_meta

    arrays = read_entry(entry, verify=verify)
    try:
        meta = read_meta(entry)
        names = tuple(str(n) for n in meta["class_names"])
        members = meta.get("train_names")  # absent in entries decoded before clproto kept member names
        return Dataset(name, arrays["train_x"], arrays["train_y"], arrays["test_x"], arrays["test_y"], names, identity,
                       train_names=tuple(str(m) for m in members) if members is not None else None)
    except Exception as exc:  # no class_names, a missing array, labels beyond the names, ...
        raise CorruptEntry(f"{type(exc).__name__}: {exc}") from exc


# --------------------------------------------------------------------------- hashing
def hash_arrays(tag: str, *arrays: np.ndarray) -> str:
    h = hashlib.blake2b(tag.encode(), digest_size=20)
    for a in arrays:
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _iter_chunks(path: Path, size: int = 1 << 22) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def hash_path(path: Path, tag: str) -> str:
    """Content hash of a file; for a directory, of every file's relative path, size and bytes."""
    h = hashlib.blake2b(tag.encode(), digest_size=20)
    if path.is_file():
        for chunk in _iter_chunks(path):
            h.update(chunk)
    else:
        for dp, dns, fs in sorted(os.walk(path)):
            dns.sort()
            for f in sorted(fs):
                p = Path(dp) / f
                h.update(str(p.relative_to(path)).encode())
                for chunk in _iter_chunks(p):
                    h.update(chunk)
    return h.hexdigest()
