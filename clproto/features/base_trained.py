"""The ``base-trained`` backbone kind: a network trained on a few-shot scenario's base session, then frozen.

Table (``[strategy.backbone]``) and its shorthand::

    [strategy.backbone]                        backbone = "base-trained:resnet20,epochs=12,image_size=32"
    kind = "base-trained"
    architecture = "resnet20"
    epochs = 12
    image_size = 32

The fields are those of :class:`~clproto.training.base_session.BaseTrainingConfig` (``architecture`` is a
:mod:`clproto.nets` architecture, trained from scratch, or ``"torchscript:PATH"``: that pretrained TorchScript
network fine-tuned, :mod:`clproto.training.pretrained`)::

    [strategy.backbone]                        backbone = "base-trained:torchscript:mobilenet_v1_0.5_160_imagenet.pt,epochs=2,..."
    kind = "base-trained"
    architecture = "torchscript:mobilenet_v1_0.5_160_imagenet.pt"
    epochs = 2
    lr = 0.05              # the new cosine head's
    network_lr = 0.005     # the pretrained layers'
    image_size = 64

Unlike a pretrained backbone this kind ``needs_scenario``: it is
trained on the training samples of experience 0 (the base session) only, by
:func:`~clproto.training.base_session.train_base_session`, and never sees a later session's data.

Two caches make it cheap to reuse:

* the trained weights, in ``<cache root>/base-trained/<key>.pt`` keyed by (dataset identity,
  base-session training indices, training config including its own ``seed``; a fine-tuned network: also
  the content hash of its TorchScript file). The file holds a state dict, read weights-only; a
  fine-tuned network is rebuilt from its TorchScript file plus that state dict. The training seed is
  *not* the run seed, so runs whose base session is the same (a fixed class order, varying shots)
  share one trained backbone; with a random class order each seed has its own base session and trains
  its own;
* the features of the whole dataset under the trained network (test transform), through the shared
  feature cache, keyed by the trained weights' content hash (the runner's
  :class:`~clproto.features.store.FeatureStore` does that for every kind alike).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from typing import Optional
from pathlib import Path

import numpy as np
import torch

from clproto.context import RunContext
from clproto.devices import context_identity
from clproto.data.dataset import Dataset
from clproto.data.paths import cache_root as default_cache_root
from clproto.errors import ConfigError
from clproto.features.backbone.tables import BuildContext, Built
from clproto.features.backbone.shorthand import shorthand
from clproto.scenarios.scenario import Scenario
from clproto.storage import write_text_atomic, write_torch_atomic
from clproto.training.base_session import (BaseTrainingConfig, TrainedBase, config_identity, encode,
                                           train_base_session)
from clproto.training.pretrained import file_hash, file_label, is_pretrained, resolve

FORMAT = "1"  # bump when training or the checkpoint layout changes, to invalidate cached backbones


class BaseTrainedBackbone:
    """A frozen base-trained network as a :class:`~clproto.features.backbone.Backbone`."""

    def __init__(self, *, spec: str, trained: TrainedBase, models_root: str | os.PathLike | None = None,
                 where: str | None = None) -> None:
        self.spec = spec
        self.trained = trained
        h = hashlib.blake2b(f"base-trained-v{FORMAT}".encode(), digest_size=20)
        h.update(json.dumps({"config": config_identity(trained.config), "mean": trained.mean,
                             "std": trained.std}, sort_keys=True).encode())
        if trained.init_hash:  # a fine-tuned TorchScript network: its code is in the file, not in the weights
            h.update(f"init:{trained.init_hash}".encode())
        for name, t in sorted(trained.state_dict.items()):
            h.update(name.encode())
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
        self.identity = h.hexdigest()  # content hash of weights + preprocessing
        self._net = trained.network(models_root=models_root, where=where)
        self.dim = self._net.feature_dim  # feature dimension

    def extract(self, images: np.ndarray, *, progress: bool = True, desc: str = "",
                out: np.ndarray | None = None) -> np.ndarray:
        feats = encode(self.trained, images, net=self._net, progress=progress, desc=desc)  # (N, D)
        if out is None:
            return feats
        out[...] = feats
        return out


def training_key(dataset: Dataset, train_indices: np.ndarray, config: BaseTrainingConfig, *, init_hash: str = "",
                 compute: Optional[dict] = None) -> str:
    """The trained weights' cache key; ``init_hash``: the content hash of the TorchScript file fine-tuned, if any;
    ``compute``: :func:`clproto.devices.compute_identity` of the training context — None at cpu/fp32, so the keys
    of every backbone trained before devices existed are unchanged, and weights trained on a GPU or in bf16 are
    never served to a CPU/fp32 run."""
    h = hashlib.blake2b(f"base-trained-v{FORMAT}".encode(), digest_size=16)
    h.update(dataset.identity.encode())
    h.update(np.asarray(train_indices, dtype=np.int64).tobytes())
    h.update(json.dumps(config_identity(config), sort_keys=True).encode())
    if init_hash:
        h.update(f"init:{init_hash}".encode())
    if compute:
        h.update(f"compute:{json.dumps(compute, sort_keys=True)}".encode())
    return h.hexdigest()


def training_context(run: Optional[RunContext], *, progress: bool) -> RunContext:
    """The context base training runs in: the run's device, precision and determinism (CPU, fp32 without a run)."""
    if run is None:
        return RunContext(progress=progress)
    run = run.resolved()
    return RunContext(progress=progress, device=run.device, precision=run.precision, deterministic=run.deterministic)


def init_hash_of(config: BaseTrainingConfig, *, models_root: str | os.PathLike | None = None,
                 where: str | None = None) -> str:
    """The content hash of the TorchScript file a ``torchscript:`` architecture starts from; "" for a clproto.nets one."""
    if not is_pretrained(config.architecture):
        return ""
    return file_hash(resolve(config.architecture, models_root=models_root, where=where))


def checkpoint_path(scenario: Scenario, config: BaseTrainingConfig, *, cache_dir: str | os.PathLike | None = None,
                    models_root: str | os.PathLike | None = None, where: str | None = None,
                    run: Optional[RunContext] = None) -> Path:
    """Where the backbone trained on ``scenario``'s base session is cached (``.pt``; a ``.json`` training log beside
    it); ``run``: the run's context (its device and precision train the network; None: CPU, fp32)."""
    key = training_key(scenario.dataset, scenario[0].train_indices, config,
                       init_hash=init_hash_of(config, models_root=models_root, where=where),
                       compute=context_identity(training_context(run, progress=False)))
    label = file_label(config.architecture) if is_pretrained(config.architecture) else config.architecture
    return default_cache_root(cache_dir) / "base-trained" / f"{label}-{key}.pt"


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


def build_base_trained(config: BaseTrainingConfig, context: BuildContext) -> Built:
    """The kind's build: the backbone trained on the context's scenario (needs_scenario), cached or trained now."""
    if context.scenario is None:
        raise ConfigError("a base-trained backbone is trained on a scenario's base session: it needs the scenario",
                          where=context.where, field="backbone", value=shorthand(config),
                          expected="Runner.features(..., scenario=...) or clproto run")
    return load_or_train(context.scenario, config, cache_dir=context.cache_dir, models_root=context.models_root,
                         progress=context.progress, where=context.where, run=context.run)


def base_session_key(config: BaseTrainingConfig, scenario: Scenario, *, where: str | None = None) -> str:
    """What of ``scenario`` the trained backbone depends on: its dataset and base-session training samples."""
    check_sessions(scenario, where=where)
    return training_key(scenario.dataset, scenario[0].train_indices, config)


def load_or_train(scenario: Scenario, config: BaseTrainingConfig, *, cache_dir: str | os.PathLike | None = None,
                  models_root: str | os.PathLike | None = None, progress: bool = True,
                  where: str | None = None, run: Optional[RunContext] = None) -> Built:
    """The backbone trained on ``scenario``'s base session, from the cache or trained now (then cached) on the
    run's device and precision (``run``; None: CPU, fp32).

    A cached entry that cannot be read, or whose weights do not fit the network, is moved aside and trained again.
    """
    check_sessions(scenario, where=where)
    if not scenario.dataset.is_images:
        raise ConfigError("a base-trained backbone needs an image dataset", where=where, field="backbone",
                          value=shorthand(config))
    base = scenario[0]
    path = checkpoint_path(scenario, config, cache_dir=cache_dir, models_root=models_root, where=where, run=run)
    trained = _load(path)
    backbone = None
    if trained is not None:
        try:
            backbone = BaseTrainedBackbone(spec=shorthand(config), trained=trained, models_root=models_root, where=where)
        except (RuntimeError, KeyError, TypeError):  # weights that do not fit the network: a foreign or damaged entry
            _move_aside(path)
            trained = None
    computed = trained is None
    if not computed:
        note = f"base-trained backbone loaded from the cache ({path.name})"
    else:
        t0 = time.perf_counter()
        trained = train_base_session(base.train_rows,  # streamed from the store, batch by batch
                                     scenario.dataset.train_y[base.train_indices],
                                     config=config, context=training_context(run, progress=progress), models_root=models_root,
                                     where=where)
        seconds = time.perf_counter() - t0
        state = dataclasses.asdict(trained)
        state["config"] = dataclasses.asdict(trained.config)
        write_torch_atomic(path, state)  # no temp file left, even on a full disk
        _write_log(path.with_suffix(".json"), trained, seconds, dataset=scenario.dataset, n_train=len(base.train_indices))
        note = f"base-trained backbone trained in {seconds:.0f} s ({path.name})"
    best = trained.best_val_accuracy
    note += f", best epoch {trained.best_epoch}" + (f" (val acc {best:.3f})" if best is not None else "")
    if backbone is None:
        backbone = BaseTrainedBackbone(spec=shorthand(config), trained=trained, models_root=models_root, where=where)
    return Built(backbone=backbone, note=note, computed=computed)


def _load(path: Path) -> TrainedBase | None:
    """A cached trained backbone, or None when absent; an unreadable file is moved aside (and retrained)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never runs code from the file
        return TrainedBase(config=BaseTrainingConfig(**state["config"]), **{k: v for k, v in state.items() if k != "config"})
    except Exception:  # truncated or foreign file: keep it for inspection, train again
        _move_aside(path)
        return None


def _move_aside(path: Path) -> None:
    """Keep a damaged cache entry for inspection (``clproto cache ls`` lists it) and free its name."""
    os.replace(path, path.with_name(f"{path.name}.corrupt-{os.getpid()}"))


def _write_log(path: Path, trained: TrainedBase, seconds: float, *, dataset: Dataset, n_train: int) -> None:
    log = {"config": dataclasses.asdict(trained.config), "dataset": dataset.name, "dataset_identity": dataset.identity,
           "base_classes": trained.classes, "base_train_samples": n_train, "train_seconds": seconds,
           "best_epoch": trained.best_epoch, "best_val_accuracy": trained.best_val_accuracy, "history": trained.history}
    if trained.init_hash:
        log["init_hash"] = trained.init_hash  # the TorchScript file fine-tuned
    write_text_atomic(path, json.dumps(log, indent=1))
