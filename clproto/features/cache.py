"""The on-disk cache: decoded image arrays and backbone features, memory-mapped.

Layout under the cache root (``--cache-dir``, ``$CLPROTO_CACHE`` or ``~/.cache/clproto/cache``)::

    decoded/<dataset>-<key>/      meta.json + train_x.npy, train_y.npy, test_x.npy, test_y.npy
    features/<dataset>.<split>-<key>/   meta.json + features.npy    (N, D) float32
    base-trained/<arch>-<key>.pt  (+ .json training log)   written by clproto.features.base_trained

Each entry is a checksummed folder of ``.npy`` arrays plus ``meta.json`` (what its key was made of,
human-readable), written and read by :mod:`clproto.storage` (atomic publish, checksums, corrupt
entries moved aside and recomputed with a note, disk space reserved before memory-mapped writes).
Keys are content hashes:

* feature key = hash(backbone identity [weights file content + preprocessing], dataset identity
  [content hash of the zip/folder + decoder version], split, :data:`clproto.storage.CACHE_FORMAT`
  [, the precision when it is not fp32: bf16/fp16 features differ; fp32 keys are those of earlier versions]);
  the device is not part of it (fp32 on CUDA runs without TF32: :mod:`clproto.features.device`);
* decoded key = the dataset identity.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from clproto.context import RunContext
from clproto.data.dataset import Dataset
from clproto.data.paths import cache_root as default_cache_root
from clproto.errors import ConfigError
from clproto.features.device import extract_with, key_precision
from clproto.features.result import Extraction
from clproto.storage import (CACHE_FORMAT, META, CorruptEntry, discard_entry, note_corrupt, open_array, read_entry,
                             read_meta, write_entry)

KINDS = ("decoded", "features")


# --------------------------------------------------------------------------- features
def feature_key(backbone_identity: str, dataset_identity: str, split: str, precision: str = "") -> str:
    """The key of one split's features; ``precision`` ("" at fp32, else e.g. "bf16") joins it only when set,
    so every key written before precisions existed is unchanged."""
    text = f"features|{backbone_identity}|{dataset_identity}|{split}|v{CACHE_FORMAT}"
    if precision:
        text += f"|precision={precision}"
    return hashlib.blake2b(text.encode(), digest_size=20).hexdigest()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def feature_entry(cache: Path, backbone, dataset: Dataset, split: str, context: RunContext | None = None) -> Path:
    key = feature_key(backbone.identity, dataset.identity, split, key_precision(backbone, context))
    return cache / "features" / f"{_safe(dataset.name)}.{split}-{key[:24]}"


def _split_features(backbone, dataset: Dataset, split: str, cache: Path, *, progress: bool,
                    context: RunContext | None = None) -> tuple[np.ndarray, str]:
    """(features, "cached" | "computed" | "computed (corrupt entry recomputed)") for one split."""
    images = dataset.train_x if split == "train" else dataset.test_x
    entry = feature_entry(cache, backbone, dataset, split, context)
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
        extract_with(backbone, images, context=context, progress=progress, desc=f"features {dataset.name} {split}",
                     out=out)
        return {"features": out}

    precision = key_precision(backbone, context)
    meta = {"kind": "features", "dataset": dataset.name, "dataset_identity": dataset.identity, "split": split,
            "backbone": backbone.spec, "backbone_identity": backbone.identity,
            **({"precision": precision} if precision else {})}
    write_entry(entry, fill=fill, meta=meta)
    return read_entry(entry, verify=False)["features"], status


def cached_features(backbone, dataset: Dataset, *, progress: bool = True,
                    cache_dir: str | os.PathLike | None = None, context: RunContext | None = None) -> Extraction:
    """Features of both splits from the cache, computing (and storing) whatever is missing, on ``context``'s
    device and precision (None: CPU, fp32)."""
    cache = default_cache_root(cache_dir)
    t0 = time.perf_counter()
    train, s_train = _split_features(backbone, dataset, "train", cache, progress=progress, context=context)
    test, s_test = _split_features(backbone, dataset, "test", cache, progress=progress, context=context)
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
