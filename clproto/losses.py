"""Losses of the trained strategies, as pure functions of tensors.

* :func:`supcon_loss` — supervised contrastive loss, Khosla et al., "Supervised Contrastive
  Learning", NeurIPS 2020, Eq. 2 (L^sup_out), including the ``temperature / base_temperature``
  rescaling of the authors' reference implementation (which PRD's official code uses).
* :func:`prototype_loss` — PRD's prototype loss (Asadi et al., "Prototype-Sample Relation
  Distillation: Towards Replay-Free Continual Learning", ICML 2023, the prototype-learning
  objective L_p; official code ``methods/repe.py``, ``linear_loss``): mean of ``1 − cos(f(x), p_y)``.
* :func:`relation_scores` and :func:`relation_distillation` — PRD's prototype-sample relation
  distillation L_d (same paper; code ``relation_distillation_loss``): KL between the frozen
  previous model's and the current model's softmax-normalised prototype-sample similarities.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RELATION_AXES = ("prototypes", "samples")


def supcon_loss(z: torch.Tensor, y: torch.Tensor, *, temperature: float = 0.1, base_temperature: float = 0.07) -> torch.Tensor:
    """Supervised contrastive loss over ``z`` (N, V, D): N samples, V views, L2-normalised embeddings.

    Every one of the N·V embeddings is an anchor; its positives are all other embeddings with the
    same label (including its own other views), its contrast set every other embedding:

        L = (τ/τ_b) · mean_i  −1/|P(i)| Σ_{p∈P(i)} log( exp(z_i·z_p/τ) / Σ_{a≠i} exp(z_i·z_a/τ) )

    Anchors without any positive (possible only with V = 1) are left out of the mean.
    """
    N, V, D = z.shape
    flat = z.transpose(0, 1).reshape(N * V, D)  # (NV, D): view 0 of every sample, then view 1, ...
    labels = y.repeat(V)  # (NV,)
    logits = (flat @ flat.T).float() / temperature  # (NV, NV), float32 also under autocast
    self_mask = torch.eye(N * V, dtype=torch.bool, device=z.device)  # (NV, NV)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)  # (NV, NV), -inf on the diagonal
    positives = (labels[:, None] == labels[None, :]) & ~self_mask  # (NV, NV)
    n_pos = positives.sum(dim=1)  # (NV,)
    pos_log_prob = log_prob.masked_fill(~positives, 0.0).sum(dim=1)  # (NV,)
    has_pos = n_pos > 0
    mean_log_prob = pos_log_prob[has_pos] / n_pos[has_pos]  # (n_anchors,)
    return -(temperature / base_temperature) * mean_log_prob.mean()


def prototype_loss(features: torch.Tensor, prototypes: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean of ``1 − cos(features_i, prototypes[targets_i])``; features (N, D), prototypes (K, D), targets (N,) in 0..K-1."""
    cos = F.cosine_similarity(features, prototypes[targets], dim=1)  # (N,)
    return (1.0 - cos).mean()


def relation_scores(features: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """Similarity of every sample to every prototype, ``f · p / ‖p‖``: (N, D), (K, D) -> (N, K).

    As in the official code, only the prototypes are normalised; the feature norm is kept.
    """
    return features @ F.normalize(prototypes, dim=1).T


def relation_distillation(scores: torch.Tensor, old_scores: torch.Tensor, *, temperature: float = 1.0,
                          axis: str = "prototypes") -> torch.Tensor:
    """KL(softmax(old/T) ‖ softmax(new/T)) between (N, K) score matrices.

    ``axis="prototypes"`` (the official code): one distribution over the K prototypes per sample,
    KL summed over prototypes and averaged over the N samples. ``axis="samples"`` (our reading of
    the paper's formulation): one distribution over the N samples of the batch per prototype, KL summed
    over samples and averaged over the K prototypes. ``old_scores`` is treated as a constant.
    """
    if axis not in RELATION_AXES:
        raise ValueError(f"axis must be one of {RELATION_AXES}, got {axis!r}")
    dim = 1 if axis == "prototypes" else 0
    log_p = F.log_softmax(scores / temperature, dim=dim)  # student
    log_q = F.log_softmax(old_scores.detach() / temperature, dim=dim)  # teacher
    kl = (log_q.exp() * (log_q - log_p)).sum(dim=dim)  # (N,) or (K,)
    return kl.mean()
