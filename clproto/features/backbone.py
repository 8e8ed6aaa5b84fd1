"""Backbones: uint8 images -> float32 feature vectors, each with its own preprocessing.

Backbone specs (the ``backbone`` field of a strategy definition, or ``clproto run --backbone``):

=====================================  ==========================================================
``pixels``                             flattened pixels scaled to [0, 1] (a sanity baseline)
``torchscript:PATH``                   a TorchScript module ``(N, 3, S, S)`` float RGB -> ``(N, D)``;
                                       PATH relative to the models root. Input side ``S`` from
                                       ``?size=S``, else from the file name's ``_<S>_`` part as in
                                       ``mobilenet_v1_0.5_160_imagenet.pt`` (TF-slim naming).
                                       Input in [0, 1], no mean/std unless ``?norm=imagenet``.
``torchvision:ARCH``                   a torchvision classifier with its ``DEFAULT`` weights enum,
``torchvision:ARCH:WEIGHTS``           or a named one (``IMAGENET1K_V1``), downloaded into
                                       ``<models root>/torchvision``; the final linear layer is
                                       dropped, so it returns penultimate features.
``torchvision:ARCH@PATH``              the same architecture with a local checkpoint (state dict,
                                       or a dict with ``state_dict``/``model``); PATH relative to
                                       the models root. Must match the architecture exactly.
``timm:NAME`` / ``timm:NAME@PATH``     a timm model (``pip install timm``), pretrained or local.
=====================================  ==========================================================

Options after ``?`` (``&``-separated) apply to every model kind: ``size=S`` (square input side,
or ``native`` to keep the image size), ``norm=none|imagenet`` (mean/std normalisation),
``batch=B`` (images per forward pass, default 8: on CPU smaller batches were faster and much
lighter than 64 — ``benchmarks/extract_batch_size.py``). Preprocessing: uint8 -> [0, 1], greyscale
repeated to 3 channels, bilinear resize to the model's input side, then the normalisation.

A backbone's ``identity`` hashes the weights file's *content* (not its path), the preprocessing
and :data:`FEATURE_VERSION`; the feature cache is keyed on it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from clproto.data.dataset import Dataset
from clproto.data.paths import models_root as default_models_root
from clproto.errors import ConfigError

FEATURE_VERSION = "1"  # bump when extraction changes numerically, to invalidate cached features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SPEC_HELP = ('"pixels", "torchscript:PATH", "torchvision:ARCH[:WEIGHTS]", "torchvision:ARCH@CHECKPOINT", '
             '"timm:NAME[@CHECKPOINT]", each optionally followed by ?size=S&norm=none|imagenet&batch=B')


@runtime_checkable
class Backbone(Protocol):
    spec: str  # as written by the user
    identity: str  # content hash of weights + preprocessing (cache key)

    def extract(self, images: np.ndarray, *, progress: bool = True, desc: str = "",
                out: np.ndarray | None = None) -> np.ndarray:
        """(N, H, W, C) uint8 -> (N, D) float32, written into ``out`` when given."""
        ...


def _hash(*parts: str) -> str:
    return hashlib.blake2b("|".join(parts).encode(), digest_size=20).hexdigest()


class PixelBackbone:
    """Flattened pixels in [0, 1]."""

    spec = "pixels"
    identity = _hash("pixels-v1")
    dim = None  # depends on the image size

    def extract(self, images: np.ndarray, *, progress: bool = True, desc: str = "",
                out: np.ndarray | None = None) -> np.ndarray:
        feats = images.reshape(len(images), -1).astype(np.float32) / 255.0  # (N, H*W*C)
        if out is None:
            return feats
        out[...] = feats
        return out


# --------------------------------------------------------------------------- preprocessing
@dataclass(frozen=True)
class Preprocess:
    """uint8 NHWC images -> the float NCHW batch a model expects."""

    size: int | None  # square input side; None keeps the images' own size
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # subtracted after scaling to [0, 1]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)  # divided by after the mean

    def describe(self) -> str:
        return f"rgb01|bilinear{self.size or 'native'}|mean{self.mean}|std{self.std}"

    def __call__(self, images: np.ndarray) -> torch.Tensor:
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise ConfigError("images must be (N, H, W, 1 or 3) uint8", field="backbone", value=images.shape)
        x = torch.from_numpy(np.array(images, copy=True)).permute(0, 3, 1, 2).float().div_(255.0)  # (B, C, H, W)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)  # greyscale -> (B, 3, H, W)
        if self.size is not None and tuple(x.shape[-2:]) != (self.size, self.size):
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)  # (B, 3, S, S)
        if self.mean != (0.0, 0.0, 0.0) or self.std != (1.0, 1.0, 1.0):
            mean = torch.tensor(self.mean).view(1, 3, 1, 1)
            std = torch.tensor(self.std).view(1, 3, 1, 1)
            x = (x - mean) / std
        # (B, 3, S, S) stored channels-last, as the permuted NHWC batch already is: oneDNN's fast CPU path
        # (a plain NCHW copy made MobileNet 1.37x slower here — benchmarks/cache_cold_warm.py)
        return x.contiguous(memory_format=torch.channels_last)


DEFAULT_BATCH = 8  # images per forward pass (spec option batch=B)


# --------------------------------------------------------------------------- torch backbones
class TorchBackbone:
    """A frozen ``torch.nn.Module`` (or TorchScript module) producing ``(N, D)`` features."""

    def __init__(self, *, spec: str, module: torch.nn.Module, preprocess: Preprocess, weights_hash: str,
                 batch_size: int = DEFAULT_BATCH, where: str | None = None) -> None:
        self.spec = spec
        self.module = module.eval()
        self.preprocess = preprocess
        self.batch_size = batch_size
        self.where = where
        self.identity = _hash("torch", weights_hash, preprocess.describe(), f"v{FEATURE_VERSION}")
        side = preprocess.size or 32
        self.dim = self._forward(np.zeros((2, side, side, 3), np.uint8)).shape[1]  # probe: validates N x D

    def _forward(self, images: np.ndarray) -> torch.Tensor:
        x = self.preprocess(images)  # (B, 3, S, S)
        try:
            with torch.inference_mode():
                f = self.module(x)
        except Exception as exc:  # a model that cannot take this input is a user error, not a crash
            raise ConfigError(f"the model failed on a batch of shape {tuple(x.shape)}: {exc}", where=self.where,
                              field="backbone", value=self.spec) from exc
        if not isinstance(f, torch.Tensor) or f.ndim != 2 or f.shape[0] != len(images):
            shape = tuple(f.shape) if isinstance(f, torch.Tensor) else type(f).__name__
            raise ConfigError(f"the model's output for {len(images)} images is {shape}", where=self.where,
                              field="backbone", value=self.spec, expected=f"a ({len(images)}, D) tensor of features")
        return f

    def extract(self, images: np.ndarray, *, progress: bool = True, desc: str = "",
                out: np.ndarray | None = None) -> np.ndarray:
        from clproto.progress import progress_bar

        n = len(images)
        if out is None:
            out = np.empty((n, self.dim), dtype=np.float32)  # (N, D)
        if out.shape != (n, self.dim):
            raise ValueError(f"output buffer is {out.shape}, expected {(n, self.dim)}")
        starts = range(0, n, self.batch_size)
        for s in progress_bar(starts, desc=desc or f"features {self.spec}", enabled=progress,
                              total=len(starts), unit="batch"):
            f = self._forward(images[s:s + self.batch_size])  # (B, D)
            if f.shape[1] != self.dim:
                raise ConfigError(f"the model returned {f.shape[1]} features, earlier batches {self.dim}",
                                  where=self.where, field="backbone", value=self.spec)
            out[s:s + len(f)] = f.float().numpy()
        return out


# --------------------------------------------------------------------------- spec parsing
def load_backbone(spec: str, *, models_root: str | os.PathLike | None = None, where: str | None = None) -> Backbone:
    """Resolve a backbone spec (see the module docstring); loaded models are reused within a process."""
    if not isinstance(spec, str) or not spec:
        raise ConfigError("backbone must be a non-empty string", where=where, field="backbone", value=spec,
                          expected=SPEC_HELP)
    if spec == "pixels":
        return PixelBackbone()
    root = default_models_root(models_root).resolve()
    base, _, query = spec.partition("?")
    kind, sep, rest = base.partition(":")
    if not sep or kind not in ("torchscript", "torchvision", "timm") or not rest:
        raise ConfigError("unknown backbone", where=where, field="backbone", value=spec, expected=SPEC_HELP)
    options = _options(query, spec, where)
    checkpoint = None
    if kind == "torchscript":
        checkpoint = _resolve_file(rest, root, spec, where)
    elif "@" in rest:
        rest, _, ckpt = rest.partition("@")
        checkpoint = _resolve_file(ckpt, root, spec, where)
    stamp = (checkpoint.stat().st_size, checkpoint.stat().st_mtime_ns) if checkpoint else None
    return _load(spec, kind, rest, str(checkpoint) if checkpoint else None, stamp, tuple(sorted(options.items())),
                 str(root), where)


def _options(query: str, spec: str, where: str | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        k, eq, v = item.partition("=")
        if not eq or k not in ("size", "norm", "batch"):
            raise ConfigError(f"unknown backbone option {item!r}", where=where, field="backbone", value=spec,
                              expected="size=S|native, norm=none|imagenet, batch=B")
        out[k] = v
    if "size" in out and out["size"] != "native" and not (out["size"].isdigit() and int(out["size"]) > 0):
        raise ConfigError("size must be a positive integer or 'native'", where=where, field="backbone", value=spec)
    if "batch" in out and not (out["batch"].isdigit() and int(out["batch"]) > 0):
        raise ConfigError("batch must be a positive integer", where=where, field="backbone", value=spec)
    if out.get("norm", "none") not in ("none", "imagenet"):
        raise ConfigError("norm must be 'none' or 'imagenet'", where=where, field="backbone", value=spec)
    return out


def _resolve_file(text: str, root: Path, spec: str, where: str | None) -> Path:
    path = Path(text).expanduser()
    if not path.is_absolute():
        path = root / path
    if not path.is_file():
        raise ConfigError(f"model file {str(path)!r} does not exist (models root: {str(root)!r}; set --models-root "
                          "or CLPROTO_MODELS)", where=where, field="backbone", value=spec)
    return path


@functools.lru_cache(maxsize=8)
def _file_hash(path: str, stamp: tuple[int, int]) -> str:
    h = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


def _preprocess(options: dict[str, str], *, size: int | None, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)) -> Preprocess:
    if "size" in options:
        size = None if options["size"] == "native" else int(options["size"])
    if options.get("norm") == "imagenet":
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif options.get("norm") == "none":
        mean, std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    return Preprocess(size=size, mean=tuple(float(m) for m in mean), std=tuple(float(s) for s in std))


@functools.lru_cache(maxsize=4)
def _load(spec: str, kind: str, rest: str, checkpoint: str | None, stamp, options: tuple, root: str,
          where: str | None) -> TorchBackbone:
    opts = dict(options)
    batch = int(opts.get("batch", DEFAULT_BATCH))
    if kind == "torchscript":
        module = _torchscript(Path(checkpoint), spec, where)
        size = None
        if "size" not in opts:
            m = re.search(r"_(\d{2,4})(?=[_.])", Path(checkpoint).name)
            if not m:
                raise ConfigError("cannot tell the model's input size from its file name", where=where,
                                  field="backbone", value=spec, expected="the spec with ?size=S (or ?size=native)")
            size = int(m.group(1))
        pre = _preprocess(opts, size=size)
        weights_hash = _file_hash(checkpoint, stamp)
    elif kind == "torchvision":
        module, pre, weights_hash = _torchvision(rest, checkpoint, stamp, opts, Path(root), spec, where)
    else:
        module, pre, weights_hash = _timm(rest, checkpoint, stamp, opts, spec, where)
    return TorchBackbone(spec=spec, module=module, preprocess=pre, weights_hash=weights_hash, batch_size=batch,
                         where=where)


def _torchscript(path: Path, spec: str, where: str | None) -> torch.nn.Module:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ConfigError(f"{str(path)!r} is not a loadable TorchScript file: {exc}", where=where, field="backbone",
                          value=spec) from exc


def _read_state_dict(path: str, spec: str, where: str | None) -> dict:
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ConfigError(f"cannot read checkpoint {path!r}: {exc}", where=where, field="backbone", value=spec) from exc
    for key in ("state_dict", "model"):
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ConfigError(f"checkpoint {path!r} holds no state dict of tensors", where=where, field="backbone",
                          value=spec)
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


def _torchvision(arch: str, checkpoint: str | None, stamp, opts: dict, root: Path, spec: str, where: str | None):
    import torchvision

    arch, _, weights_name = arch.partition(":")
    if arch not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError("unknown torchvision architecture", where=where, field="backbone", value=spec,
                          expected="a classification model of torchvision.models.list_models(), e.g. resnet18")
    enum = torchvision.models.get_model_weights(arch)
    try:
        weights = enum[weights_name] if weights_name else enum.DEFAULT
    except KeyError:
        raise ConfigError(f"{arch} has no weights {weights_name!r}", where=where, field="backbone", value=spec,
                          expected="one of " + ", ".join(["DEFAULT", *enum.__members__])) from None
    ref = weights.transforms()  # the preprocessing the weights were trained with
    crop = ref.crop_size[0] if isinstance(ref.crop_size, (list, tuple)) else ref.crop_size
    pre = _preprocess(opts, size=int(crop), mean=ref.mean, std=ref.std)
    model = torchvision.models.get_model(arch, weights=None)
    if checkpoint is not None:
        state = _read_state_dict(checkpoint, spec, where)
        weights_hash = _file_hash(checkpoint, stamp)
    else:
        try:
            state = weights.get_state_dict(progress=False, model_dir=str(root / "torchvision"), check_hash=True)
        except Exception as exc:
            raise ConfigError(f"cannot download {weights} into {str(root / 'torchvision')!r}: {exc}", where=where,
                              field="backbone", value=spec) from exc
        weights_hash = _hash("torchvision-url", weights.url)  # the url names the file's hash, checked above
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[1:2] or [str(exc)[:200]]
        raise ConfigError(f"the weights do not match architecture {arch}: {first[0].strip()}", where=where,
                          field="backbone", value=spec, expected=f"a state dict saved from torchvision {arch}") from exc
    return _drop_head(model), pre, weights_hash


def _timm(name: str, checkpoint: str | None, stamp, opts: dict, spec: str, where: str | None):
    try:
        import timm
    except ImportError:
        raise ConfigError("timm backbones need the timm package", where=where, field="backbone", value=spec,
                          expected="pip install timm (or another backbone kind)") from None
    if name not in timm.list_models():
        raise ConfigError("unknown timm model", where=where, field="backbone", value=spec,
                          expected="a name from timm.list_models()")
    try:
        if checkpoint is not None:
            model = timm.create_model(name, pretrained=False, num_classes=0)
            state = _read_state_dict(checkpoint, spec, where)
            missing, unexpected = model.load_state_dict(state, strict=False)
            unexpected = [k for k in unexpected if not k.startswith(("head", "fc", "classifier"))]
            if missing or unexpected:
                raise RuntimeError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")
            weights_hash = _file_hash(checkpoint, stamp)
        else:
            model = timm.create_model(name, pretrained=True, num_classes=0)
            weights_hash = _hash("timm-pretrained", name, str(getattr(model, "pretrained_cfg", {}).get("hf_hub_id")))
    except ConfigError:
        raise
    except Exception as exc:
        raise ConfigError(f"cannot build timm model {name}: {exc}", where=where, field="backbone", value=spec) from exc
    cfg = timm.data.resolve_model_data_config(model)
    pre = _preprocess(opts, size=int(cfg["input_size"][-1]), mean=cfg["mean"], std=cfg["std"])
    return model, pre, weights_hash


# --------------------------------------------------------------------------- datasets
def extract_dataset_features(backbone: Backbone, dataset: Dataset, *, progress: bool = True,
                             cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> tuple[Dataset, str]:
    """The dataset with its images replaced by backbone features, via the feature cache.

    Returns ``(dataset, note)``; the note says "hit" when both splits came from the cache and
    "miss" otherwise (the runner counts extraction time only on a miss).
    """
    from clproto.features.cache import cached_features

    if not use_cache:
        train = backbone.extract(dataset.train_x, progress=progress, desc=f"features {dataset.name} train")
        test = backbone.extract(dataset.test_x, progress=progress, desc=f"features {dataset.name} test")
        return dataset.with_inputs(train, test, suffix=f"[{backbone.spec}]"), "feature cache off: miss, computed"
    return cached_features(backbone, dataset, progress=progress, cache_dir=cache_dir)
