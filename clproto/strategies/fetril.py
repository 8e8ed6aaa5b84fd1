"""FeTrIL: feature translation for exemplar-free class-incremental learning, on a frozen backbone.

Petit, Popescu, Schindler, Picard & Delezoide, "FeTrIL: Feature Translation for Exemplar-Free
Class-Incremental Learning", WACV 2023 (official code github.com/GregoirePetit/FeTrIL). The backbone
is frozen (the paper trains it on the first state, here it is a pretrained or ``base-trained:`` one);
only the class means μ_c of past classes are stored. At every step the pseudo-features of a past
class c are the features of one new class n, translated by the difference of means (Eq. 1):

    f̂_c = f_n − μ_n + μ_c        for every training feature f_n of class n,

with n the new class whose mean is nearest to μ_c in Euclidean distance (the paper's default,
"FeTrIL" in its tables; the official ``compute_distances.py``), or a seeded random new class
(``source = "random"``, the paper's ablation). A linear classifier is then re-fitted from scratch
on the real features of the new classes and the pseudo-features of every past class; at the first
step it sees the real features only. As in the official ``train_classifiers.py`` and
``compute_predictions.py`` every vector is L2-normalised before training and testing, and the
classifier is scikit-learn's ``LinearSVC`` (liblinear, one-vs-rest, squared hinge, l2 penalty,
``dual=False``, intercept) with C = 1.0 (official ``regul``) and tol = 10⁻⁴ (``toler``); a sample's
score for class c is w_cᵀ x̂ + b_c. ``classifier = "logistic"`` uses scikit-learn's
``LogisticRegression`` (multinomial, lbfgs) instead (the brief's alternative, not in the paper).
With two classes scikit-learn fits one decision function d and the scores are (−d, d).

A classifier needs two classes: while only one class has been seen (a first step with one class)
no classifier is fitted and that class scores 0 — the only possible class-IL prediction. Class
means are computed on the unnormalised features (as in the official code).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from clproto.errors import ConfigError
from clproto.scenarios.scenario import Experience
from clproto.strategies.nmc import NMC, NMCConfig

CLASSIFIERS = ("linearsvc", "logistic")
SOURCES = ("nearest", "random")


@dataclass(frozen=True)
class FeTrILConfig:
    classifier: str = "linearsvc"  # "linearsvc" (paper, official code) or "logistic" (LogisticRegression)
    C: float = 1.0  # inverse regularisation strength (official `regul` = 1.0)
    tol: float = 1e-4  # solver tolerance (official `toler` = 0.0001)
    max_iter: int = 1000  # solver iteration cap (scikit-learn's default for both classifiers)
    dual: bool = False  # LinearSVC only: liblinear's dual solver (same problem; official False, True is ~4x faster here)
    source: str = "nearest"  # new class translated into each past class: "nearest" mean (paper default) or "random"
    normalize: bool = True  # L2-normalise real and pseudo features for training and testing (official code)

    def __post_init__(self) -> None:
        if self.classifier not in CLASSIFIERS:
            raise ConfigError("unknown classifier", field="classifier", value=self.classifier,
                              expected=" or ".join(f'"{c}"' for c in CLASSIFIERS))
        if self.source not in SOURCES:
            raise ConfigError("unknown pseudo-feature source", field="source", value=self.source,
                              expected=" or ".join(f'"{s}"' for s in SOURCES))
        for name in ("C", "tol"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ConfigError("must be a positive number", field=name, value=v,
                                  expected="a finite number > 0 (official C = 1.0, tol = 1e-4)")
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int) or self.max_iter <= 0:
            raise ConfigError("must be a positive integer", field="max_iter", value=self.max_iter)


def source_classes(means: torch.Tensor, past: list[int], new: list[int], *, source: str,
                   rng: np.random.Generator) -> list[int]:
    """For every past class, the new class whose features are translated into it.

    ``means`` (C, D) class means; "nearest": argmin_n ‖μ_past − μ_n‖₂ (first of equal ones, in the
    order of ``new``); "random": a uniform draw from ``new`` per past class, ``past`` in ascending label
    order (``rng.integers(0, len(new), size=len(past))``).
    """
    if not past:
        return []
    if source == "random":
        return [new[i] for i in rng.integers(0, len(new), size=len(past))]
    d = torch.cdist(means[past], means[new])  # (P, K)
    return [new[i] for i in d.argmin(dim=1).tolist()]


class FeTrIL:
    """FeTrIL: linear classifier re-fitted on new features and translated pseudo-features of past classes (Petit et al., WACV 2023)."""

    Config = FeTrILConfig
    input_kind = "features"
    checkpoint_runs = False  # training-free: refitting beats writing its statistics after every experience

    def __init__(self, *, config: FeTrILConfig = FeTrILConfig(), num_classes: int, seed: int = 0) -> None:
        self.config = config
        self.num_classes = num_classes
        self.seed = seed
        self.stats = NMC(config=NMCConfig(normalize=False), num_classes=num_classes)  # running class sums and counts
        self.coef: torch.Tensor | None = None  # (C, D) float64 classifier weights; rows of unseen classes unused
        self.intercept = torch.zeros(num_classes, dtype=torch.float64)  # (C,)
        self.seen = torch.zeros(num_classes, dtype=torch.bool)  # (C,)

    def _training_set(self, experience: Experience) -> tuple[np.ndarray, np.ndarray]:
        """Real features of the new classes + pseudo-features of every past class: (n, D) float64, (n,) labels."""
        x = experience.train_x.reshape(len(experience.train_indices), -1).double()  # (n, D)
        y = experience.train_y.long()  # (n,)
        new = list(experience.classes)
        missing = [c for c in new if not (y == c).any()]
        if missing:
            raise ConfigError(f"experience {experience.index} has classes without training samples", field="shots",
                              value=missing, expected="at least one training sample per class")
        past = [c for c in range(self.num_classes) if self.seen[c] and c not in new]
        self.stats.partial_fit(x, y)
        means = self.stats.means  # (C, D); NaN rows for unseen classes
        rng = np.random.default_rng([self.seed, experience.index])
        xs, ys = [x], [y]
        for c, n in zip(past, source_classes(means, past, new, source=self.config.source, rng=rng)):
            xs.append(x[y == n] - means[n] + means[c])  # (n_n, D) Eq. 1
            ys.append(torch.full((int((y == n).sum()),), c, dtype=torch.long))
        feats = torch.cat(xs)  # (n + Σ n_src, D)
        if self.config.normalize:
            feats = F.normalize(feats, dim=1)
        return feats.numpy(), torch.cat(ys).numpy()

    def _classifier(self):
        cfg = self.config
        if cfg.classifier == "linearsvc":
            from sklearn.svm import LinearSVC

            return LinearSVC(C=cfg.C, tol=cfg.tol, max_iter=cfg.max_iter, dual=cfg.dual)
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=cfg.C, tol=cfg.tol, max_iter=cfg.max_iter)

    def fit_experience(self, experience: Experience) -> None:
        x, y = self._training_set(experience)
        self.seen[list(experience.classes)] = True
        dim = x.shape[1]
        self.coef = torch.zeros(self.num_classes, dim, dtype=torch.float64)
        self.intercept = torch.zeros(self.num_classes, dtype=torch.float64)
        labels = np.unique(y)
        if len(labels) < 2:  # one class seen so far: it scores 0, the only possible prediction
            return
        clf = self._classifier()
        clf.fit(x, y)  # a ConvergenceWarning (max_iter reached) is left visible
        coef = torch.from_numpy(np.asarray(clf.coef_, dtype=np.float64))  # (K, D) or (1, D) for two classes
        intercept = torch.from_numpy(np.asarray(clf.intercept_, dtype=np.float64))  # (K,) or (1,)
        classes = torch.from_numpy(clf.classes_.astype(np.int64))  # (K,) sorted labels
        if len(classes) == 2:
            coef, intercept = torch.cat([-coef, coef]), torch.cat([-intercept, intercept])
        self.coef[classes] = coef
        self.intercept[classes] = intercept

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        assert self.coef is not None, "FeTrIL has not seen any data"
        f = x.reshape(len(x), -1).double()  # (N, D)
        if self.config.normalize:
            f = F.normalize(f, dim=1)
        s = f @ self.coef[self.seen].T + self.intercept[self.seen]  # (N, C_seen)
        out = torch.full((len(f), self.num_classes), float("-inf"), dtype=torch.float64)
        out[:, self.seen] = s
        return out.float()

    def state_dict(self) -> dict:
        return {"sums": self.stats.sums, "counts": self.stats.counts.clone(), "coef": self.coef,
                "intercept": self.intercept.clone(), "seen": self.seen.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.stats.sums, self.stats.counts = state["sums"], state["counts"].clone()
        self.coef, self.intercept, self.seen = state["coef"], state["intercept"].clone(), state["seen"].clone()
