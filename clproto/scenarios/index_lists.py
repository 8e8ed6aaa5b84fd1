"""Few-shot sessions fixed by published index lists (TOPIC, Tao et al. CVPR 2020; reused by CEC and TEEN).

A protocol is a folder of ``session_1.txt`` (the base session: every training image of the base
classes) and ``session_2.txt`` .. ``session_<N>.txt`` (each ``ways`` x ``shots`` images of new
classes), one entry per line; each file may also be gzipped (``session_<k>.txt.gz``). The
protocols shipped with clproto live in ``clproto/protocols/`` and are named by their folder, e.g.
``index_lists = "fscil-topic/cifar100"``; any other value is a folder path.

An entry names one *training* sample of the scenario's dataset:

* a non-negative integer is an index into the training set in the dataset's own order (for
  ``CIFAR100``: the python pickle order, which torchvision keeps);
* anything else is an image path, matched by its last two parts ``<class folder>/<file>``
  against the same two parts of each training sample's source name (``Dataset.train_names``, kept
  by the image kinds: ``imagefolder:``, ``miniimagenet:``, ``cub200:``, ...).
  ``MINI-ImageNet/train/n01532829/x.jpg`` therefore names ``train/n01532829/x.jpg`` of TOPIC's
  folders as well as CEC's ``images/x.jpg`` listed under n01532829;
  ``CUB_200_2011/images/001.Black_footed_Albatross/y.jpg`` names that image of ``cub200:``.

A session's classes are the labels of its listed images (in label order). The lists must agree with
the definition's ``base_classes``, ``ways``, ``shots`` and ``sessions``; the test set of every
session stays every test image of its classes (the protocol's), capped only by ``test_per_class``.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clproto.data.dataset import Dataset
from clproto.errors import ConfigError

PROTOCOLS_ROOT = Path(__file__).resolve().parents[1] / "protocols"  # the lists shipped with clproto
_SESSION = re.compile(r"^session_(\d+)\.txt(\.gz)?$")


@dataclass(frozen=True)
class SessionLists:
    """The entries of each session file of one protocol, in session order."""

    folder: Path
    files: tuple[Path, ...]  # session_1 .. session_N
    entries: tuple[tuple[str, ...], ...]  # per session: its lines, stripped, blank lines dropped


def shipped_protocols() -> list[str]:
    """Names usable as ``index_lists``: every folder under clproto/protocols holding session files."""
    return sorted(str(p.parent.relative_to(PROTOCOLS_ROOT)) for p in PROTOCOLS_ROOT.rglob("session_1.txt*"))


def read_session_lists(spec: str, *, where: str = "scenario") -> SessionLists:
    """Read the session files named by ``spec`` (a shipped protocol name or a folder)."""
    folder = PROTOCOLS_ROOT / spec if (PROTOCOLS_ROOT / spec).is_dir() else Path(spec).expanduser()
    if not folder.is_dir():
        raise ConfigError("no such index-list protocol or folder", where=where, field="index_lists", value=spec,
                          expected="one of " + ", ".join(shipped_protocols()) + ", or a folder of session_<k>.txt files")
    found: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        m = _SESSION.match(p.name)
        if m:
            k = int(m.group(1))
            if k in found:
                raise ConfigError(f"session {k} is listed twice: {found[k].name} and {p.name}", where=str(folder),
                                  field="index_lists", expected="one file per session")
            found[k] = p
    if not found or sorted(found) != list(range(1, len(found) + 1)):
        raise ConfigError(f"session files are not session_1 .. session_<N> (found sessions {sorted(found)})",
                          where=str(folder), field="index_lists", expected="session_1.txt, session_2.txt, ... without gaps")
    files = tuple(found[k] for k in sorted(found))
    return SessionLists(folder, files, tuple(_read_lines(p) for p in files))


def _read_lines(path: Path) -> tuple[str, ...]:
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        text = raw.decode("utf-8")
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read index file: {exc}", where=str(path), field="index_lists",
                          expected="UTF-8 text, one entry per line (optionally gzipped)") from exc
    return tuple(line.strip() for line in text.splitlines() if line.strip())


def sessions_from_lists(config, dataset: Dataset, *, where: str = "scenario") -> tuple[list[list[int]], list[np.ndarray]]:
    """The classes and training indices of every session, as the lists of ``config.index_lists`` fix them."""
    lists = read_session_lists(config.index_lists, where=where)
    lookup = _path_lookup(dataset, lists) if not all(_is_index(e) for es in lists.entries for e in es) else None
    n_sessions = config.sessions or len(lists.files) - 1
    if len(lists.files) - 1 != n_sessions:
        raise ConfigError(f"{lists.folder} holds {len(lists.files) - 1} few-shot sessions after the base one",
                          where=where, field="sessions", value=config.sessions, expected=f"{len(lists.files) - 1} (or 0)")
    owner: dict[int, str] = {}  # training index -> the file listing it (duplicates across files)
    groups, indices = [], []
    for k, (path, entries) in enumerate(zip(lists.files, lists.entries)):
        idx = _resolve(entries, path, dataset, lookup)
        for i, entry in zip(idx.tolist(), entries):
            if i in owner:
                raise ConfigError(f"entry {entry!r} names a training image listed before (in {owner[i]})",
                                  where=str(path), field="index_lists", expected="each image listed once")
            owner[i] = path.name
        labels = np.asarray(dataset.train_y)[idx]  # (n_k,)
        classes, counts = np.unique(labels, return_counts=True)
        seen = sorted(set(classes.tolist()) & {c for g in groups for c in g})
        if seen:
            raise ConfigError(f"session {k + 1} lists images of classes of an earlier session: "
                              f"{[dataset.class_names[c] for c in seen[:5]]}", where=str(path), field="index_lists")
        if k == 0 and len(classes) != config.base_classes:
            raise ConfigError(f"the base session lists images of {len(classes)} classes", where=str(path),
                              field="base_classes", value=config.base_classes, expected=str(len(classes)))
        if k > 0 and (len(classes) != config.ways or (counts != config.shots).any()):
            raise ConfigError(
                f"session {k + 1} lists {len(entries)} images of {len(classes)} classes "
                f"({', '.join(f'{dataset.class_names[c]}: {n}' for c, n in zip(classes[:6], counts[:6]))}"
                f"{' ...' if len(classes) > 6 else ''})", where=str(path), field="index_lists",
                expected=f"{config.ways} ways x {config.shots} shots: {config.ways} classes with {config.shots} images each")
        groups.append([int(c) for c in classes])
        indices.append(np.sort(idx))
    return groups, indices


def _is_index(entry: str) -> bool:
    return entry.isdigit()


def _key(name: str) -> str:
    """``<class folder>/<file>``: the last two parts of a path (what identifies an image across layouts)."""
    return "/".join(name.replace("\\", "/").split("/")[-2:])


def _path_lookup(dataset: Dataset, lists: SessionLists) -> dict[str, int]:
    if dataset.train_names is None:
        path, entry = next((p, e) for p, es in zip(lists.files, lists.entries) for e in es if not _is_index(e))
        raise ConfigError(
            f"entry {entry!r} is not a training-set index (a non-negative integer) but an image path, and dataset "
            f"{dataset.name!r} keeps no image names to find it by",
            where=str(path), field="index_lists",
            expected="an image dataset (imagefolder:, miniimagenet:, cub200:, ...); one decoded by an older clproto keeps no names: "
                     "`clproto cache clear --kind decoded` decodes it again on the next run")
    lookup: dict[str, int] = {}
    for i, name in enumerate(dataset.train_names):
        lookup.setdefault(_key(name), i)
    return lookup


def _resolve(entries: tuple[str, ...], path: Path, dataset: Dataset, lookup: dict[str, int] | None) -> np.ndarray:
    """Training indices of ``entries`` (n,); missing images and repeated entries are ConfigErrors naming ``path``."""
    n_train = len(dataset.train_y)
    out, missing = [], []
    for e in entries:
        if lookup is None:
            i = int(e)
            (out.append(i) if i < n_train else missing.append(e))
        elif _key(e) in lookup:
            out.append(lookup[_key(e)])
        else:
            missing.append(e)
    if missing:
        where = f"indices beyond its {n_train} training images" if lookup is None else "images it does not hold"
        raise ConfigError(f"{len(missing)} of {len(entries)} entries name {where} of dataset {dataset.name!r}: "
                          + ", ".join(repr(m) for m in missing[:3]) + (" ..." if len(missing) > 3 else ""),
                          where=str(path), field="index_lists",
                          expected="the dataset the lists were written for" + (
                              " (paths matched by <class folder>/<file>)" if lookup is not None else ""))
    idx = np.asarray(out, dtype=np.int64)  # (n,)
    uniq, counts = np.unique(idx, return_counts=True)
    if (counts > 1).any():
        dupes = uniq[counts > 1]
        names = [e for e, i in zip(entries, out) if i in set(dupes.tolist())]
        raise ConfigError(f"{len(dupes)} image(s) listed more than once: " + ", ".join(repr(d) for d in
                          list(dict.fromkeys(names))[:3]), where=str(path), field="index_lists",
                          expected="each image listed once")
    return idx
