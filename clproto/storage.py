"""The ground floor: whole-or-nothing files and the checksummed cache-entry store.

Everything in clproto that writes a file it cares about goes through here, so a reader (or a
process killed mid-write, even with ``kill -9``) only ever sees the old file or the whole new one:

* :func:`write_atomic` (and :func:`write_text_atomic`, :func:`write_json_atomic`,
  :func:`write_torch_atomic`): a temporary file in the target's folder, fsync, ``os.replace``;
* an *entry* (:func:`write_entry`, :func:`read_entry`): a folder of ``.npy`` arrays plus
  ``meta.json`` holding what the entry was made of, each array's shape, dtype and blake2b
  checksum. It is filled in a private temporary folder that is renamed into place in one
  ``os.rename``, so a reader sees a whole entry or none, and two processes filling the same
  entry at once both succeed (the second finds the first's entry and drops its own). A reader
  verifies the checksums; an entry it cannot read (a missing ``meta.json`` or array, a damaged
  ``.npy`` header, a checksum or shape mismatch) raises :class:`CorruptEntry`, and a stale
  folder in the way of a publish is replaced, so a damaged entry never blocks a run.

Arrays written through a memory map get their disk space reserved first (:func:`open_array`,
``posix_fallocate``): a full disk is then a :class:`ConfigError` naming the entry and the bytes
needed, instead of a SIGBUS in the middle of a write. Any failed write removes its temporary file
or folder. What the entries hold and where they live is the business of their users
(:mod:`clproto.features.cache`, :mod:`clproto.data.kinds.decoded`). This module imports nothing else
from clproto but the error type and the leaf :mod:`clproto.pages` (memory-mapped pages released as a
checksum streams over them).
"""

from __future__ import annotations

import datetime as _dt
import errno
import hashlib
import json
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, BinaryIO, Callable

import numpy as np

from clproto.errors import ConfigError
from clproto.pages import release_bytes

CACHE_FORMAT = "1"  # bump when the entry layout changes (it is part of every feature key too)
META = "meta.json"


# --------------------------------------------------------------------------- atomic files
def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None], *, nbytes: int | None = None) -> None:
    """Call ``write(fh)`` on a temporary file in ``path``'s folder, fsync, then rename it over ``path``:
    a reader (or a killed writer) only ever sees the old file or the whole new one.

    Any failure removes the temporary file. A full disk (or quota) is a :class:`ConfigError`
    naming ``path`` and, when given, the ``nbytes`` it needed; so is a folder that cannot be written.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            need = f"; writing it needs {nbytes} bytes" if nbytes is not None else ""
            raise ConfigError(f"the disk is full ({os.strerror(exc.errno)}){need}; nothing was written",
                              where=str(path), expected="free disk space, or --out on a larger disk") from exc
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR):
            raise ConfigError(f"cannot write here ({os.strerror(exc.errno)})", where=str(path),
                              expected="a writable folder for --out") from exc
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) atomically with :func:`write_atomic`."""
    data = text.encode("utf-8")
    write_atomic(path, lambda fh: fh.write(data), nbytes=len(data))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """JSON (indent 1, no NaN) written by :func:`write_text_atomic`."""
    write_text_atomic(path, json.dumps(obj, indent=1, allow_nan=False) + "\n")


def write_torch_atomic(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save(obj)`` written by :func:`write_atomic` (checkpoints, kept models, trained backbones)."""
    import torch

    write_atomic(path, lambda fh: torch.save(obj, fh))


# --------------------------------------------------------------------------- checksummed entries
class CorruptEntry(Exception):
    """An entry whose files disagree with its meta.json (checksum, shape or missing file)."""


def checksum(array: np.ndarray, *, chunk: int = 1 << 24) -> str:
    """blake2b of an array's bytes, read in chunks (works on memory maps without copying them)."""
    h = hashlib.blake2b(digest_size=20)
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    for s in range(0, len(flat), chunk):
        h.update(flat[s:s + chunk].data)
        release_bytes(array, s, s + chunk)  # a memory map's pages leave the resident set as they are hashed
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
