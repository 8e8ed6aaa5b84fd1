"""NMC against a brute-force implementation written with plain loops."""

import math

import numpy as np
import pytest
import torch

from clproto.scenarios import ScenarioConfig, build_scenario
from clproto.strategies.nmc import NMC, NMCConfig


def brute_force_predict(train_x, train_y, x, metric, seen):
    """Loop-by-loop nearest mean of L2-normalised vectors."""
    def norm(v):
        n = math.sqrt(sum(a * a for a in v))
        return [a / n for a in v]

    means = {}
    for c in seen:
        rows = [norm(list(map(float, train_x[i]))) for i in range(len(train_y)) if train_y[i] == c]
        means[c] = [sum(col) / len(rows) for col in zip(*rows)]
    preds = []
    for v in x:
        f = norm(list(map(float, v)))
        best, best_score = None, -float("inf")
        for c, mu in means.items():
            if metric == "euclidean":
                score = -sum((a - b) ** 2 for a, b in zip(f, mu))
            else:
                score = sum(a * b for a, b in zip(f, mu)) / math.sqrt(sum(b * b for b in mu))
            if score > best_score:
                best, best_score = c, score
        preds.append(best)
    return preds


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_nmc_matches_brute_force(tiny_dataset, metric):
    feats = tiny_dataset.with_inputs(tiny_dataset.train_x.reshape(len(tiny_dataset.train_x), -1).astype(np.float32),
                                     tiny_dataset.test_x.reshape(len(tiny_dataset.test_x), -1).astype(np.float32))
    sc = build_scenario(ScenarioConfig(name="t", dataset="tiny", increment=2), feats, seed=0)
    nmc = NMC(config=NMCConfig(metric=metric), num_classes=sc.num_classes)
    seen_idx = []
    for e in sc:
        nmc.fit_experience(e)
        seen_idx.extend(e.train_indices)
        scores = nmc.predict_scores(torch.from_numpy(feats.test_x))
        ours = scores.argmax(1).tolist()
        ref = brute_force_predict(feats.train_x[seen_idx], feats.train_y[seen_idx], feats.test_x, metric, e.seen_classes)
        assert ours == ref
        unseen = sorted(set(range(sc.num_classes)) - set(e.seen_classes))
        assert torch.isinf(scores[:, unseen]).all()


def test_partial_fit_is_order_and_batching_invariant(tiny_dataset):
    x = torch.from_numpy(tiny_dataset.train_x.reshape(len(tiny_dataset.train_x), -1).astype(np.float32))
    y = torch.from_numpy(tiny_dataset.train_y)
    a = NMC(num_classes=6)
    a.partial_fit(x, y)
    b = NMC(num_classes=6)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    for chunk in perm.split(7):  # task-free: arbitrary mini-batches
        b.partial_fit(x[chunk], y[chunk])
    torch.testing.assert_close(a.means, b.means)


def test_unknown_metric_is_a_config_error():
    from clproto.errors import ConfigError

    with pytest.raises(ConfigError, match="metric"):
        NMCConfig(metric="manhattan")
