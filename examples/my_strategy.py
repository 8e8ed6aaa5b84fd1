"""A new clproto strategy in ~30 lines: streaming LDA on frozen features, registered by a plugin.

Hayes & Kanan, "Lifelong Machine Learning with Deep Streaming Linear Discriminant Analysis",
CVPR Workshops 2020, Sec. 3: one shared covariance Σ and class means μ_c; a sample z scores
    s_c(z) = w_cᵀ z − ½ w_cᵀ μ_c,   w_c = Λ μ_c,   Λ = [(1 − ε) Σ + ε I]⁻¹   (shrinkage ε).
The paper updates Σ one sample at a time; here Σ is the exact pooled within-class covariance of
every sample seen so far, kept as running sums, so the result does not depend on the stream cut.

    clproto run scenarios/split-digits.toml strategies/nmc-pixels.toml examples/my_strategy.toml \
        --plugin examples/my_strategy.py
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SLDAConfig:
    shrinkage: float = 1e-4  # ε; the paper's default


class SLDA:
    """Streaming LDA with a shared covariance (Hayes & Kanan, CVPRW 2020)."""

    Config = SLDAConfig
    input_kind = "features"

    def __init__(self, *, config: SLDAConfig = SLDAConfig(), num_classes: int, seed: int = 0) -> None:
        self.config, self.num_classes = config, num_classes
        self.sums = self.outer = None  # (C, D) per-class sums, (D, D) sum of z zᵀ
        self.counts = torch.zeros(num_classes, dtype=torch.float64)  # (C,)

    def fit_experience(self, experience) -> None:
        z, y = experience.train_x.reshape(len(experience.train_y), -1).double(), experience.train_y  # (N, D), (N,)
        if self.sums is None:
            self.sums, self.outer = torch.zeros(self.num_classes, z.shape[1], dtype=torch.float64), 0.0
        self.sums.index_add_(0, y, z)
        self.counts += torch.bincount(y, minlength=self.num_classes).double()
        self.outer = self.outer + z.T @ z

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        seen = self.counts > 0
        mu = self.sums[seen] / self.counts[seen, None]  # (C_seen, D)
        sigma = (self.outer - (mu.T * self.counts[seen]) @ mu) / self.counts.sum()  # pooled within-class (D, D)
        eps = self.config.shrinkage
        w = torch.linalg.solve((1 - eps) * sigma + eps * torch.eye(len(sigma), dtype=torch.float64), mu.T)  # (D, C_seen)
        out = torch.full((len(x), self.num_classes), float("-inf"), dtype=torch.float64)
        out[:, seen] = x.reshape(len(x), -1).double() @ w - 0.5 * (mu.T * w).sum(0)  # (N, C_seen)
        return out.float()


def register(registry) -> None:
    """Called by `clproto run --plugin examples/my_strategy.py` with the registry to extend."""
    # "slda" is taken by the built-in streaming rule (clproto/strategies/slda.py): this pooled form gets its own name
    registry.register("lda-pooled", SLDA, description="LDA with a pooled within-class covariance (after Hayes & Kanan 2020)")
