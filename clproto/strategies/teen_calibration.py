"""TEEN's prototype calibration (Wang et al., NeurIPS 2023, Sec. 4, Eq. 4-6) as pure functions.

Shared by the strategy (:mod:`clproto.strategies.teen`) and the base-session choice of α and τ
(:mod:`clproto.strategies.teen_validation`); the strategy's docstring explains the method.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from clproto.errors import ConfigError


def check_tau_alpha(tau: float, alpha: float) -> None:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau) or tau <= 0:
        raise ConfigError("the softmax temperature must be positive", field="tau", value=tau,
                          expected="a finite number > 0 (TEEN default 16)")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 <= alpha <= 1:
        raise ConfigError("the calibration weight must lie in [0, 1]", field="alpha", value=alpha,
                          expected="0 <= alpha <= 1 (0.1 for CIFAR-style, 0.5 for miniImageNet/CUB-style data)")


def calibrate(novel_prototypes: torch.Tensor, base_prototypes: torch.Tensor, *, tau: float, alpha: float) -> torch.Tensor:
    """TEEN's calibrated prototypes ``p̂_i = (1 − α) p_i + α normalise(Σ_b softmax_b(τ cos(p_i, P_b)) P_b)``.

    ``novel_prototypes`` (M, D) and ``base_prototypes`` (B, D) need not be normalised; the result
    (M, D) is not re-normalised (as in the official code; scoring is by cosine anyway). Pure function.
    """
    check_tau_alpha(tau, alpha)
    if novel_prototypes.ndim != 2 or base_prototypes.ndim != 2 or novel_prototypes.shape[1] != base_prototypes.shape[1]:
        raise ValueError(f"calibrate: expected (M, D) and (B, D) prototypes, got {tuple(novel_prototypes.shape)} "
                         f"and {tuple(base_prototypes.shape)}")
    if len(base_prototypes) == 0:
        raise ValueError("calibrate: there are no base prototypes to calibrate with")
    p = F.normalize(novel_prototypes, dim=1)  # (M, D)
    base = F.normalize(base_prototypes, dim=1)  # (B, D)
    weights = torch.softmax(tau * (p @ base.T), dim=1)  # (M, B), rows sum to 1
    delta = F.normalize(weights @ base, dim=1)  # (M, D)
    return (1.0 - alpha) * p + alpha * delta  # (M, D)


def calibrate_grid(novel_prototypes: torch.Tensor, base_prototypes: torch.Tensor, *, alpha: torch.Tensor,
                   tau: torch.Tensor) -> torch.Tensor:
    """:func:`calibrate` for P (α, τ) pairs at once: ``alpha`` and ``tau`` of shape (P, 1, 1) -> (P, M, D).

    Element for element the same arithmetic as :func:`calibrate` (tested equal), batched over the grid.
    """
    p = F.normalize(novel_prototypes, dim=1)  # (M, D)
    base = F.normalize(base_prototypes, dim=1)  # (B, D)
    weights = torch.softmax(tau * (p @ base.T)[None], dim=2)  # (P, M, B)
    delta = F.normalize(weights @ base, dim=2)  # (P, M, D)
    return (1.0 - alpha) * p[None] + alpha * delta  # (P, M, D)
