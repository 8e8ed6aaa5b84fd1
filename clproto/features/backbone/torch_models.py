"""Pretrained models as backbones: TorchScript files, torchvision and timm classifiers, local checkpoints.

Loads the table of a ``torchscript``, ``torchvision``, ``timm`` or ``checkpoint`` backbone
(:mod:`clproto.features.backbone.kinds`) into a frozen :class:`TorchBackbone`. Preprocessing: uint8 ->
[0, 1], greyscale repeated to 3 channels, bilinear resize to the model's input side, then its
normalisation (:mod:`clproto.features.backbone.preprocess`). A backbone's ``identity`` hashes the weights
file's *content* (not its path), the preprocessing and :data:`FEATURE_VERSION`; the feature cache is keyed
on it. Loaded models are reused within a process (a file's size and mtime are part of that key).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from clproto.context import RunContext
from clproto.data.paths import models_root as default_models_root
from clproto.errors import ConfigError
from clproto.features.backbone.base import FEATURE_VERSION, content_hash
from clproto.features.backbone.tables import CheckpointTable, ModelInput, TorchScriptTable, TorchvisionTable
from clproto.features.backbone.preprocess import Preprocess, preprocess_for
from clproto.features.backbone.shorthand import shorthand
from clproto.features.device import extract_on_device, plan_for


class TorchBackbone:
    """A frozen ``torch.nn.Module`` (or TorchScript module) producing ``(N, D)`` features."""

    def __init__(self, *, spec: str, module: torch.nn.Module, preprocess: Preprocess, weights_hash: str,
                 batch_size: int, where: str | None = None) -> None:
        self.spec = spec
        self.module = module.eval()
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.where = where
        self.identity = content_hash("torch", weights_hash, preprocess.describe(), f"v{FEATURE_VERSION}")
        side = preprocess.size or 32
        self.dim = self._forward(np.zeros((2, side, side, 3), np.uint8)).shape[1]  # probe: validates N x D

    def _forward(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W, C) uint8 numpy images -> (B, D) features, on the CPU (the probe of ``dim``)."""
        with torch.inference_mode():
            return self._model(self._module_on("cpu"), self.preprocess(images), len(images))  # (B, D)

    def _module_on(self, device: str) -> torch.nn.Module:
        """The module, moved to ``device`` if it is elsewhere (kept there: runs of a process share a device)."""
        if getattr(self, "_device", "cpu") != device:
            self.module.to(device)
            self._device = device
        return self.module

    def _model(self, module: torch.nn.Module, x: torch.Tensor, n: int) -> torch.Tensor:
        try:
            f = module(x)  # (B, D)
        except Exception as exc:  # a model that cannot take this input is a user error, not a crash
            raise ConfigError(f"the model failed on a batch of shape {tuple(x.shape)}: {exc}", where=self.where,
                              field="backbone", value=self.spec) from exc
        if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[0] != n:
            shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ConfigError(f"the model's output for {n} images is {shape}", where=self.where,
                              field="backbone", value=self.spec, expected=f"a ({n}, D) tensor of features")
        if hasattr(self, "dim") and f.shape[1] != self.dim:
            raise ConfigError(f"the model returned {f.shape[1]} features, earlier batches {self.dim}",
                              where=self.where, field="backbone", value=self.spec)
        return f

    def extract(self, images: np.ndarray, *, progress: bool = True, desc: str = "",
                out: np.ndarray | None = None, context: RunContext | None = None) -> np.ndarray:
        """(N, H, W, C) uint8 -> (N, D) float32 on the ``context``'s device and precision (None: CPU, fp32)."""
        n = len(images)
        if out is None:
            out = np.empty((n, self.dim), dtype=np.float32)  # (N, D)
        if out.shape != (n, self.dim):
            raise ValueError(f"output buffer is {out.shape}, expected {(n, self.dim)}")
        plan = plan_for(context, table_batch=self.batch_size)
        module = self._module_on(plan.device)
        with torch.inference_mode():
            return extract_on_device(self.preprocess.on_device, lambda x: self._model(module, x, len(x)), images,
                                     out, plan=plan, progress=progress, desc=desc or f"features {self.spec}")


# --------------------------------------------------------------------------- loading a table
def load_model(spec: ModelInput, *, models_root: str | os.PathLike | None = None,
               where: str | None = None) -> TorchBackbone:
    """The model of a ``torchscript`` / ``torchvision`` / ``timm`` / ``checkpoint`` table, loaded once per process."""
    root = default_models_root(models_root).resolve()
    label = shorthand(spec)
    path = getattr(spec, "path", None)  # torchscript and checkpoint tables name a file
    checkpoint = _resolve_file(path, root, label, where) if path is not None else None
    stamp = (checkpoint.stat().st_size, checkpoint.stat().st_mtime_ns) if checkpoint else None
    return _load(spec, str(checkpoint) if checkpoint else None, stamp, str(root), where)


def _resolve_file(text: str, root: Path, label: str, where: str | None) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise ConfigError(f"model file {str(path)!r} does not exist (models root: {str(root)!r}; set --models-root "
                          "or CLPROTO_MODELS)", where=where, field="backbone", value=label)
    return path


@functools.lru_cache(maxsize=8)
def _file_hash(path: str, stamp: tuple[int, int]) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


@functools.lru_cache(maxsize=4)
def _load(spec: ModelInput, checkpoint: str | None, stamp, root: str, where: str | None) -> TorchBackbone:
    label = shorthand(spec)
    if isinstance(spec, TorchScriptTable):
        module = _torchscript(Path(checkpoint), label, where)
        size = None
        if spec.size is None:
            m = re.search(r"_(\d{2,4})(?=[_.])", Path(checkpoint).name)
            if not m:
                raise ConfigError("cannot tell the model's input size from its file name", where=where,
                                  field="backbone", value=label, expected="size = S (or \"native\") in the table, "
                                  "or the shorthand with ?size=S")
            size = int(m.group(1))
        pre = preprocess_for(spec, size=size)
        weights_hash = _file_hash(checkpoint, stamp)
    elif isinstance(spec, TorchvisionTable) or getattr(spec, "library", None) == "torchvision":
        module, pre, weights_hash = _torchvision(spec, checkpoint, stamp, Path(root), label, where)
    else:
        module, pre, weights_hash = _timm(spec, checkpoint, stamp, label, where)
    return TorchBackbone(spec=label, module=module, preprocess=pre, weights_hash=weights_hash, batch_size=spec.batch,
                         where=where)


def _torchscript(path: Path, label: str, where: str | None) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ConfigError(f"{str(path)!r} is not a loadable TorchScript file: {exc}", where=where, field="backbone",
                          value=label) from exc


def _read_state_dict(path: str, label: str, where: str | None) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read checkpoint {path!r}: {exc}", where=where, field="backbone", value=label) from exc
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError(f"checkpoint {path!r} holds no state dict of tensors", where=where, field="backbone",
                          value=label)
    return {k.removeprefix("module."): v for k, v in sd.items()}


def _drop_head(model: torch.nn.Module) -> torch.nn.Module:
    """Replace the last ``nn.Linear`` (the classifier) by the identity: penultimate features."""
    last = None
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear):
            last = name
    if last is None:
        return model
    parent_name, _, child = last.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, torch.nn.Identity())
    return model


def _torchvision(spec: TorchvisionTable | CheckpointTable, checkpoint: str | None, stamp, root: Path, label: str,
                 where: str | None):
    import torchvision

    arch = spec.architecture
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError("unknown torchvision architecture", where=where, field="backbone.architecture", value=label,
                          expected="a classification model of torchvision.models.list_models(), e.g. resnet18")
    enum = torchvision.models.get_model_weights(arch)
    try:
        weights = enum[spec.weights]
    except KeyError:
        raise ConfigError(f"{arch} has no weights {spec.weights!r}", where=where, field="backbone.weights", value=label,
                          expected="one of " + ", ".join(dict.fromkeys(["DEFAULT", *enum.__members__]))) from None
    ref = weights.transforms()  # the preprocessing the weights were trained with
    crop = ref.crop_size[0] if isinstance(ref.crop_size, (list, tuple)) else ref.crop_size
    pre = preprocess_for(spec, size=int(crop), mean=ref.mean, std=ref.std)
    model = torchvision.models.get_model(arch, weights=None)
    if checkpoint is not None:
        state = _read_state_dict(checkpoint, label, where)
        weights_hash = _file_hash(checkpoint, stamp)
    else:
        try:
            state = weights.get_state_dict(progress=False, model_dir=str(root / "torchvision"), check_hash=True)
        except Exception as exc:
            raise ConfigError(f"cannot download {weights} into {str(root / 'torchvision')!r}: {exc}", where=where,
                              field="backbone", value=label) from exc
        weights_hash = content_hash("torchvision-url", weights.url)  # the url names the file's hash, checked above
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)[:200]]
        raise ConfigError(f"the weights do not match architecture {arch}: {first[0].strip()}", where=where,
                          field="backbone", value=label, expected=f"a state dict saved from torchvision {arch}") from exc
    return _drop_head(model), pre, weights_hash


def _timm(spec: ModelInput, checkpoint: str | None, stamp, label: str, where: str | None):
    name = spec.architecture
    try:
        import timm
    except ImportError:
        raise ConfigError("timm backbones need the timm package", where=where, field="backbone", value=label,
                          expected="pip install timm (or another backbone kind)") from None
    if not timm.is_model(name):  # a name of timm.list_models(), with or without a pretrained tag (".augreg_in21k")
        raise ConfigError("unknown timm model", where=where, field="backbone.architecture", value=label,
                          expected="a name from timm.list_models(), optionally with a pretrained tag "
                                   "(e.g. vit_base_patch16_224.augreg_in21k)")
    try:
        if checkpoint is not None:
            model = timm.create_model(name, pretrained=False, num_classes=0)
            state = _read_state_dict(checkpoint, label, where)
            missing, unexpected = model.load_state_dict(state, strict=False)
            unexpected = [k for k in unexpected if not k.startswith(("head", "fc", "classifier"))]
            if missing or unexpected:
                raise RuntimeError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
            weights_hash = _file_hash(checkpoint, stamp)
        else:
            model = timm.create_model(name, pretrained=True, num_classes=0)
            weights_hash = content_hash("timm-pretrained", name, str(getattr(model, "pretrained_cfg", {}).get("hf_hub_id")))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot build timm model {name}: {exc}", where=where, field="backbone", value=label) from exc
    cfg = timm.data.resolve_model_data_config(model)
    pre = preprocess_for(spec, size=int(cfg["input_size"][-1]), mean=cfg["mean"], std=cfg["std"])
    return model, pre, weights_hash


