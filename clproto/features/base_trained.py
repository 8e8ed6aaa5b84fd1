"""The ``base-trained:`` backbone route: a network trained on a few-shot scenario's base session, then frozen.

Spec (the ``backbone`` field of a strategy definition)::

    base-trained:ARCH[,key=value,...]      e.g.  base-trained:resnet20
                                                 base-trained:resnet20,epochs=12,image_size=32

``ARCH`` is a :mod:`clproto.nets` architecture; each ``key=value`` sets a field of
:class:`~clproto.training.base_session.BaseTrainingConfig` (values parsed as TOML, so ``flip=false``,
``lr=0.05``). Unlike a pretrained backbone, this one depends on the scenario: it is trained on the
training samples of experience 0 (the base session) only, by
:func:`~clproto.training.base_session.train_base_session`, and never sees a later session's data.

Two caches make it cheap to reuse:

* the trained weights, in ``<cache root>/base-trained/<key>.pt`` keyed by (dataset identity,
  base-session training indices, training config including its own ``seed``). The training seed is
  *not* the run seed, so runs whose base session is the same (a fixed class order, varying shots)
  share one trained backbone; with a random class order each seed has its own base session and trains
  its own;
* the features of the whole dataset under the trained network (test transform), through the shared
  feature cache (:func:`clproto.features.backbone.extract_dataset_features`), keyed by the trained
  weights' content hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
import tomllib
from pathlib import Path

import numpy as np
import torch

from clproto.context import RunContext
from clproto.data.dataset import Dataset
from clproto.data.paths import cache_root as default_cache_root
from clproto.errors import ConfigError
from clproto.storage import write_text_atomic, write_torch_atomic
from clproto.features.backbone import extract_dataset_features
from clproto.scenarios.scenario import Scenario
from clproto.training.base_session import BaseTrainingConfig, TrainedBase, encode, train_base_session

PREFIX = "base-trained:"
FORMAT = "1"  # bump when training or the checkpoint layout changes, to invalidate cached backbones


def is_base_trained(spec: str) -> bool:
    return isinstance(spec, str) and spec.startswith(PREFIX)


def parse_spec(spec: str, *, where: str | None = None) -> BaseTrainingConfig:
    """``base-trained:resnet20,epochs=12`` -> BaseTrainingConfig(architecture="resnet20", epochs=12)."""
    from clproto.config import from_mapping  # field and type checks shared with every definition file

    body = spec[len(PREFIX):]
    arch, *pairs = [p.strip() for p in body.split(",")]
    expected = "base-trained:ARCH[,key=value,...] with keys " + ", ".join(
        f.name for f in dataclasses.fields(BaseTrainingConfig) if f.name != "architecture")
    options: dict = {"architecture": arch}
    for pair in pairs:
        key, eq, raw = pair.partition("=")
        key = key.strip()
        if not eq or key not in BaseTrainingConfig.__dataclass_fields__ or key == "architecture":
            raise ConfigError("malformed base-trained backbone option", where=where, field="backbone", value=spec,
                              expected=expected)
        try:
            options[key] = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            raise ConfigError(f"option {key!r} has an unreadable value", where=where, field="backbone", value=spec,
                              expected="a TOML number or boolean") from None
    try:
        return from_mapping(BaseTrainingConfig, options, where=where or "backbone")
    except ConfigError as exc:
        raise ConfigError(f"option {exc.field!r}: {exc.message}", where=where, field="backbone", value=spec,
                          expected=exc.expected) from None


class BaseTrainedBackbone:
    """A frozen base-trained network as a :class:`~clproto.features.backbone.Backbone`."""

    def __init__(self, *, spec: str, trained: TrainedBase) -> None:
        self.spec = spec
        self.trained = trained
        h = hashlib.blake2b(f"base-trained-v{FORMAT}".encode(), digest_size=20)
        h.update(json.dumps({"config": dataclasses.asdict(trained.config), "mean": trained.mean,
                             "std": trained.std}, sort_keys=True).encode())
        for name, t in sorted(trained.state_dict.items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        self.identity = h.hexdigest()  # content hash of weights + preprocessing
        self._net = trained.network()
        self.dim = self._net.feature_dim  # feature dimension

    def extract(self, images: np.ndarray, *, progress: bool = True, desc: str = "",
                out: np.ndarray | None = None) -> np.ndarray:
        feats = encode(self.trained, images, net=self._net, progress=progress, desc=desc)  # (N, D)
        if out is None:
            return feats
        out[...] = feats
        return out


def training_key(dataset: Dataset, train_indices: np.ndarray, config: BaseTrainingConfig) -> str:
    h = hashlib.blake2b(f"base-trained-v{FORMAT}".encode(), digest_size=16)
    h.update(dataset.identity.encode())
    h.update(np.asarray(train_indices, dtype=np.int64).tobytes())
    h.update(json.dumps(dataclasses.asdict(config), sort_keys=True).encode())
    return h.hexdigest()


def checkpoint_path(scenario: Scenario, config: BaseTrainingConfig, *, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the backbone trained on ``scenario``'s base session is cached (``.pt``; a ``.json`` training log beside it)."""
    key = training_key(scenario.dataset, scenario[0].train_indices, config)
    return default_cache_root(cache_dir) / "base-trained" / f"{config.architecture}-{key}.pt"


def check_sessions(scenario: Scenario, *, where: str | None = None) -> None:
    """Every class of every session must have training samples, and the base session must have classes."""
    if len(scenario) == 0 or len(scenario[0].classes) == 0:
        raise ConfigError("the base session has no classes", where=where, field="base_classes",
                          expected="a base session with at least one class")
    for exp in scenario:
        present = set(np.unique(scenario.dataset.train_y[exp.train_indices]).tolist())
        missing = [c for c in exp.classes if c not in present]
        if missing:
            raise ConfigError(f"session {exp.index} has classes without training samples (shots)", where=where,
                              field="shots", value=missing, expected="at least one training sample per class")


def load_or_train(scenario: Scenario, spec: str, *, cache_dir: str | os.PathLike | None = None,
                  progress: bool = True, where: str | None = None) -> tuple[BaseTrainedBackbone, str]:
    """The backbone trained on ``scenario``'s base session, from the cache or trained now (then cached)."""
    config = parse_spec(spec, where=where)
    check_sessions(scenario, where=where)
    if not scenario.dataset.is_images:
        raise ConfigError("a base-trained backbone needs an image dataset", where=where, field="backbone", value=spec)
    base = scenario[0]
    path = checkpoint_path(scenario, config, cache_dir=cache_dir)
    trained = _load(path)
    if trained is not None:
        note = f"base-trained backbone loaded from the cache ({path.name})"
    else:
        t0 = time.perf_counter()
        trained = train_base_session(scenario.dataset.train_x[base.train_indices],
                                     scenario.dataset.train_y[base.train_indices],
                                     config=config, context=RunContext(progress=progress), where=where)
        seconds = time.perf_counter() - t0
        state = dataclasses.asdict(trained)
        state["config"] = dataclasses.asdict(trained.config)
        write_torch_atomic(path, state)  # no temp file left, even on a full disk
        _write_log(path.with_suffix(".json"), trained, seconds, dataset=scenario.dataset, n_train=len(base.train_indices))
        note = f"base-trained backbone trained in {seconds:.0f} s ({path.name})"
    best = trained.best_val_accuracy
    note += f", best epoch {trained.best_epoch}" + (f" (val acc {best:.3f})" if best is not None else "")
    return BaseTrainedBackbone(spec=spec, trained=trained), note


def _load(path: Path) -> TrainedBase | None:
    """A cached trained backbone, or None when absent; an unreadable file is moved aside (and retrained)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never runs code from the file
        return TrainedBase(config=BaseTrainingConfig(**state["config"]), **{k: v for k, v in state.items() if k != "config"})
    except Exception:  # truncated or foreign file: keep it for inspection, train again
        os.replace(path, path.with_name(f"{path.name}.corrupt-{os.getpid()}"))
        return None


def _write_log(path: Path, trained: TrainedBase, seconds: float, *, dataset: Dataset, n_train: int) -> None:
    log = {"config": dataclasses.asdict(trained.config), "dataset": dataset.name, "dataset_identity": dataset.identity,
           "base_classes": trained.classes, "base_train_samples": n_train, "train_seconds": seconds,
           "best_epoch": trained.best_epoch, "best_val_accuracy": trained.best_val_accuracy, "history": trained.history}
    write_text_atomic(path, json.dumps(log, indent=1))


def base_trained_features(scenario: Scenario, spec: str, *, cache_dir: str | os.PathLike | None = None,
                          progress: bool = True, where: str | None = None,
                          memo: dict | None = None) -> tuple[Dataset, str, float]:
    """(features of the whole dataset under the base-trained backbone, a note for the run log, seconds spent).

    ``memo`` (optional, e.g. the runner's in-memory feature table) keeps results across calls in one process.
    """
    config = parse_spec(spec, where=where)
    check_sessions(scenario, where=where)
    key = ("base-trained", training_key(scenario.dataset, scenario[0].train_indices, config))
    if memo is not None and key in memo:
        return memo[key]
    t0 = time.perf_counter()
    backbone, note = load_or_train(scenario, spec, cache_dir=cache_dir, progress=progress, where=where)
    feats, feat_note = extract_dataset_features(backbone, scenario.dataset, progress=progress, cache_dir=cache_dir)
    out = (feats, f"{note}; {feat_note}", time.perf_counter() - t0)
    if memo is not None:
        memo[key] = out
    return out
