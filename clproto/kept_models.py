"""Kept models: a strategy's state saved after a run, and re-scored on another scenario.

``--keep-model last`` writes ``model.pt`` after the final experience, ``--keep-model every``
writes ``model-exp<k>.pt`` after each experience ``k``. A model file is ``torch.save`` of a dict
of plain tensors, numbers, strings, lists and dicts only, so it loads with
``torch.load(..., weights_only=True)`` (no code runs, whoever made the file)::

    {"format": "clproto-model", "version": 1,
     "config": <the run's resolved configuration>, "config_hash": str,
     "experience": k, "classes_seen": [class ids learnt so far],
     "strategy": strategy.state_dict()}

:func:`evaluate_kept` (``clproto evaluate RUN_DIR --scenario OTHER.toml``) rebuilds the strategy
from the run's ``config.json``, loads the state weights-only, builds the other scenario on the same
dataset (features: the run's own backbone; a base-trained backbone is the one trained on the run's
base session) and scores the test set of every experience of that scenario. Prediction is the
argmax over every class the model has seen (class-incremental protocol, not restricted to the
experience's classes); classes the model never saw score ``-inf``, so their test samples always
count as errors. Both the accuracy over all test samples and over those of seen classes are given.
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
    from clproto.evaluation.results import write_atomic

    payload = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "config": config, "config_hash": config_hash,
               "experience": int(experience), "classes_seen": [int(c) for c in classes_seen],
               "strategy": model.state_dict()}
    write_atomic(path, lambda fh: torch.save(payload, fh))


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


# --------------------------------------------------------------------------- re-scoring
def evaluate_kept(folder: Path, scenario, *, runner, seeds: Optional[list[int]] = None,
                  model_name: Optional[str] = None, scenario_where: str = "--scenario") -> dict:
    """Score the kept model of ``folder`` on every experience of ``scenario`` (a ScenarioConfig), per seed."""
    from clproto.config import scenario_from_dict, strategy_from_dict
    from clproto.runner import build_model

    folder = Path(folder)
    config = run_config(folder)
    path = find_model(folder, model_name)
    payload = load_model(path)
    if config.get("config_hash") and payload["config_hash"] != config["config_hash"]:
        raise ConfigError("the model file was kept by another configuration than the run folder's config.json",
                          where=str(path), value=payload["config_hash"], expected=f"config hash {config['config_hash']}")
    where = str(folder / "config.json")
    original = scenario_from_dict(config["scenario"], where=where)
    if scenario.dataset != original.dataset:
        raise ConfigError("the scenario is on another dataset than the model was trained on", where=scenario_where,
                          field="dataset", value=scenario.dataset,
                          expected=f"{original.dataset!r} (class ids and inputs of another dataset mean nothing to the model)")
    strategy = strategy_from_dict(config["strategy"], runner.registry, where=where)
    entry = runner.registry.get(strategy.config.implementation, where=where)
    seen = sorted(payload["classes_seen"])
    out = {"run": str(folder), "model_file": path.name, "model_experience": payload["experience"],
           "model_classes_seen": seen, "strategy": strategy.name, "trained_on": original.name,
           "scenario": scenario.name, "scenario_config": _plain(scenario),
           "protocol": "argmax over every class the model saw; classes it never saw score -inf, so their test "
                       "samples count as errors (accuracy); accuracy_seen_classes counts only samples of seen classes",
           "seeds": {}}
    for seed in seeds if seeds else [int(config["seed"])]:
        sc = runner.scenario(scenario, seed=seed, where=scenario_where)
        if entry.cls.input_kind == "features":  # the run's own features (a base-trained backbone: its base session)
            base = runner.scenario(original, seed=int(config["seed"]), where=where)
            sc = sc.with_dataset(runner.features(base.dataset, strategy.backbone, where=where, scenario=base).features)
        model = build_model(entry, strategy, num_classes=sc.num_classes, seed=int(config["seed"]))
        try:
            model.load_state_dict(payload["strategy"])
        except Exception as exc:  # a state of another shape or strategy
            raise ConfigError(f"the kept state does not fit strategy {strategy.name!r} ({type(exc).__name__}: {exc})",
                              where=str(path)) from None
        out["seeds"][str(seed)] = score_scenario(model, sc, seen, batch_size=runner.eval_batch_size)
    return out


def score_scenario(model, scenario, classes_seen: list[int], *, batch_size: int = 1024) -> dict:
    """Per-experience and overall accuracy of ``model`` on ``scenario``'s test sets (see the module docstring)."""
    known = torch.zeros(scenario.num_classes, dtype=torch.bool)  # (C,)
    known[classes_seen] = True
    rows, correct_all, known_all = [], [], []
    data = scenario.dataset
    for e in scenario:
        idx = e.test_indices
        y = torch.from_numpy(data.test_y[idx]).long()  # (N,)
        preds = []
        for start in range(0, len(idx), batch_size):
            with torch.inference_mode():
                s = model.predict_scores(torch.from_numpy(data.test_x[idx[start:start + batch_size]])).float()  # (B, C)
            preds.append(s.masked_fill(~known, float("-inf")).argmax(dim=1))
        correct = torch.cat(preds) == y  # (N,)
        of_known = known[y]  # (N,) test samples of classes the model saw
        unseen = sorted(int(c) for c in e.classes if not known[c])
        rows.append({"experience": e.index, "classes": [int(c) for c in e.classes], "unseen_classes": unseen,
                     "test_samples": len(idx), "accuracy": float(correct.double().mean()),
                     "accuracy_seen_classes": float(correct[of_known].double().mean()) if of_known.any() else None})
        correct_all.append(correct)
        known_all.append(of_known)
    correct, of_known = torch.cat(correct_all), torch.cat(known_all)
    return {"experiences": rows, "accuracy": float(correct.double().mean()),
            "accuracy_seen_classes": float(correct[of_known].double().mean()) if of_known.any() else None,
            "test_samples": int(len(correct)), "test_samples_seen_classes": int(of_known.sum())}


def table(result: dict) -> str:
    """A plain-text table of :func:`evaluate_kept`'s result."""
    lines = [f"{result['strategy']} kept after experience {result['model_experience']} of {result['trained_on']} "
             f"({result['model_file']}; {len(result['model_classes_seen'])} classes seen), on {result['scenario']}:",
             "  unseen classes score -inf: their test samples count as errors in `accuracy`"]
    for seed, r in result["seeds"].items():
        lines.append(f"  seed {seed}:")
        lines.append(f"    {'exp':>4} {'classes':<24} {'test':>6} {'unseen':>7} {'accuracy':>9} {'acc(seen)':>10}")
        for e in r["experiences"]:
            cls = ",".join(map(str, e["classes"]))
            lines.append(f"    {e['experience']:>4} {cls[:24]:<24} {e['test_samples']:>6} {len(e['unseen_classes']):>7} "
                         f"{_pct(e['accuracy']):>9} {_pct(e['accuracy_seen_classes']):>10}")
        lines.append(f"    {'all':>4} {'':<24} {r['test_samples']:>6} {'':>7} {_pct(r['accuracy']):>9} "
                     f"{_pct(r['accuracy_seen_classes']):>10}")
    return "\n".join(lines)


def _pct(v: Optional[float]) -> str:
    return "-" if v is None else f"{100 * v:.2f}%"


def _plain(obj):
    from clproto.config import to_plain

    return to_plain(obj)


def output_path(folder: Path, scenario_name: str) -> Path:
    return Path(folder) / f"evaluate-{scenario_name}.json"


def write_result(folder: Path, result: dict) -> Path:
    from clproto.evaluation.results import write_json_atomic

    path = output_path(folder, result["scenario"])
    write_json_atomic(path, result)
    return path

