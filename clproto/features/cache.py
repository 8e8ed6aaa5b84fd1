"""The on-disk cache: decoded image arrays and backbone features, memory-mapped.

Layout under the cache root (``--cache-dir``, ``$CLPROTO_CACHE`` or ``~/.cache/clproto/cache``)::

    decoded/<dataset>-<key>/      meta.json + train_x.npy, train_y.npy, test_x.npy, test_y.npy
    features/<dataset>.<split>-<key>/   meta.json + features.npy    (N, D) float32
    base-trained/<arch>-<key>.pt  (+ .json training log)   written by clproto.features.base_trained

An entry is a folder of ``.npy`` arrays plus ``meta.json`` holding what the key was made of
(human-readable), each array's shape, dtype and blake2b checksum. Keys are content hashes:

* feature key = hash(backbone identity [weights file content + preprocessing], dataset identity
  [content hash of the zip/folder + decoder version], split, :data:`CACHE_FORMAT`);
* decoded key = the dataset identity.

Writes go to a private temporary folder that is renamed into place in one ``os.rename``, so a
reader sees a whole entry or none, and two runs filling the same entry at once both succeed (the
second finds the first's entry and drops its own). A reader verifies the checksums; any entry it
cannot read (a missing ``meta.json`` or array, a damaged ``.npy`` header, a checksum or shape
mismatch) is corrupt: it is moved aside and recomputed, with a note, and a stale folder in the
way of a publish is replaced, so a damaged cache never blocks a run.

Arrays written through a memory map get their disk space reserved first (:func:`open_array`,
``posix_fallocate``): a full disk is then a :class:`ConfigError` naming the entry and the bytes
needed, instead of a SIGBUS in the middle of a write. Any failed write removes its temporary folder.
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import shutil
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from clproto.data.dataset import Dataset
from clproto.data.paths import cache_root as default_cache_root
from clproto.errors import ConfigError
from clproto.features.extraction import Extraction

CACHE_FORMAT = "1"  # bump when the entry layout changes
KINDS = ("decoded", "features")
META = "meta.json"


class CorruptEntry(Exception):
    """An entry whose files disagree with its meta.json (checksum, shape or missing file)."""


# --------------------------------------------------------------------------- entries
def checksum(array: np.ndarray, *, chunk: int = 1 << 24) -> str:
    """blake2b of an array's bytes, read in chunks (works on memory maps without copying them)."""
    h = hashlib.blake2b(digest_size=20)
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    for s in range(0, len(flat), chunk):
        h.update(flat[s:s + chunk].data)
    return h.hexdigest()


def read_entry(path: Path, *, verify: bool = True) -> dict[str, np.ndarray]:
    """The arrays of an entry, memory-mapped read-only.

    Raises FileNotFoundError when there is no entry folder, and CorruptEntry for any failure to
    read one that exists (whatever numpy, json or the file system raised).
    """
    if not path.exists():
        raise FileNotFoundError(path)
    if not path.is_dir():
        raise CorruptEntry("a file where the entry folder belongs")
    if not (path / META).is_file():
        raise CorruptEntry(f"{META} is missing")
    try:
        meta = json.loads((path / META).read_text())
        specs = meta["arrays"]
        items = list(specs.items())
    except Exception as exc:  # missing, not JSON, not UTF-8, no "arrays" table, ...
        raise CorruptEntry(f"unreadable {META}: {_reason(exc)}") from exc
    out = {}
    for name, spec in items:
        try:
            arr = np.load(path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            if list(arr.shape) != spec["shape"] or arr.dtype.str != spec["dtype"]:
                raise CorruptEntry(f"{name}.npy is {arr.shape} {arr.dtype.str}, {META} says {spec}")
            if verify and checksum(arr) != spec["blake2b"]:
                raise CorruptEntry(f"{name}.npy fails its checksum")
        except CorruptEntry:
            raise
        except Exception as exc:  # e.g. a damaged header: ValueError, SyntaxError, tokenize.TokenError
            raise CorruptEntry(f"cannot read {name}.npy: {_reason(exc)}") from exc
        out[name] = arr
    return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing"
    return f"{type(exc).__name__}: {exc}".splitlines()[0][:200]


def note_corrupt(what: str, path: Path, exc: CorruptEntry, action: str) -> None:
    """One line on stderr for a damaged entry that is being recomputed (a run never stops for it)."""
    print(f"clproto: note: {what} {str(path)!r} is corrupt ({exc}); {action}", file=sys.stderr)


def read_meta(path: Path) -> dict:
    return json.loads((path / META).read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_orphans(path: Path) -> list[Path]:
    """Delete the temporary / set-aside folders of entry ``path`` whose writing process is gone (a killed run)."""
    removed = []
    for kind in (".tmp-", ".trash-"):
        for folder in path.parent.glob(f"{kind}{path.name}-*"):
            pid = folder.name[len(kind) + len(path.name) + 1:].split("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
    return removed


def write_entry(path: Path, *, fill: Callable[[Path], dict[str, np.ndarray]], meta: dict,
                late_meta: dict | None = None) -> bool:
    """Create entry ``path`` atomically. ``fill(tmp)`` writes ``<name>.npy`` files into the private
    folder ``tmp`` (e.g. with :func:`open_array`) and returns them by name.

    ``late_meta`` is merged into meta.json after ``fill`` ran (for facts ``fill`` discovers).
    Returns False when another process created the entry first (ours is discarded). A folder at
    ``path`` that is not a readable entry (left by a crash or damaged) is replaced. On a full disk
    raises a :class:`ConfigError` naming ``path``; the temporary folder is removed on any failure.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(path)
    tmp = path.parent / f".tmp-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        arrays = fill(tmp)
        specs = {}
        for name, arr in arrays.items():
            if isinstance(arr, np.memmap):
                arr.flush()
            specs[name] = {"shape": list(arr.shape), "dtype": arr.dtype.str, "blake2b": checksum(arr)}
        del arrays
        full = {"format": CACHE_FORMAT, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                **meta, **(late_meta or {}), "arrays": specs}
        (tmp / META).write_text(json.dumps(full, indent=1, sort_keys=True))
        return _publish(tmp, path)
    except OSError as exc:
        written = _folder_bytes(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise disk_full(path, None, exc, written=written) from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _publish(tmp: Path, path: Path) -> bool:
    """Rename the finished ``tmp`` to ``path``. True if ours landed, False if another writer's
    readable entry was there first; a stale, unreadable folder in the way is discarded once."""
    for attempt in range(2):
        try:
            os.rename(tmp, path)  # atomic; fails (ENOTEMPTY/EEXIST) if a folder is already there
            return True
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
                raise
        try:
            read_entry(path, verify=False)
        except FileNotFoundError:
            continue  # discarded meanwhile: try again
        except CorruptEntry as exc:
            if attempt == 0:
                note_corrupt("cache entry", path, exc, "replacing it")
                discard_entry(path)
                continue
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    shutil.rmtree(tmp, ignore_errors=True)  # a second writer's entry replaced the stale one meanwhile
    return False


def _folder_bytes(folder: Path) -> int:
    try:
        return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    except OSError:
        return 0


def disk_full(path: Path, nbytes: int | None, exc: OSError, *, written: int = 0) -> ConfigError:
    """The error for a write that found the disk full (nothing of it is left behind): ``nbytes``
    needed when known, else more than the ``written`` bytes that fitted."""
    need = f"needs {_size(nbytes)}" if nbytes else f"needs more than the {_size(written)} that fitted"
    return ConfigError(f"the disk is full ({os.strerror(exc.errno)}): writing this cache entry {need}; "
                       "nothing was left behind", where=str(path),
                       expected="free disk space, or --cache-dir on a larger disk")


def _size(nbytes: int) -> str:
    return f"{nbytes} bytes" + (f" ({nbytes / 2**30:.2f} GiB)" if nbytes >= 2**30 else
                                f" ({nbytes / 2**20:.1f} MiB)" if nbytes >= 2**20 else "")


def open_array(path: Path, *, dtype, shape: tuple[int, ...], entry: Path | None = None) -> np.memmap:
    """A new ``.npy`` file of ``shape`` opened as a writable memory map, its disk space reserved first.

    Writing through a memory map into a sparse file raises SIGBUS (the process dies without a
    message) when the disk fills; reserving the blocks up front (``posix_fallocate``) turns a full
    disk into a :class:`ConfigError` naming ``entry`` (the entry being filled) and the bytes needed.
    """
    dtype = np.dtype(dtype)
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": tuple(shape)}
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        offset = fh.tell()
        try:
            _reserve(fh, offset + nbytes)
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise disk_full(entry or path, offset + nbytes, exc) from exc
            raise
    return np.memmap(path, dtype=dtype, mode="r+", offset=offset, shape=tuple(shape))


def _reserve(fh, size: int) -> None:
    """Allocate ``size`` bytes of disk for the open file ``fh`` (zeros where the system has no fallocate)."""
    if size <= 0:
        return
    fallocate = getattr(os, "posix_fallocate", None)
    if fallocate is not None:
        try:
            fallocate(fh.fileno(), 0, size)
            return
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
    fh.seek(0, os.SEEK_END)
    zeros = bytes(1 << 20)
    while (left := size - fh.tell()) > 0:
        fh.write(zeros[:left])
    fh.flush()
    os.fsync(fh.fileno())


def discard_entry(path: Path) -> None:
    """Remove an entry: renamed aside first, so no reader ever sees half of it."""
    aside = path.parent / f".trash-{path.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return
    if aside.is_dir():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


def save_arrays(folder: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Helper for ``fill``: write in-memory arrays as ``<name>.npy``."""
    for name, arr in arrays.items():
        np.save(folder / f"{name}.npy", np.ascontiguousarray(arr), allow_pickle=False)
    return {name: np.load(folder / f"{name}.npy", mmap_mode="r") for name in arrays}


# --------------------------------------------------------------------------- features
def feature_key(backbone_identity: str, dataset_identity: str, split: str) -> str:
    text = f"features|{backbone_identity}|{dataset_identity}|{split}|v{CACHE_FORMAT}"
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def feature_entry(cache: Path, backbone, dataset: Dataset, split: str) -> Path:
    key = feature_key(backbone.identity, dataset.identity, split)
    return cache / "features" / f"{_safe(dataset.name)}.{split}-{key[:24]}"


def _split_features(backbone, dataset: Dataset, split: str, cache: Path, *, progress: bool) -> tuple[np.ndarray, str]:
    """(features, "cached" | "computed" | "computed (corrupt entry recomputed)") for one split."""
    images = dataset.train_x if split == "train" else dataset.test_x
    entry = feature_entry(cache, backbone, dataset, split)
    status = "computed"
    try:
        feats = read_entry(entry).get("features")
        dim = getattr(backbone, "dim", None)
        if feats is None or feats.ndim != 2:
            raise CorruptEntry(f"{META} lists no (N, D) features array")
        if feats.shape[0] != len(images):
            raise CorruptEntry(f"{feats.shape[0]} rows for {len(images)} images")
        if dim is not None and feats.shape[1] != dim:
            raise ConfigError(
                f"feature cache entry {str(entry)!r} holds {feats.shape[1]}-dimensional features but backbone "
                f"{backbone.spec!r} produces {dim}; the entry is left as it is",
                field="backbone", value=backbone.spec,
                expected=f"remove it with `clproto cache clear --match {entry.name}`")
        return feats, "cached"
    except FileNotFoundError:
        pass
    except CorruptEntry as exc:
        note_corrupt("feature cache entry", entry, exc, "computing the features again")
        discard_entry(entry)
        status = "computed (corrupt entry recomputed)"

    def fill(tmp: Path) -> dict[str, np.ndarray]:
        dim = getattr(backbone, "dim", None)
        if dim is None:  # e.g. pixels: the dimension follows from the images
            dim = int(np.prod(images.shape[1:]))
        out = open_array(tmp / "features.npy", dtype=np.float32, shape=(len(images), dim),
                         entry=entry)  # (N, D), written batch by batch
        backbone.extract(images, progress=progress, desc=f"features {dataset.name} {split}", out=out)
        return {"features": out}

    meta = {"kind": "features", "dataset": dataset.name, "dataset_identity": dataset.identity, "split": split,
            "backbone": backbone.spec, "backbone_identity": backbone.identity}
    write_entry(entry, fill=fill, meta=meta)
    return read_entry(entry, verify=False)["features"], status


def cached_features(backbone, dataset: Dataset, *, progress: bool = True,
                    cache_dir: str | os.PathLike | None = None) -> Extraction:
    """Features of both splits from the cache, computing (and storing) whatever is missing."""
    cache = default_cache_root(cache_dir)
    t0 = time.perf_counter()
    train, s_train = _split_features(backbone, dataset, "train", cache, progress=progress)
    test, s_test = _split_features(backbone, dataset, "test", cache, progress=progress)
    seconds = time.perf_counter() - t0
    hit = s_train == s_test == "cached"
    if hit:
        note = f"feature cache hit ({cache / 'features'})"
    else:
        note = f"feature cache miss: train {s_train}, test {s_test}; {seconds:.1f}s"
    return Extraction(features=dataset.with_inputs(train, test, suffix=f"[{backbone.spec}]"), cache_hit=hit,
                      seconds=seconds, note=note)


# --------------------------------------------------------------------------- listing / clearing
BASE_TRAINED = "base-trained"  # <cache>/base-trained/<arch>-<key>.pt (+ .json training log): clproto.features.base_trained
LISTED_KINDS = KINDS + (BASE_TRAINED,)  # what `clproto cache ls` lists


@dataclass(frozen=True)
class EntryInfo:
    kind: str  # "decoded", "features" or "base-trained"
    path: Path  # the entry's folder (a base-trained entry: its .pt file)
    nbytes: int  # bytes on disk
    meta: dict  # meta.json, or a base-trained entry's training log (empty if unreadable)

    @property
    def description(self) -> str:
        m = self.meta
        if self.kind == BASE_TRAINED:
            if ".corrupt-" in self.path.name:
                return "unreadable checkpoint moved aside (retrained since)"
            config = m.get("config") or {}
            options = ",".join(f"{k}={v}" for k, v in sorted(config.items()) if k in ("epochs", "image_size", "seed"))
            best = m.get("best_val_accuracy")
            return (f"{m.get('dataset', '?')} base session ({len(m.get('base_classes') or [])} classes) "
                    f"[base-trained:{config.get('architecture', '?')}{',' + options if options else ''}]"
                    + (f" best val acc {best:.3f}" if isinstance(best, (int, float)) else ""))
        shapes = ", ".join(f"{k} {'x'.join(map(str, v['shape']))}" for k, v in m.get("arrays", {}).items()
                           if k in ("features", "train_x", "test_x"))
        if self.kind == "features":
            return f"{m.get('dataset', '?')} {m.get('split', '?')} [{m.get('backbone', '?')}] {shapes}"
        return f"{m.get('dataset', '?')} {shapes}"

    def matches(self, text: str) -> bool:
        """``--match``: TEXT in the entry's name or in its description (what ``clproto cache ls`` prints)."""
        return text in self.path.name or text in self.description


def _base_trained_entries(cache: Path) -> list[EntryInfo]:
    folder = cache / BASE_TRAINED
    out = []
    for p in sorted(folder.iterdir()) if folder.is_dir() else ():
        if p.name.startswith(".") or not p.is_file() or not (p.suffix == ".pt" or ".pt.corrupt-" in p.name):
            continue
        log = p.with_suffix(".json")
        try:
            meta = json.loads(log.read_text(encoding="utf-8")) if p.suffix == ".pt" else {}
        except (OSError, ValueError):
            meta = {}
        size = p.stat().st_size + (log.stat().st_size if p.suffix == ".pt" and log.is_file() else 0)
        out.append(EntryInfo(BASE_TRAINED, p, size, meta if isinstance(meta, dict) else {}))
    return out


def list_entries(cache_dir: str | os.PathLike | None = None) -> list[EntryInfo]:
    """Every entry of the cache: decoded datasets, features, base-trained backbones (in that order)."""
    cache = default_cache_root(cache_dir)
    out = []
    for kind in KINDS:
        folder = cache / kind
        if not folder.is_dir():
            continue
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or not p.is_dir():
                continue
            try:
                meta = read_meta(p)
            except (OSError, ValueError):
                meta = {}
            size = sum(f.stat().st_size for f in p.iterdir() if f.is_file())
            out.append(EntryInfo(kind, p, size, meta))
    return out + _base_trained_entries(cache)


def select_entries(entries: list[EntryInfo], *, kind: str | None = None, match: str | None = None) -> list[EntryInfo]:
    """The entries of ``kind`` whose name or description contains ``match`` (both optional)."""
    return [e for e in entries if (kind is None or e.kind == kind) and (match is None or e.matches(match))]


def clear_entries(cache_dir: str | os.PathLike | None = None, *, kind: str | None = None,
                  match: str | None = None) -> list[EntryInfo]:
    """Remove entries (of ``kind``, whose name or description contains ``match``); also stale temp folders."""
    removed = select_entries(list_entries(cache_dir), kind=kind, match=match)
    for e in removed:
        discard_entry(e.path)
        if e.kind == BASE_TRAINED and e.path.suffix == ".pt":
            e.path.with_suffix(".json").unlink(missing_ok=True)  # its training log
    if match is None:
        cache = default_cache_root(cache_dir)
        for k in KINDS if kind is None else [k for k in (kind,) if k in KINDS]:
            folder = cache / k
            for p in folder.glob(".t*-*") if folder.is_dir() else ():
                if time.time() - p.stat().st_mtime > 3600:  # an abandoned write (crashed run), not a live one
                    shutil.rmtree(p, ignore_errors=True)
    return removed
