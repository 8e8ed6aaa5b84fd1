"""Kept models: a strategy's state saved after a run, found and loaded weights-only.

``--keep-model last`` writes ``model.pt`` after the final experience, ``--keep-model every``
writes ``model-exp<k>.pt`` after each experience ``k``. A model file is ``torch.save`` of a dict
of plain tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(..., weights_only=True)`` (no code runs, whoever made the file)::

    {"format": "clproto-model", "version": 1,
     "config": <the run's resolved configuration>, "config_hash": str,
     "experience": k, "classes_seen": [class ids learnt so far],
     "strategy": strategy.state_dict()}

Re-scoring a kept model on another scenario (``clproto evaluate``): :mod:`clproto.rescore`.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Optional

import torch

from clproto.errors import ConfigError

KEEP_MODEL = (None, "last", "every")  # values of --keep-model (None: keep nothing)
MODEL_FORMAT = "clproto-model"
MODEL_VERSION = 1
LAST = "model.pt"
_EVERY = re.compile(r"^model-exp(\d+)\.pt$")


# --------------------------------------------------------------------------- saving and finding
def save_model(path: Path, model, *, config: dict, config_hash: str, experience: int, classes_seen: list[int]) -> None:
    """Write a model file atomically (temporary file + rename)."""
    from clproto.storage import write_torch_atomic

    payload = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "config": config, "config_hash": config_hash,
               "experience": int(experience), "classes_seen": [int(c) for c in classes_seen],
               "strategy": model.state_dict()}
    write_torch_atomic(path, payload)


def model_files(folder: Path) -> list[Path]:
    """The kept model files of a run folder: ``model.pt`` and ``model-exp<k>.pt`` in experience order."""
    if not folder.is_dir():
        return []
    every = sorted((p for p in folder.iterdir() if _EVERY.match(p.name)), key=lambda p: int(_EVERY.match(p.name)[1]))
    return ([folder / LAST] if (folder / LAST).is_file() else []) + every


def find_model(folder: Path, name: Optional[str] = None) -> Path:
    """``name`` (a file in the run folder, or a path), else ``model.pt``, else the last ``model-exp<k>.pt``."""
    if name is not None:
        path = Path(name) if Path(name).is_absolute() or Path(name).exists() else folder / name
        if not path.is_file():
            raise ConfigError("no such model file", where="--model", value=name,
                              expected="one of: " + (", ".join(p.name for p in model_files(folder)) or "(none kept)"))
        return path
    files = model_files(folder)
    if not files:
        raise ConfigError("the run folder holds no kept model (model.pt or model-exp<k>.pt)", where=str(folder),
                          expected="a run made with --keep-model last (or every): re-run it with --keep-model "
                                   "into a new --out (a finished run is skipped, not re-run)")
    return files[0] if files[0].name == LAST else files[-1]


def load_model(path: Path) -> dict:
    """A model file loaded weights-only; anything else (damaged, foreign, a pickle of code) is a ConfigError."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, not a torch file, or objects weights-only loading refuses
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ConfigError(f"damaged or not a clproto model file ({type(exc).__name__}: {reason}); nothing in it was run",
                          where=str(path), expected="a model.pt / model-exp<k>.pt written by --keep-model") from None
    keys = {"format", "version", "config", "config_hash", "experience", "classes_seen", "strategy"}
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT or not keys <= set(payload):
        raise ConfigError("not a clproto model file", where=str(path),
                          expected="a model.pt / model-exp<k>.pt written by --keep-model")
    if payload["version"] != MODEL_VERSION:
        raise ConfigError("model file of an unknown version", where=str(path), value=payload["version"],
                          expected=f"version {MODEL_VERSION}")
    return payload


def run_config(folder: Path) -> dict:
    """The resolved configuration of a run folder (``config.json``, else the ``config`` of ``results.json``)."""
    if not folder.is_dir():
        raise ConfigError("no such run folder", where=str(folder), expected="<out>/<scenario>/<strategy>/seed<k>")
    for name in ("config.json", "results.json"):
        path = folder / name
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, OSError) as exc:
                raise ConfigError(f"unreadable run file ({exc})", where=str(path)) from None
            config = data.get("config", data) if name == "results.json" else data
            if not isinstance(config, dict) or not {"scenario", "strategy", "seed"} <= set(config):
                raise ConfigError("not a clproto run file (no scenario/strategy/seed)", where=str(path))
            return {**config, "config_hash": data.get("config_hash")}
    raise ConfigError("not a run folder (no config.json or results.json)", where=str(folder),
                      expected="<out>/<scenario>/<strategy>/seed<k> of a clproto run")
