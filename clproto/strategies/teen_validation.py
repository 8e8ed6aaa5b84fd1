"""Choosing TEEN's α and τ on the base session alone, by simulated few-shot sessions.

TEEN's calibration (Wang et al., NeurIPS 2023, Eq. 4-6; :func:`clproto.strategies.teen.calibrate`) has two
hyperparameters the paper sets per dataset by hand (official scripts: τ = 16; α = 0.1 on CIFAR-100, 0.5 on
miniImageNet / CUB-200). Measured in this project (``benchmarks/teen_sensitivity.py``), the best pair depends
on the backbone as much as on the data: on frozen post-ReLU MobileNet features every prototype lies in the
positive orthant, novel-to-base cosines are ~0.8-0.9, so at τ = 16 the softmax spreads over most base classes
and the calibration pulls every novel prototype toward the same base centroid.

The rule here never looks at a test image and needs nothing but the base session's training data: split the
base classes into pseudo-base and pseudo-novel classes (a seeded draw per episode, ``ways`` pseudo-novel
classes), build pseudo-base prototypes from half of each pseudo-base class's training samples and pseudo-novel
prototypes from ``shots`` samples each (the few-shot sessions' shape, read from the scenario description), then
score every (α, τ) of the grid by the harmonic mean of pseudo-base and pseudo-novel accuracy (the FSCIL
balance measure) on the remaining training samples, averaged over the episodes. The first best pair in grid
order wins (α ascending, then τ ascending), so ties go to the weaker calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clproto.strategies.teen_calibration import calibrate_grid

MAX_EVAL_PER_CLASS = 50  # held-out training samples scored per pseudo class and episode (bounds the cost)


@dataclass(frozen=True)
class Selection:
    """The validated pair and the evidence for it."""

    alpha: float
    tau: float
    score: float  # mean pseudo-session harmonic mean (0-1) of the chosen pair
    table: dict  # (alpha, tau) -> mean harmonic mean over episodes


def _harmonic(a: float, b: float) -> float:
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def select_alpha_tau(features: torch.Tensor, labels: torch.Tensor, *, alphas: tuple[float, ...],
                     taus: tuple[float, ...], ways: int, shots: int, episodes: int, seed: int) -> Selection:
    """The (α, τ) of the grid with the best mean pseudo-session harmonic mean on the base session.

    ``features`` (N, D) unnormalised base-session training features, ``labels`` (N,) their classes (at least
    two classes). ``ways`` pseudo-novel classes per episode (clipped to leave at least one pseudo-base class),
    ``shots`` training samples for each pseudo-novel prototype (clipped so that one sample is left to score).
    Pure function of its arguments; deterministic for a given ``seed``.
    """
    z = features.reshape(len(features), -1).double()  # (N, D)
    y = labels.long().numpy()
    classes = np.unique(y)
    if len(classes) < 2:
        raise ValueError("select_alpha_tau: the base session needs at least two classes")
    ways = max(1, min(ways, len(classes) - 1))
    rows_of = {int(c): np.flatnonzero(y == c) for c in classes}
    pairs = [(float(a), float(t)) for a in sorted(alphas) for t in sorted(taus)]
    totals = np.zeros(len(pairs))
    for episode in range(episodes):
        rng = np.random.default_rng([seed, episode])
        perm = rng.permutation(classes)
        novel, base = perm[:ways], perm[ways:]
        base_protos, eval_rows, eval_labels = [], [], []
        for i, c in enumerate(base):  # pseudo-base: half the samples build the prototype, half are scored
            rows = rng.permutation(rows_of[int(c)])
            half = max(1, len(rows) // 2)
            base_protos.append(z[rows[:half]].mean(0))
            eval_rows.append(rows[half:][:MAX_EVAL_PER_CLASS])
            eval_labels.append(np.full(len(eval_rows[-1]), i))
        novel_means = []
        for i, c in enumerate(novel):  # pseudo-novel: `shots` samples build the prototype, the rest are scored
            rows = rng.permutation(rows_of[int(c)])
            k = max(1, min(shots, len(rows) - 1))
            novel_means.append(z[rows[:k]].mean(0))
            eval_rows.append(rows[k:][:MAX_EVAL_PER_CLASS])
            eval_labels.append(np.full(len(eval_rows[-1]), len(base) + i))
        pb = F.normalize(torch.stack(base_protos), dim=1)  # (B', D)
        pn = torch.stack(novel_means)  # (W, D)
        rows = np.concatenate(eval_rows)
        target = torch.from_numpy(np.concatenate(eval_labels))  # (n,)
        q = F.normalize(z[rows], dim=1)  # (n, D)
        base_scores = q @ pb.T  # (n, B') fixed across the grid
        is_novel = target >= len(base)  # (n,)
        # every (α, τ) at once: the calibrated prototypes of Eq. 4-6 for the whole grid, one matmul to score them
        alpha = torch.tensor([a for a, _ in pairs], dtype=torch.float64)[:, None, None]  # (P, 1, 1)
        tau = torch.tensor([t for _, t in pairs], dtype=torch.float64)[:, None, None]  # (P, 1, 1)
        protos = F.normalize(calibrate_grid(pn, pb, alpha=alpha, tau=tau), dim=2)  # (P, W, D)
        novel_scores = torch.einsum("nd,pwd->pnw", q, protos)  # (P, n, W)
        scores = torch.cat([base_scores.expand(len(pairs), -1, -1), novel_scores], dim=2)  # (P, n, B' + W)
        hit = (scores.argmax(2) == target).double()  # (P, n)
        acc_base = hit[:, ~is_novel].mean(1) if (~is_novel).any() else torch.zeros(len(pairs), dtype=torch.float64)
        acc_novel = hit[:, is_novel].mean(1) if is_novel.any() else torch.zeros(len(pairs), dtype=torch.float64)
        totals += np.array([_harmonic(float(a), float(b)) for a, b in zip(acc_base, acc_novel)])
    means = totals / max(1, episodes)
    best = int(np.argmax(means))  # first maximum: α ascending, then τ ascending
    return Selection(alpha=pairs[best][0], tau=pairs[best][1], score=float(means[best]),
                     table={p: float(m) for p, m in zip(pairs, means)})
