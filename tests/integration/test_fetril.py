"""FeTrIL (Petit et al., WACV 2023): the accuracy matrix against a NumPy re-derivation of the pseudo-features
(scikit-learn called on the same inputs), few-shot, a one-class step, checkpoints and bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import runner_on
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from clproto.config import load_strategy, strategy_from_dict
from clproto.errors import ConfigError
from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import build_scenario
from clproto.strategies import REGISTRY
from clproto.strategies.fetril import FeTrIL, FeTrILConfig

ROOT = Path(__file__).resolve().parents[2]
CI = ScenarioConfig(name="tiny-ci", dataset="tiny", increment=2)
FS = ScenarioConfig(name="tiny-fs", dataset="tiny", kind="few-shot", base_classes=2, ways=2, shots=3)
ONE_FIRST = ScenarioConfig(name="tiny-1", dataset="tiny", increments=[1, 1, 2, 2])  # a first step with one class


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _strategy(**params):
    return strategy_from_dict({"name": "fetril", "implementation": "fetril", "backbone": "pixels", "params": params},
                              REGISTRY)


def _unit(a: np.ndarray) -> np.ndarray:
    return a / np.linalg.norm(a, axis=1, keepdims=True)


def reference(feats, scenario, *, classifier: str, source: str, seed: int) -> tuple[list, list[dict[int, np.ndarray]]]:
    """FeTrIL from the paper: for each past class c, f̂ = f_n − μ_n + μ_c over the features of the new class n
    nearest to μ_c (or a random one, drawn as documented); a linear classifier on the L2-normalised real +
    pseudo features; prediction = argmax over the seen classes of the decision function.

    Returns the accuracy matrix and, after each step, {class: its score on every test sample}.
    """
    X, Y = np.asarray(feats.train_x, dtype=np.float64), feats.train_y
    Xt, Yt = _unit(np.asarray(feats.test_x, dtype=np.float64)), feats.test_y
    mu = {}
    matrix, scores = [], []
    for e in scenario:
        Xn, yn = X[e.train_indices], Y[e.train_indices]
        new = list(e.classes)
        past = sorted(c for c in e.seen_classes if c not in new)  # ascending labels, as documented
        for c in new:
            mu[c] = Xn[yn == c].mean(axis=0)
        if source == "random":
            draws = np.random.default_rng([seed, e.index]).integers(0, len(new), size=len(past))
            src = [new[i] for i in draws]
        else:
            src = [new[int(np.argmin([np.linalg.norm(mu[c] - mu[n]) for n in new]))] for c in past]
        xs, ys = [Xn], [yn]
        for c, n in zip(past, src):
            xs.append(Xn[yn == n] - mu[n] + mu[c])
            ys.append(np.full(int((yn == n).sum()), c))
        xtr, ytr = _unit(np.concatenate(xs)), np.concatenate(ys)
        if len(np.unique(ytr)) == 1:
            predict = lambda x: np.full(len(x), ytr[0])  # noqa: E731  the only class seen
            scores.append({int(ytr[0]): np.zeros(len(Xt))})
        else:
            clf = (LinearSVC(C=1.0, tol=1e-4, dual=False) if classifier == "linearsvc"
                   else LogisticRegression(C=1.0, tol=1e-4, max_iter=1000)).fit(xtr, ytr)
            predict = clf.predict  # argmax of the decision function (its sign for two classes)
            d = clf.decision_function(Xt)
            d = np.stack([-d, d], axis=1) if d.ndim == 1 else d
            scores.append({int(c): d[:, k] for k, c in enumerate(clf.classes_)})
        row = [None] * len(scenario)
        for ej in scenario[:e.index + 1]:
            row[ej.index] = float(np.mean(predict(Xt[ej.test_indices]) == Yt[ej.test_indices]))
        matrix.append(row)
    return matrix, scores


@pytest.mark.parametrize("scenario,classifier,source", [
    (CI, "linearsvc", "nearest"), (CI, "logistic", "nearest"), (CI, "linearsvc", "random"),
    (FS, "linearsvc", "nearest"), (ONE_FIRST, "linearsvc", "nearest"), (ONE_FIRST, "logistic", "random")])
def test_accuracy_matrix_matches_reference(tiny_dataset, scenario, classifier, source):
    runner = runner_on(tiny_dataset)
    result = runner.run(scenario, _strategy(classifier=classifier, source=source), seed=2)
    feats = runner.features(tiny_dataset, "pixels").features
    sc = build_scenario(scenario, feats, seed=2)
    want, want_scores = reference(feats, sc, classifier=classifier, source=source, seed=2)
    assert len(result.accuracy_matrix) == len(want)
    for got_row, want_row in zip(result.accuracy_matrix, want):
        assert [g is None for g in got_row] == [w is None for w in want_row]
        assert [g for g in got_row if g is not None] == pytest.approx([w for w in want_row if w is not None], abs=1e-6)
    assert result.metrics.final_accuracy > 1 / 6
    # the scores themselves, step by step
    model = FeTrIL(config=FeTrILConfig(classifier=classifier, source=source), num_classes=6, seed=2)
    for e, ref in zip(sc, want_scores):
        model.fit_experience(e)
        got = model.predict_scores(torch.from_numpy(feats.test_x.copy()))  # (N, 6)
        assert sorted(ref) == sorted(e.seen_classes)
        for c, s in ref.items():
            np.testing.assert_allclose(got[:, c].numpy(), s, rtol=0, atol=1e-5)


def test_pseudo_features_are_translated_nearest_new_class(tiny_dataset):
    feats = runner_on(tiny_dataset).features(tiny_dataset, "pixels").features
    sc = build_scenario(CI, feats, seed=0)
    model = FeTrIL(config=FeTrILConfig(normalize=False), num_classes=6)
    model.fit_experience(sc[0])
    x, y = model._training_set(sc[1])
    new, past = list(sc[1].classes), list(sc[0].classes)
    X, Y = feats.train_x.astype(np.float64), feats.train_y
    mu = {c: X[Y == c][:12].mean(0) for c in range(6)}  # every training sample of the class is in the scenario
    assert sorted(set(y.tolist())) == sorted(new + past)
    for c in past:
        n = min(new, key=lambda k: np.linalg.norm(mu[c] - mu[k]))
        np.testing.assert_allclose(x[y == c], X[sc[1].train_indices][Y[sc[1].train_indices] == n] - mu[n] + mu[c],
                                   rtol=0, atol=1e-12)
        np.testing.assert_allclose(x[y == c].mean(0), mu[c], rtol=0, atol=1e-12)  # pseudo-features centre on μ_c


def test_one_class_first_step_scores_only_that_class(tiny_dataset):
    feats = runner_on(tiny_dataset).features(tiny_dataset, "pixels").features
    sc = build_scenario(ONE_FIRST, feats, seed=0)
    model = FeTrIL(num_classes=6)
    model.fit_experience(sc[0])  # one class: no classifier, that class scores 0
    scores = model.predict_scores(sc[0].test_x)
    (c,) = sc[0].classes
    assert torch.equal(scores[:, c], torch.zeros(len(scores)))
    assert torch.isinf(scores[:, [k for k in range(6) if k != c]]).all()
    model.fit_experience(sc[1])  # one new class + the pseudo-features of the first: a two-class classifier
    assert (model.coef[list(sc[1].seen_classes)] != 0).any(dim=1).all()


def test_checkpoint_round_trip_with_weights_only_load(tiny_dataset):
    sc = build_scenario(CI, runner_on(tiny_dataset).features(tiny_dataset, "pixels").features, seed=0)
    model = FeTrIL(num_classes=6)
    model.fit_experience(sc[0])
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    restored = FeTrIL(num_classes=6)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    for m in (model, restored):
        m.fit_experience(sc[1])
    assert torch.equal(model.predict_scores(sc[1].test_x), restored.predict_scores(sc[1].test_x))


def test_class_without_samples_is_config_error(tiny_dataset):
    from clproto.scenarios.scenario import Scenario

    sc = build_scenario(CI, tiny_dataset, seed=0)
    keep = sc[1].train_indices[tiny_dataset.train_y[sc[1].train_indices] != sc[1].classes[0]]
    broken = Scenario(name="b", kind="class-incremental", dataset=tiny_dataset, class_order=sc.class_order,
                      experience_classes=[e.classes for e in sc], train_indices=[sc[0].train_indices, keep, sc[2].train_indices],
                      test_indices=[e.test_indices for e in sc], seed=0)
    model = FeTrIL(num_classes=6)
    model.fit_experience(broken[0])
    with pytest.raises(ConfigError, match="shots"):
        model.fit_experience(broken[1])


@pytest.mark.parametrize("params,field", [({"classifier": "svm"}, "classifier"), ({"C": 0.0}, "C"), ({"tol": -1.0}, "tol"),
                                          ({"max_iter": 0}, "max_iter"), ({"source": "closest"}, "source")])
def test_bad_config_is_config_error(params, field):
    with pytest.raises(ConfigError, match=field):
        strategy_from_dict({"name": "f", "implementation": "fetril", "params": params}, REGISTRY, where="fetril.toml")


def test_definition_loads():
    st = load_strategy(ROOT / "strategies" / "fetril.toml", REGISTRY)
    assert st.params == FeTrILConfig()  # the paper's settings are the defaults
