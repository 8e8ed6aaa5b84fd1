"""Dataset sources, chosen by the ``dataset`` string of a scenario definition.

=============================  =================================================================
``digits``                     scikit-learn's 8×8 digits (embedded, no download); a stratified
                               70/30 train/test split with a fixed seed (0) so it never changes.
``CIFAR10`` ``CIFAR100``       torchvision datasets, downloaded into ``<data root>/torchvision``
``MNIST`` ``FashionMNIST``     (real users have internet; nothing here downloads in tests).
``imagefolder:PATH``           ``train/<class>/*`` and ``test/<class>/*`` with an optional
                               ``classes.tsv`` (``<class id>\\t<names>``), as a directory or a
                               ``.zip`` read member by member without extracting.
``tinyimagenet:PATH``          the official Tiny-ImageNet layout (``train/<wnid>/images/*``,
                               ``val/val_annotations.txt``, ``words.txt``), directory or zip.
=============================  =================================================================

Relative paths are resolved against the data root. Image folders are decoded once, straight
into ``.npy`` files under ``<cache root>/decoded/<name>-<key>/`` (key: the zip's or folder's
content hash and :data:`DECODE_VERSION`; see :mod:`clproto.features.cache`), and memory-mapped
on every later load, so neither decoding nor loading holds a second copy of the images in RAM.
A member that is not a decodable image, a zip member whose bytes fail their CRC-32, a corrupt
zip and images of mixed sizes are :class:`ConfigError` naming the file and member; so is any other
layout than ``train/<class>/<image>`` + ``test/<class>/<image>`` (the error says what was found: a
``val/`` folder, an extra folder level, stray files), a class without test images, and a
``classes.tsv`` that is not UTF-8 or has a bad line (named by number). Operating-system litter
(``__MACOSX/``, ``._*``, ``.DS_Store``, ``Thumbs.db``) is ignored. The error names the scenario
definition (``where``); nothing is left in the cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Iterator

import numpy as np

from clproto.data.dataset import Dataset
from clproto.data.paths import cache_root as default_cache_root
from clproto.data.paths import data_root as default_data_root
from clproto.errors import ConfigError

TORCHVISION_DATASETS = ("CIFAR10", "CIFAR100", "MNIST", "FashionMNIST")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff", ".jpe")
DATASET_KINDS = {
    "digits": "scikit-learn 8x8 digits, embedded (10 classes, 1257 train / 540 test)",
    **{name: f"torchvision {name}, downloaded into <data root>/torchvision" for name in TORCHVISION_DATASETS},
    "imagefolder:PATH": "train/<class>/*, test/<class>/* (+ classes.tsv), directory or .zip",
    "tinyimagenet:PATH": "official Tiny-ImageNet layout (train/<wnid>/images, val/val_annotations.txt)",
}
DECODE_VERSION = "2"  # bump when the decoding below changes, to invalidate decoded caches


def load_dataset(
    spec: str,
    *,
    data_root: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
    where: str = "dataset",
    progress: bool = True,
) -> Dataset:
    """Load the dataset named by ``spec`` (see the module docstring)."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError("dataset must be a non-empty string", where=where, field="dataset", value=spec)
    root = default_data_root(data_root)
    if spec == "digits":
        return _digits()
    if spec in TORCHVISION_DATASETS or spec.lower() in {n.lower() for n in TORCHVISION_DATASETS}:
        name = next(n for n in TORCHVISION_DATASETS if n.lower() == spec.lower())
        return _torchvision(name, root, where)
    kind, sep, rest = spec.partition(":")
    if sep and kind in ("imagefolder", "tinyimagenet"):
        path = Path(rest).expanduser()
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
        reader = _read_imagefolder if kind == "imagefolder" else _read_tinyimagenet
        try:
            return _decoded_cached(kind, path, reader, default_cache_root(cache_dir), progress=progress)
        except ConfigError as exc:  # name the definition that asked for these data, like every other error
            if exc.where:
                raise
            raise ConfigError(exc.message, where=where, field=exc.field or "dataset", value=exc.value,
                              expected=exc.expected) from exc
    raise ConfigError(
        "unknown dataset",
        where=where,
        field="dataset",
        value=spec,
        expected="one of " + ", ".join(DATASET_KINDS),
    )


# --------------------------------------------------------------------------- digits
def _digits() -> Dataset:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=0.3, stratify=labels, random_state=0
    )
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    return Dataset(
        name="digits",
        train_x=images[idx_train],
        train_y=labels[idx_train],
        test_x=images[idx_test],
        test_y=labels[idx_test],
        class_names=tuple(str(i) for i in range(10)),
        identity=_hash_arrays("digits-v1", images, labels, idx_train),
    )


# --------------------------------------------------------------------------- torchvision
def _torchvision(name: str, root: Path, where: str) -> Dataset:
    import torchvision

    cls = getattr(torchvision.datasets, name)
    folder = root / "torchvision"
    try:
        train = cls(str(folder), train=True, download=True)
        test = cls(str(folder), train=False, download=True)
    except Exception as exc:  # network or file errors: say where we looked
        raise ConfigError(
            f"could not load or download torchvision {name} into {str(folder)!r}: {exc}",
            where=where,
            field="dataset",
            value=name,
        ) from exc

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
        identity=_hash_arrays(f"torchvision-{name}", train_x, train_y, test_x, test_y),
    )


# --------------------------------------------------------------------------- image folders
@dataclass
class _Listing:
    """Members of one split: (class id, reader key) pairs plus class names."""

    class_ids: list[str]
    class_names: dict[str, str]
    train: list[tuple[str, str]]
    test: list[tuple[str, str]]


class _Source:
    """A directory or a zip file, read uniformly by relative posix path.

    Operating-system litter (``__MACOSX/``, ``._*`` AppleDouble files, ``.DS_Store``, ``Thumbs.db``)
    is not part of the listing. Reading a zip member checks its CRC-32 against the zip's directory.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.prefix = ""
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ConfigError(f"{str(path)!r} is not a readable zip file: {exc}", field="dataset") from exc
            names = [n for n in self.zip.namelist() if not n.endswith("/") and not _is_litter(n)]
            # tolerate one top-level folder wrapping everything (e.g. tiny-imagenet-200/...)
            tops = {n.split("/", 1)[0] for n in names}
            if len(tops) == 1 and all("/" in n for n in names) and next(iter(tops)) not in ("train", "test", "val"):
                self.prefix = next(iter(tops)) + "/"
            self.files = sorted(n[len(self.prefix):] for n in names)
        else:
            base = path
            entries = [e for e in os.listdir(base) if not _is_litter(e)]
            if len(entries) == 1 and (base / entries[0]).is_dir() and entries[0] not in ("train", "test", "val"):
                base = base / entries[0]
            self.base = base
            self.files = sorted(
                name
                for dp, _, fs in os.walk(base)
                for f in fs
                if not _is_litter(name := str(PurePosixPath(Path(dp).relative_to(base)) / f))
            )
        self.fileset = set(self.files)

    def read(self, name: str) -> bytes:
        if self.zip is None:
            return (self.base / name).read_bytes()
        info = self.zip.getinfo(self.prefix + name)
        try:
            data = self.zip.read(info)  # zipfile compares the CRC-32 itself once it read the whole member
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
            problem = "fails its CRC-32 check" if "CRC" in str(exc) else f"cannot be read ({exc})"
            raise self._damaged(name, problem) from exc
        if zlib.crc32(data) != info.CRC:  # the same check, explicit: cheap (GB/s) next to decoding an image
            raise self._damaged(name, "fails its CRC-32 check")
        return data

    def _damaged(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"member {name!r} of {str(self.path)!r} {problem}: the zip is damaged", field="dataset",
                           expected="an intact zip (download or create it again)")

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


LITTER = ("__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini")  # files systems add beside the data


def _is_litter(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] in LITTER


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def _read_tsv(src: _Source, name: str) -> dict[str, str]:
    """``<id>\\t<names, comma separated>`` lines -> id: first name. Not UTF-8, a line without a
    tab or an id, and an id listed twice are ConfigErrors naming the file and the line."""
    out: dict[str, str] = {}
    if name not in src.fileset:
        return out
    where = f"{name} in {str(src.path)!r}"
    text = _read_text(src, name)
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        cid, tab, names = line.partition("\t")
        cid = cid.strip()
        if not tab or not cid:
            raise ConfigError(f"{where}, line {n}: not <class id><TAB><names>", field="dataset", value=line[:80],
                              expected="<class id>\\t<names, comma separated> on every line")
        if cid in out:
            raise ConfigError(f"{where}, line {n}: class id {cid!r} is listed a second time", field="dataset",
                              value=line[:80], expected="each class id on one line")
        out[cid] = names.split(",")[0].strip() or cid
    return out


def _read_text(src: _Source, name: str) -> str:
    raw = src.read(name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{name} in {str(src.path)!r} is not UTF-8 text (line {line}, byte {raw[exc.start]:#04x})",
                          field="dataset", expected="a UTF-8 text file") from exc


IMAGEFOLDER_LAYOUT = "train/<class>/<image> and test/<class>/<image> (plus an optional classes.tsv)"


def _read_imagefolder(src: _Source) -> _Listing:
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    stray: list[str] = []
    for f in src.files:
        parts = f.split("/")
        if parts[0] in ("train", "test"):
            if len(parts) == 3 and _is_image(f):
                (train if parts[0] == "train" else test).append((parts[1], f))
            else:
                stray.append(f)
    others = sorted({f.split("/")[0] + "/" for f in src.files if "/" in f and _is_image(f)} - {"train/", "test/"})
    if not train or not test or others:
        raise ConfigError(f"{str(src.path)!r} is not an image folder: {_layout_found(src, others)}",
                          field="dataset", expected=IMAGEFOLDER_LAYOUT)
    if stray:
        raise ConfigError(
            f"{str(src.path)!r} holds {len(stray)} file(s) that are not train/<class>/<image> or "
            f"test/<class>/<image>: " + ", ".join(repr(f) for f in stray[:3]) + (" ..." if len(stray) > 3 else ""),
            field="dataset", expected=IMAGEFOLDER_LAYOUT + " only")
    class_ids = sorted({c for c, _ in train})
    unknown = sorted({c for c, _ in test} - set(class_ids))
    if unknown:
        raise ConfigError(
            f"{str(src.path)!r}: test/ has classes with no training images: {unknown[:5]}",
            field="dataset",
        )
    untested = sorted(set(class_ids) - {c for c, _ in test})
    if untested:
        raise ConfigError(
            f"{str(src.path)!r}: class(es) {', '.join(untested[:5])}{' ...' if len(untested) > 5 else ''} have "
            f"training images but no test images (no test/{untested[0]}/)",
            field="dataset", expected="test images for every class")
    return _Listing(class_ids, _read_tsv(src, "classes.tsv"), train, test)


def _layout_found(src: _Source, others: list[str]) -> str:
    """Which layout ``src`` has instead of train/<class>/ + test/<class>/, in a few words."""
    images = [f for f in src.files if _is_image(f)]
    if not images:
        return "it holds no images"
    tops = sorted({f.split("/")[0] + "/" for f in images if "/" in f})
    found = []
    if "val/" in tops and "test/" not in tops:
        found.append("a val/ folder where test/ was expected")
    if others and not found:
        found.append("images in " + ", ".join(others[:3]) + " beside train/ and test/")
    deeper = [f for f in images if f.split("/")[0] in ("train", "test", "val") and len(f.split("/")) > 3]
    if deeper:
        found.append(f"an extra folder level, e.g. {deeper[0]!r}")
    flat = [f for f in images if f.split("/")[0] in ("train", "test", "val") and len(f.split("/")) == 2]
    if flat:
        found.append(f"images without a class folder, e.g. {flat[0]!r}")
    for split in ("train/", "test/"):
        if split not in tops and not (split == "test/" and "val/" in tops):
            found.append(f"no {split} folder")
    hint = (" - the official Tiny-ImageNet layout: use dataset = \"tinyimagenet:...\""
            if "val/val_annotations.txt" in src.fileset else "")
    return "found " + "; ".join(found) + f" (top-level folders with images: {', '.join(tops) or 'none'}){hint}"


def _read_tinyimagenet(src: _Source) -> _Listing:
    """train/<wnid>/images/*.JPEG for training; the labelled val/ split (val_annotations.txt) as test."""
    train = []
    for f in src.files:
        parts = f.split("/")
        if len(parts) == 4 and parts[0] == "train" and parts[2] == "images" and _is_image(f):
            train.append((parts[1], f))
    if "val/val_annotations.txt" not in src.fileset or not train:
        raise ConfigError(
            f"{str(src.path)!r} is not in the official Tiny-ImageNet layout",
            field="dataset",
            expected="train/<wnid>/images/*.JPEG and val/val_annotations.txt",
        )
    class_ids = sorted({c for c, _ in train})
    known = set(class_ids)
    test = []
    for n, line in enumerate(_read_text(src, "val/val_annotations.txt").splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or f"val/images/{fields[0]}" not in src.fileset:
            raise ConfigError(f"{str(src.path)!r}: val/val_annotations.txt line {n} names no image in val/images/",
                              field="dataset", value=line[:80], expected="<file>\\t<wnid>\\t... per line")
        if fields[1] in known:
            test.append((fields[1], f"val/images/{fields[0]}"))
    names = _read_tsv(src, "words.txt")
    return _Listing(class_ids, {c: names.get(c, c) for c in class_ids}, train, sorted(test))


def _decode_image(src: _Source, name: str) -> np.ndarray:
    from PIL import Image

    data = src.read(name)  # a damaged zip member is a ConfigError naming it (CRC-32)
    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)  # (H, W, 3); greyscale -> RGB
    except Exception as exc:
        reason = "not an image format PIL recognises" if type(exc).__name__ == "UnidentifiedImageError" else str(exc)
        raise ConfigError(f"cannot decode image member {name!r} of {str(src.path)!r}: {reason}",
                          field="dataset") from exc


def _decode_into(folder: Path, split: str, src: _Source, members: list[tuple[str, str]], label_of: dict[str, int],
                 progress: bool, entry: Path) -> dict[str, np.ndarray]:
    """Decode ``members`` straight into ``<folder>/<split>_x.npy`` (a memory map: no second copy in RAM)."""
    from clproto.progress import progress_bar

    from clproto.features.cache import open_array

    first = _decode_image(src, members[0][1])
    x = open_array(folder / f"{split}_x.npy", dtype=np.uint8, shape=(len(members), *first.shape),
                   entry=entry)  # (N, H, W, 3), disk space reserved before a byte is written
    y = np.array([label_of[cid] for cid, _ in members], dtype=np.int64)  # (N,)
    bar = progress_bar(range(len(members)), desc=f"decode {src.path.name} {split}", enabled=progress, unit="img")
    for i in bar:
        arr = first if i == 0 else _decode_image(src, members[i][1])
        if arr.shape != first.shape:
            raise ConfigError(
                f"image {members[i][1]!r} in {str(src.path)!r} is {arr.shape[1]}x{arr.shape[0]}, "
                f"others are {first.shape[1]}x{first.shape[0]}",
                field="dataset",
                expected="all images of one size",
            )
        x[i] = arr
    np.save(folder / f"{split}_y.npy", y, allow_pickle=False)
    return {f"{split}_x": x, f"{split}_y": np.load(folder / f"{split}_y.npy", mmap_mode="r")}


def _decoded_cached(
    kind: str,
    path: Path,
    reader: Callable[[_Source], _Listing],
    cache: Path,
    *,
    progress: bool,
) -> Dataset:
    """Decode an image folder once into ``<cache>/decoded/<name>-<key>/`` and memory-map it after."""
    from clproto.features.cache import CorruptEntry, discard_entry, note_corrupt, write_entry

    identity = _hash_path(path, f"{kind}-decode-v{DECODE_VERSION}")
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
            src = _Source(path)
            try:
                found = reader(src)
                label_of = {c: i for i, c in enumerate(found.class_ids)}
                listing["class_names"] = [found.class_names.get(c, c) for c in found.class_ids]
                listing["train_names"] = [member for _, member in found.train]  # sample order = listing order
                return {**_decode_into(tmp, "train", src, found.train, label_of, progress, entry),
                        **_decode_into(tmp, "test", src, found.test, label_of, progress, entry)}
            finally:
                src.close()

        meta = {"kind": "decoded", "dataset": path.stem, "source": str(path), "dataset_identity": identity,
                "decode_version": DECODE_VERSION}
        write_entry(entry, fill=fill, meta=meta, late_meta=listing)
    raise RuntimeError(f"decoded cache entry {entry} could not be read back after writing it")


def _read_decoded(entry: Path, name: str, identity: str, *, verify: bool) -> Dataset:
    """The dataset of a decoded entry; CorruptEntry when its arrays or class names do not fit together."""
    from clproto.features.cache import CorruptEntry, read_entry, read_meta

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
def _hash_arrays(tag: str, *arrays: np.ndarray) -> str:
    h = hashlib.blake2b(tag.encode(), digest_size=20)
    for a in arrays:
        h.update(str((a.shape, a.dtype.str)).encode())
        h.update(np.ascontiguousarray(a).data)
    return h.hexdigest()


def _iter_chunks(path: Path, size: int = 1 << 22) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk


def _hash_path(path: Path, tag: str) -> str:
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
