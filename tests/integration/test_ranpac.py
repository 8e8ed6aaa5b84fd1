"""RanPAC (McDonnell et al., NeurIPS 2023): the accuracy matrix against a NumPy/SciPy batch re-implementation,
few-shot, determinism, checkpoints, singular Gram matrices and bad input."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import runner_on
import scipy.linalg
import torch

from clproto.config import load_strategy, strategy_from_dict
from clproto.errors import ConfigError
from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import build_scenario
from clproto.strategies import REGISTRY
from clproto.strategies.ranpac import OFFICIAL_GRID, RanPAC, RanPACConfig, choose_ridge

ROOT = Path(__file__).resolve().parents[2]
CI = ScenarioConfig(name="tiny-ci", dataset="tiny", increment=2)
FS = ScenarioConfig(name="tiny-fs", dataset="tiny", kind="few-shot", base_classes=2, ways=2, shots=3)


pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _strategy(**params):
    return strategy_from_dict({"name": "ranpac", "implementation": "ranpac", "backbone": "pixels", "params": params},
                              REGISTRY)


def reference(feats, scenario, *, M: int, seed: int, grid, holdout: float, force=None) -> tuple[list, list[tuple]]:
    """RanPAC from the paper in batch form: H = ReLU(X W) of every sample seen, W_o = (HᵀH + λI)⁻¹ HᵀY.

    λ: for every grid value, ridge regression on the first ⌊0.8 n⌋ of the shuffled current experience,
    mean squared error of its outputs on the rest against one-hot targets; the smallest wins.
    Returns the accuracy matrix and, after each step, (λ, the grid values whose loss is within rounding of
    the smallest, ‖HᵀH‖₂, the (N_test, seen) scores of every test sample). ``force``: use these λ instead.
    """
    X, Y, Xt, Yt = (np.asarray(a, dtype=np.float64) for a in (feats.train_x, feats.train_y, feats.test_x, feats.test_y))
    Y, Yt = Y.astype(int), Yt.astype(int)
    C = scenario.num_classes
    # the documented draw: N(0, 1) entries from torch's generator seeded with the run seed
    W = torch.randn(X.shape[1], M, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).numpy()

    def h(x):
        return np.maximum(x @ W, 0.0) if M else x

    def onehot(y):
        return np.eye(C)[y]

    seen_rows, matrix, scores = [], [], []
    for e in scenario:
        order = e.train_indices[np.random.default_rng([seed, e.index]).permutation(len(e.train_indices))]
        n_fit = int(len(order) * (1 - holdout))
        Hf, Hv = h(X[order[:n_fit]]), h(X[order[n_fit:]])
        losses = []
        for lam in grid:
            Wf = np.linalg.solve(Hf.T @ Hf + lam * np.eye(Hf.shape[1]), Hf.T @ onehot(Y[order[:n_fit]]))
            losses.append(np.mean((Hv @ Wf - onehot(Y[order[n_fit:]])) ** 2))
        lam = grid[int(np.argmin(losses))] if force is None else force[e.index]
        ties = {g for g, v in zip(grid, losses) if v <= min(losses) * (1 + 1e-2)}  # solver rounding (cond ~1e12)
        seen_rows.extend(e.train_indices)
        H = h(X[seen_rows])
        Wo = scipy.linalg.solve(H.T @ H + lam * np.eye(H.shape[1]), H.T @ onehot(Y[seen_rows]))
        seen = np.array(e.seen_classes)
        scores.append((lam, ties, np.linalg.norm(H.T @ H, 2), h(Xt) @ Wo[:, seen]))
        row = []
        for j, ej in enumerate(scenario):
            if j > e.index:
                row.append(None)
                continue
            s = h(Xt[ej.test_indices]) @ Wo[:, seen]
            row.append(float(np.mean(seen[s.argmax(1)] == Yt[ej.test_indices])))
        matrix.append(row)
    return matrix, scores


@pytest.mark.parametrize("scenario", [CI, FS], ids=["class-incremental", "few-shot"])
@pytest.mark.parametrize("M", [300, 0])
def test_accuracy_matrix_matches_batch_reference(tiny_dataset, scenario, M):
    runner = runner_on(tiny_dataset)
    result = runner.run(scenario, _strategy(projection_dim=M), seed=3)
    feats = runner.features(tiny_dataset, "pixels").features
    sc = build_scenario(scenario, feats, seed=3)
    want, want_scores = reference(feats, sc, M=M, seed=3, grid=OFFICIAL_GRID, holdout=0.2)
    assert len(result.accuracy_matrix) == len(sc) == len(want)
    for got_row, want_row in zip(result.accuracy_matrix, want):
        assert [g is None for g in got_row] == [w is None for w in want_row]
        assert [g for g in got_row if g is not None] == pytest.approx([w for w in want_row if w is not None], abs=1e-6)
    assert result.seen_accuracy[0] >= 0.9  # the separable fixture is learnt
    # step by step: a λ of smallest held-out loss (G is singular here, fewer samples than M, so the losses of
    # the smallest λ values tie up to rounding and either solver may pick any of them) ...
    model = RanPAC(config=RanPACConfig(projection_dim=M), num_classes=6, seed=3)
    ours = []
    for e, (_, ties, _, _) in zip(sc, want_scores):
        model.fit_experience(e)
        assert model.ridge in ties
        ours.append(model.ridge)
    # ... and with the same λ the same scores up to the solvers' rounding, which grows with ‖G‖/λ
    model = RanPAC(config=RanPACConfig(projection_dim=M), num_classes=6, seed=3)
    _, same_lambda = reference(feats, sc, M=M, seed=3, grid=OFFICIAL_GRID, holdout=0.2, force=ours)
    for e, (lam, _, norm, ref) in zip(sc, same_lambda):
        model.fit_experience(e)
        got = model.predict_scores(torch.from_numpy(feats.test_x.copy()))[:, list(e.seen_classes)].numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=max(1e-5, 1e-13 * norm / lam) * max(1.0, np.abs(ref).max()))


def test_deterministic_and_seeded(tiny_dataset):
    runner = runner_on(tiny_dataset)
    a = runner.run(CI, _strategy(projection_dim=200), seed=1)
    b = runner.run(CI, _strategy(projection_dim=200), seed=1)
    assert a.accuracy_matrix == b.accuracy_matrix
    sc = build_scenario(CI, runner.features(tiny_dataset, "pixels").features, seed=1)
    one, other = RanPAC(config=RanPACConfig(projection_dim=50), num_classes=6, seed=1), RanPAC(
        config=RanPACConfig(projection_dim=50), num_classes=6, seed=2)
    one.fit_experience(sc[0])
    other.fit_experience(sc[0])
    assert not torch.equal(one.projection, other.projection)


def test_checkpoint_round_trip_with_weights_only_load(tiny_dataset):
    sc = build_scenario(CI, runner_on(tiny_dataset).features(tiny_dataset, "pixels").features, seed=0)
    model = RanPAC(config=RanPACConfig(projection_dim=100), num_classes=6, seed=0)
    model.fit_experience(sc[0])
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    restored = RanPAC(config=RanPACConfig(projection_dim=100), num_classes=6, seed=0)
    restored.load_state_dict(torch.load(buf, weights_only=True))
    for m in (model, restored):
        m.fit_experience(sc[1])
    x = sc[1].test_x
    assert torch.equal(model.predict_scores(x), restored.predict_scores(x))
    scores = model.predict_scores(x)
    assert torch.isinf(scores[:, [c for c in range(6) if c not in sc[1].seen_classes]]).all()


def test_ridge_choice_skips_lambdas_that_leave_a_singular_gram_singular():
    gram = torch.tensor([[1.0, 1.0], [1.0, 1.0]], dtype=torch.float64)  # rank 1: G + 1e-300 I is singular in float64
    sums = torch.tensor([[1.0, 1.0], [0.0, 0.0]], dtype=torch.float64)  # (K=2, M=2)
    h_val, y_val = torch.tensor([[1.0, 1.0]], dtype=torch.float64), torch.tensor([0])
    lam, losses = choose_ridge(gram, sums, h_val, y_val, (1e-300, 1.0, 100.0))
    assert losses[0] == float("inf") and lam == 1.0
    # by hand: W = (G + I)⁻¹ sumsᵀ has first column (1/3, 1/3), so h W = (2/3, 0) against (1, 0): MSE = (1/9)/2
    assert losses[1] == pytest.approx(1 / 18)
    with pytest.raises(ConfigError, match="ridge_grid"):
        choose_ridge(gram, sums, h_val, y_val, (1e-300,))


def test_singular_gram_few_shot_sessions_are_solved(tiny_dataset):
    """3-shot sessions and M = 300 > samples: every Gram matrix is singular, λ > 0 makes it solvable."""
    result = runner_on(tiny_dataset).run(FS, _strategy(projection_dim=300), seed=0)
    assert all(0 <= a <= 1 for a in result.seen_accuracy) and result.metrics.final_accuracy > 1 / 6


def test_experience_too_small_to_split_keeps_the_previous_lambda(tiny_dataset):
    feats = runner_on(tiny_dataset).features(tiny_dataset, "pixels").features
    sc = build_scenario(ScenarioConfig(name="fs1", dataset="tiny", kind="few-shot", base_classes=2, ways=1, shots=1),
                        feats, seed=0)
    model = RanPAC(config=RanPACConfig(projection_dim=40), num_classes=6, seed=0)
    model.fit_experience(sc[0])
    chosen = model.ridge
    model.fit_experience(sc[1])  # one sample: nothing to validate on
    assert model.ridge == chosen
    first = RanPAC(config=RanPACConfig(projection_dim=40, ridge_grid=(0.5, 7.0)), num_classes=6, seed=0)
    first.fit_experience(sc[1])  # a one-sample first experience: the largest grid value
    assert first.ridge == 7.0


@pytest.mark.parametrize("params,field", [({"projection_dim": -1}, "projection_dim"), ({"ridge_grid": []}, "ridge_grid"),
                                          ({"ridge_grid": [1.0, 0.0]}, "ridge_grid"), ({"holdout_fraction": 1.0}, "holdout_fraction"),
                                          ({"holdout_fraction": 0}, "holdout_fraction"), ({"precision": "half"}, "precision")])
def test_bad_config_is_config_error(params, field):
    with pytest.raises(ConfigError, match=field):
        strategy_from_dict({"name": "r", "implementation": "ranpac", "params": params}, REGISTRY, where="ranpac.toml")


def test_float32_precision_runs(tiny_dataset):
    result = runner_on(tiny_dataset).run(CI, _strategy(projection_dim=100, precision="float32"), seed=0)
    assert result.seen_accuracy[0] >= 0.9


def test_definition_loads():
    st = load_strategy(ROOT / "strategies" / "ranpac.toml", REGISTRY)
    assert st.params == RanPACConfig()  # the definition spells out the defaults: M = 10 000, the official grid
