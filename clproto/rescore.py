"""Re-scoring a kept model (:mod:`clproto.kept_models`) on the test sets of another scenario.

:func:`evaluate_kept` (``clproto evaluate RUN_DIR --scenario OTHER.toml``) rebuilds the strategy
from the run's ``config.json``, loads the state weights-only, builds the other scenario on the same
dataset (features: the run's own backbone; a base-trained backbone is the one trained on the run's
base session) and scores the test set of every experience of that scenario. Prediction is the
argmax over every class the model has seen (class-incremental protocol, not restricted to the
experience's classes); classes the model never saw score ``-inf``, so their test samples always
count as errors. Both the accuracy over all test samples and over those of seen classes are given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from clproto.errors import ConfigError
from clproto.kept_models import find_model, load_model, run_config
from clproto.runner import build_model
from clproto.storage import write_json_atomic


def evaluate_kept(folder: Path, scenario, *, runner, seeds: Optional[list[int]] = None,
                  model_name: Optional[str] = None, scenario_where: str = "--scenario") -> dict:
    """Score the kept model of ``folder`` on every experience of ``scenario`` (a ScenarioConfig), per seed."""
    from clproto.config import scenario_from_dict, strategy_from_dict

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
    path = output_path(folder, result["scenario"])
    write_json_atomic(path, result)
    return path

