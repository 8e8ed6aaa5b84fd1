"""TEEN (Wang et al., NeurIPS 2023): calibration against a hand-written reference, bad input, end to end on digits."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from clproto.config import load_scenario, load_strategy, strategy_from_dict
from clproto.errors import ConfigError
from clproto.features.base_trained import check_sessions
from clproto.runner import Runner
from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import Scenario, build_scenario
from clproto.strategies import REGISTRY
from clproto.strategies.teen import TEEN, TEENConfig, calibrate

ROOT = Path(__file__).resolve().parents[2]


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(a * a for a in v))
    return [a / n for a in v]


def _reference(novel: list[list[float]], base: list[list[float]], tau: float, alpha: float) -> list[list[float]]:
    """TEEN's soft calibration written out with plain Python floats."""
    base_n = [_unit(b) for b in base]
    out = []
    for p in novel:
        p = _unit(p)
        logits = [tau * sum(a * b for a, b in zip(p, bb)) for bb in base_n]
        m = max(logits)
        e = [math.exp(z - m) for z in logits]
        w = [v / sum(e) for v in e]
        delta = _unit([sum(w[k] * base_n[k][d] for k in range(len(base_n))) for d in range(len(p))])
        out.append([(1 - alpha) * a + alpha * b for a, b in zip(p, delta)])
    return out


NOVEL = [[1.0, 2.0, 0.5], [-0.3, 0.1, 2.0]]
BASE = [[2.0, 0.0, 0.0], [0.0, 3.0, 0.1], [0.5, 0.5, 0.5], [-1.0, 0.2, 0.0]]


@pytest.mark.parametrize("tau,alpha", [(16.0, 0.5), (4.0, 0.1), (64.0, 0.75), (1.0, 1.0)])
def test_calibrate_matches_hand_written_reference(tau, alpha):
    got = calibrate(torch.tensor(NOVEL, dtype=torch.float64), torch.tensor(BASE, dtype=torch.float64), tau=tau, alpha=alpha)
    want = torch.tensor(_reference(NOVEL, BASE, tau, alpha), dtype=torch.float64)
    assert got.shape == (2, 3)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_calibrate_limits():
    novel, base = torch.tensor(NOVEL, dtype=torch.float64), torch.tensor(BASE, dtype=torch.float64)
    unit_novel = novel / novel.norm(dim=1, keepdim=True)
    torch.testing.assert_close(calibrate(novel, base, tau=16.0, alpha=0.0), unit_novel)
    # alpha = 1: only the calibration term, a unit vector inside the span of the base prototypes
    delta = calibrate(novel, base, tau=16.0, alpha=1.0)
    torch.testing.assert_close(delta.norm(dim=1), torch.ones(2, dtype=torch.float64))
    assert not torch.allclose(delta, unit_novel)
    # tau -> 0: uniform weights, so the calibration term is the normalised plain mean of normalised base prototypes
    mean = (base / base.norm(dim=1, keepdim=True)).mean(0)
    torch.testing.assert_close(calibrate(novel, base, tau=1e-9, alpha=1.0), (mean / mean.norm()).expand(2, 3))
    # large tau: the nearest base prototype alone
    unit_base = base / base.norm(dim=1, keepdim=True)
    k = int((unit_novel[0] @ unit_base.T).argmax())
    torch.testing.assert_close(calibrate(novel[:1], base, tau=1e4, alpha=1.0)[0], unit_base[k])


@pytest.mark.parametrize("params,field", [({"tau": 0.0}, "tau"), ({"tau": -1.0}, "tau"), ({"alpha": 1.5}, "alpha"),
                                          ({"alpha": -0.1}, "alpha")])
def test_bad_tau_alpha_are_config_errors(params, field):
    with pytest.raises(ConfigError, match=field):
        strategy_from_dict({"name": "t", "implementation": "teen", "params": params}, REGISTRY, where="teen.toml")
    with pytest.raises(ConfigError, match=field):
        calibrate(torch.ones(1, 2), torch.ones(1, 2), tau=params.get("tau", 16.0), alpha=params.get("alpha", 0.5))


def _fscil(dataset, *, base: int = 2, ways: int = 2, shots: int = 3, seed: int = 0) -> Scenario:
    cfg = ScenarioConfig(name="fs", dataset="tiny", kind="few-shot", base_classes=base, ways=ways, shots=shots)
    return build_scenario(cfg, dataset, seed=seed)


def test_teen_strategy_calibrates_only_new_classes(tiny_dataset):
    feats = tiny_dataset.with_inputs(tiny_dataset.train_x.reshape(len(tiny_dataset.train_x), -1).astype(np.float32),
                                     tiny_dataset.test_x.reshape(len(tiny_dataset.test_x), -1).astype(np.float32))
    sc = _fscil(feats)
    plain = TEEN(config=TEENConfig(alpha=0.0), num_classes=sc.num_classes)
    teen = TEEN(config=TEENConfig(alpha=0.5, tau=16.0), num_classes=sc.num_classes)
    for exp in sc:
        plain.fit_experience(exp)
        teen.fit_experience(exp)
    base, new = list(sc[0].classes), [c for e in sc[1:] for c in e.classes]
    torch.testing.assert_close(teen.prototypes[base], plain.prototypes[base])
    want = calibrate(plain.prototypes[new], plain.prototypes[base], tau=16.0, alpha=0.5)
    torch.testing.assert_close(teen.prototypes[new], want)
    partial = TEEN(config=TEENConfig(alpha=0.5), num_classes=sc.num_classes)
    partial.fit_experience(sc[0])
    partial.fit_experience(sc[1])
    scores = partial.predict_scores(sc[1].test_x)  # (N, 6)
    unseen = [c for c in range(6) if c not in sc[1].seen_classes]
    assert scores.shape == (len(sc[1].test_x), sc.num_classes) and len(unseen) == 2
    assert torch.isinf(scores[:, unseen]).all() and torch.isfinite(scores[:, list(sc[1].seen_classes)]).all()


def test_session_without_shots_is_config_error_before_training(tiny_dataset, tmp_path):
    sc = _fscil(tiny_dataset)
    cls = sc[1].classes[0]
    keep = sc[1].train_indices[tiny_dataset.train_y[sc[1].train_indices] != cls]
    broken = Scenario(name="fs", kind="few-shot", dataset=tiny_dataset, class_order=sc.class_order,
                      experience_classes=[e.classes for e in sc],
                      train_indices=[sc[0].train_indices, keep, *[e.train_indices for e in sc[2:]]],
                      test_indices=[e.test_indices for e in sc], seed=0)
    with pytest.raises(ConfigError, match="shots"):
        Runner(progress=False, cache_dir=str(tmp_path)).features(
            tiny_dataset, "base-trained:resnet20,epochs=1,image_size=0", scenario=broken)
    assert not (tmp_path / "base-trained").exists()  # nothing was trained
    with pytest.raises(ConfigError, match="shots"):
        TEEN.check_scenario(broken, TEENConfig(), where="fs.toml")  # what Runner.check calls before any run
    with pytest.raises(ConfigError, match="shots"):
        TEEN(num_classes=6).fit_experience(broken[1])


def test_empty_base_session_is_config_error(tiny_dataset, tmp_path):
    empty = Scenario(name="fs", kind="few-shot", dataset=tiny_dataset, class_order=range(6),
                     experience_classes=[[], [0, 1]], train_indices=[np.empty(0, np.int64), np.arange(6)],
                     test_indices=[np.empty(0, np.int64), np.arange(4)], seed=0)
    with pytest.raises(ConfigError, match="base session"):
        check_sessions(empty)
    with pytest.raises(ConfigError, match="base_classes"):
        build_scenario(ScenarioConfig(name="fs", dataset="tiny", kind="few-shot", base_classes=0, ways=2, shots=2),
                       tiny_dataset, seed=0)


@pytest.mark.parametrize("spec,field", [("base-trained:resnet99", "architecture"), ("base-trained:resnet20,epochs=0", "epochs"),
                                        ("base-trained:resnet20,nope=1", "backbone"), ("base-trained:resnet20,lr=fast", "lr")])
def test_bad_base_trained_spec_is_config_error(spec, field):
    with pytest.raises(ConfigError, match=field) as err:  # when the definition is read, before any run
        strategy_from_dict({"name": "t", "implementation": "teen", "backbone": spec}, REGISTRY, where="t.toml")
    assert "t.toml" in str(err.value)


def test_end_to_end_fscil_digits(tmp_path):
    """Base-trained ResNet-20 on 4 digit classes, then 3 sessions of 2-way 5-shot: TEEN and its alpha = 0 baseline."""
    sc = dataclasses.replace(load_scenario(ROOT / "scenarios" / "fscil-digits.toml"), train_per_class=40)
    spec = "base-trained:resnet20,epochs=3,image_size=0,batch_size=32,lr=0.05"
    runner = Runner(progress=False, cache_dir=str(tmp_path / "cache"))
    results = {}
    for alpha in (0.0, 0.5):
        st = strategy_from_dict({"name": f"teen-{alpha}", "implementation": "teen", "backbone": spec,
                                 "params": {"alpha": alpha}}, REGISTRY)
        results[alpha] = runner.run(sc, st, seed=0, out_dir=tmp_path / "runs")
    a0, a5 = results[0.0], results[0.5]
    assert len(a0.seen_accuracy) == 4 and a0.kind == "few-shot"
    assert a0.seen_accuracy[0] == a5.seen_accuracy[0]  # the base session is never calibrated
    assert a0.seen_accuracy[0] > 0.5  # 4 base classes: chance is 0.25
    assert a5.metrics.novel_accuracy[0] is None and all(n is not None for n in a5.metrics.novel_accuracy[1:])
    assert (tmp_path / "runs" / "fscil-digits" / "teen-0.5" / "seed0" / "results.json").exists()
    assert len(list((tmp_path / "cache" / "base-trained").glob("*.pt"))) == 1  # one backbone serves both strategies
    # a fresh runner loads the trained backbone and the features from the disk caches: same numbers
    again = Runner(progress=False, cache_dir=str(tmp_path / "cache")).run(
        sc, strategy_from_dict({"name": "teen-0.5", "implementation": "teen", "backbone": spec,
                                "params": {"alpha": 0.5}}, REGISTRY), seed=0)
    assert again.seen_accuracy == a5.seen_accuracy
    assert any("loaded from the cache" in n for n in again.notes)


@pytest.mark.parametrize("name", ["teen", "protonet", "teen-resnet20", "protonet-resnet20"])
def test_strategy_definitions_load(name):
    st = load_strategy(ROOT / "strategies" / f"{name}.toml", REGISTRY)
    assert st.config.implementation == "teen"
    assert (st.params.alpha == 0.0) == name.startswith("protonet")


def test_backbone_cache_key_follows_base_session_and_config(tiny_dataset):
    from clproto.features.backbone import parse_backbone
    from clproto.features.base_trained import training_key

    cfg = parse_backbone("base-trained:resnet20,epochs=2,image_size=0")
    assert cfg.epochs == 2 and cfg.image_size == 0 and cfg.architecture == "resnet20"
    a = _fscil(tiny_dataset, seed=0)
    b = _fscil(tiny_dataset, seed=1)  # another random class order: another base session
    assert training_key(tiny_dataset, a[0].train_indices, cfg) == training_key(tiny_dataset, a[0].train_indices, cfg)
    assert training_key(tiny_dataset, a[0].train_indices, cfg) != training_key(tiny_dataset, b[0].train_indices, cfg)
    other = parse_backbone("base-trained:resnet20,epochs=3,image_size=0")
    assert training_key(tiny_dataset, a[0].train_indices, cfg) != training_key(tiny_dataset, a[0].train_indices, other)


def test_corrupt_backbone_checkpoint_is_retrained(tmp_path):
    from clproto.features.backbone import parse_backbone
    from clproto.features.base_trained import load_or_train

    sc = build_scenario(dataclasses.replace(load_scenario(ROOT / "scenarios" / "fscil-digits.toml"), train_per_class=20),
                        Runner(progress=False).dataset("digits"), seed=0)
    spec = parse_backbone("base-trained:resnet20,epochs=1,image_size=0")
    first = load_or_train(sc, spec, cache_dir=tmp_path, progress=False)
    assert "trained in" in first.note and first.computed
    (ckpt,) = (tmp_path / "base-trained").glob("*.pt")
    ckpt.write_bytes(b"not a checkpoint")
    again = load_or_train(sc, spec, cache_dir=tmp_path, progress=False)
    assert "trained in" in again.note and again.computed
    assert again.backbone.identity == first.backbone.identity  # deterministic retraining
    assert list((tmp_path / "base-trained").glob("*.corrupt-*"))
