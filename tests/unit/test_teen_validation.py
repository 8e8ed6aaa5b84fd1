"""TEEN's base-session choice of α and τ (clproto/strategies/teen_validation.py) and its "auto" settings."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clproto import REGISTRY
from clproto.config import strategy_from_dict
from clproto.errors import ConfigError
from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import build_scenario
from clproto.strategies.base import ScenarioDescription
from clproto.strategies.teen import TEEN, TEENConfig, calibrate
from clproto.strategies.teen_calibration import calibrate_grid
from clproto.strategies.teen_validation import MAX_EVAL_PER_CLASS, select_alpha_tau


def test_calibrate_grid_equals_calibrate_pair_by_pair():
    g = torch.Generator().manual_seed(0)
    novel, base = torch.rand(3, 8, generator=g, dtype=torch.float64), torch.rand(5, 8, generator=g, dtype=torch.float64)
    pairs = [(0.0, 1.0), (0.3, 16.0), (0.9, 64.0)]
    alpha = torch.tensor([a for a, _ in pairs], dtype=torch.float64)[:, None, None]
    tau = torch.tensor([t for _, t in pairs], dtype=torch.float64)[:, None, None]
    grid = calibrate_grid(novel, base, alpha=alpha, tau=tau)  # (3, 3, 8)
    for i, (a, t) in enumerate(pairs):
        torch.testing.assert_close(grid[i], calibrate(novel, base, alpha=a, tau=t), rtol=0, atol=1e-12)


def reference_selection(z, y, alphas, taus, ways, shots, episodes, seed):
    """The selection written out pair by pair with TEEN's own ``calibrate`` (the module batches the grid)."""
    z = z.double().numpy()
    y = y.numpy()
    classes = np.unique(y)
    pairs = [(a, t) for a in sorted(alphas) for t in sorted(taus)]
    total = {p: 0.0 for p in pairs}
    for e in range(episodes):
        rng = np.random.default_rng([seed, e])
        perm = rng.permutation(classes)
        novel, base = perm[:ways], perm[ways:]
        protos, ev, lab = [], [], []
        for i, c in enumerate(base):
            r = rng.permutation(np.flatnonzero(y == c))
            h = max(1, len(r) // 2)
            protos.append(z[r[:h]].mean(0))
            ev += list(r[h:][:MAX_EVAL_PER_CLASS])
            lab += [i] * len(r[h:][:MAX_EVAL_PER_CLASS])
        means = []
        for i, c in enumerate(novel):
            r = rng.permutation(np.flatnonzero(y == c))
            k = max(1, min(shots, len(r) - 1))
            means.append(z[r[:k]].mean(0))
            ev += list(r[k:][:MAX_EVAL_PER_CLASS])
            lab += [len(base) + i] * len(r[k:][:MAX_EVAL_PER_CLASS])
        pb = F.normalize(torch.tensor(np.array(protos)), dim=1)
        q = F.normalize(torch.tensor(z[ev]), dim=1)
        lab = np.array(lab)
        for a, t in pairs:
            pn = F.normalize(calibrate(torch.tensor(np.array(means)), pb, alpha=a, tau=t), dim=1)
            pred = torch.cat([q @ pb.T, q @ pn.T], 1).argmax(1).numpy()
            acc_b = (pred == lab)[lab < len(base)].mean()
            acc_n = (pred == lab)[lab >= len(base)].mean()
            total[(a, t)] += 0.0 if acc_b + acc_n == 0 else 2 * acc_b * acc_n / (acc_b + acc_n)
    best = max(pairs, key=lambda p: (total[p], -pairs.index(p)))
    return best, {p: v / episodes for p, v in total.items()}


def test_selection_equals_a_pair_by_pair_reimplementation(tiny_dataset):
    z = torch.from_numpy(tiny_dataset.train_x.reshape(len(tiny_dataset.train_x), -1).astype(np.float32))
    y = torch.from_numpy(tiny_dataset.train_y)
    alphas, taus = (0.0, 0.25, 0.5, 0.9), (1.0, 16.0)
    sel = select_alpha_tau(z, y, alphas=alphas, taus=taus, ways=2, shots=3, episodes=4, seed=7)
    best, table = reference_selection(z, y, alphas, taus, 2, 3, 4, 7)
    assert (sel.alpha, sel.tau) == best
    for pair, value in table.items():
        assert sel.table[pair] == pytest.approx(value, abs=1e-12)
    again = select_alpha_tau(z, y, alphas=alphas, taus=taus, ways=2, shots=3, episodes=4, seed=7)
    assert again == sel  # deterministic for a seed


def test_selection_keeps_alpha_zero_where_calibration_only_hurts():
    # every class has its own direction: pulling a novel prototype toward base prototypes can only hurt
    g = torch.Generator().manual_seed(1)
    centres = torch.eye(6, dtype=torch.float32) * 4 + 1  # (6, 6) positive, like post-ReLU features
    x = torch.cat([centres[c] + 0.5 * torch.randn(60, 6, generator=g) for c in range(6)])  # (360, 6)
    y = torch.arange(6).repeat_interleave(60)
    sel = select_alpha_tau(x, y, alphas=(0.0, 0.5, 0.9), taus=(16.0,), ways=2, shots=1, episodes=6, seed=0)
    assert sel.alpha == 0.0
    assert sel.table[(0.0, 16.0)] > sel.table[(0.9, 16.0)]


def test_auto_is_the_default_and_a_number_fixes_the_value():
    cfg = TEENConfig()
    assert cfg.alpha == "auto" and cfg.tau == "auto"
    assert cfg.candidates() == (cfg.alpha_grid, cfg.tau_grid)
    fixed = TEENConfig(alpha=0.25, tau=8)
    assert fixed.candidates() == ((0.25,), (8.0,)) and isinstance(fixed.tau, float)
    assert TEENConfig(alpha=0.5).candidates() == ((0.5,), cfg.tau_grid)


@pytest.mark.parametrize("params,field", [({"alpha": "best"}, "alpha"), ({"tau": "auto!"}, "tau"),
                                          ({"alpha_grid": []}, "alpha_grid"), ({"alpha_grid": [0.5, 2.0]}, "alpha"),
                                          ({"tau_grid": [0.0]}, "tau"), ({"episodes": 0}, "episodes")])
def test_bad_auto_settings_are_config_errors(params, field):
    with pytest.raises(ConfigError, match=field):
        strategy_from_dict({"name": "t", "implementation": "teen", "params": params}, REGISTRY, where="teen.toml")


def _features_scenario(tiny_dataset):
    feats = tiny_dataset.with_inputs(tiny_dataset.train_x.reshape(len(tiny_dataset.train_x), -1).astype(np.float32),
                                     tiny_dataset.test_x.reshape(len(tiny_dataset.test_x), -1).astype(np.float32))
    cfg = ScenarioConfig(name="fs", dataset="tiny", kind="few-shot", base_classes=4, ways=1, shots=3)
    return build_scenario(cfg, feats, seed=0)


def test_auto_teen_uses_the_chosen_pair_for_every_session(tiny_dataset):
    sc = _features_scenario(tiny_dataset)
    auto = TEEN(config=TEENConfig(episodes=3), num_classes=sc.num_classes, seed=3)
    auto.begin_scenario(ScenarioDescription.of(sc))
    assert auto.session_shape == (1, 3)  # ways, shots of the sessions, read from the description
    for exp in sc:
        auto.fit_experience(exp)
    assert auto.selection is not None and (auto.alpha, auto.tau) == (auto.selection.alpha, auto.selection.tau)
    fixed = TEEN(config=TEENConfig(alpha=auto.alpha, tau=auto.tau), num_classes=sc.num_classes)
    for exp in sc:
        fixed.fit_experience(exp)
    assert fixed.selection is None
    torch.testing.assert_close(auto.prototypes, fixed.prototypes, rtol=0, atol=0)
    assert "chosen on the base session" in auto.run_notes()[0] and "as configured" in fixed.run_notes()[0]
    restored = TEEN(config=TEENConfig(episodes=3), num_classes=sc.num_classes, seed=3)
    restored.load_state_dict(auto.state_dict())
    assert (restored.alpha, restored.tau) == (auto.alpha, auto.tau)
