"""Continual-learning metrics as pure functions of an accuracy matrix.

Notation: after training on experience ``t`` (0-based, ``t = 0..T``), ``A[t][j]`` is the
accuracy on experience ``j``'s test set, defined for ``j <= t`` (entries above the diagonal
are ``None``: never evaluated, or not used). ``seen[t]`` is the accuracy on the union of the
test sets of every experience seen up to ``t`` (sample-weighted; what few-shot papers call
the *session accuracy*). Every function returns a plain float (or ``None`` where the metric
is undefined, e.g. forgetting after a single experience) and never mutates its input.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

Matrix = Sequence[Sequence[Optional[float]]]


def _check_square(A: Matrix) -> int:
    T = len(A)
    if T == 0:
        raise ValueError("accuracy matrix is empty")
    for t, row in enumerate(A):
        if len(row) != T:
            raise ValueError(f"accuracy matrix row {t} has {len(row)} entries, expected {T}")
        for j in range(t + 1):
            if row[j] is None:
                raise ValueError(f"accuracy matrix entry A[{t}][{j}] (on or below the diagonal) is missing")
    return T


def final_accuracy(seen: Sequence[float]) -> float:
    """Accuracy on all classes seen by the end of the stream: ``seen[T]``."""
    if not seen:
        raise ValueError("seen-class accuracy list is empty")
    return float(seen[-1])


def average_accuracy(A: Matrix) -> float:
    """Average accuracy over experiences after the last step, ``(1/(T+1)) Σ_j A[T][j]``.

    ACC of Lopez-Paz & Ranzato (2017), Eq. (2); Chaudhry et al. (2018), Eq. (1). Equals
    :func:`final_accuracy` when every experience has the same number of test samples.
    """
    T = _check_square(A)
    return float(sum(A[T - 1][j] for j in range(T)) / T)


def average_incremental_accuracy(seen: Sequence[float]) -> float:
    """Average incremental accuracy, ``(1/(T+1)) Σ_t seen[t]`` (Rebuffi et al., iCaRL, CVPR 2017, Sec. 4)."""
    if not seen:
        raise ValueError("seen-class accuracy list is empty")
    return float(sum(seen) / len(seen))


def forgetting(A: Matrix) -> Optional[float]:
    """Average forgetting after Chaudhry et al. (2018, "Riemannian Walk", Eq. 3-4).

    ``f_j = max_{l in 0..T-1} A[l][j] − A[T][j]`` for each ``j < T`` (the *maximum* over
    earlier steps, not the first value), averaged over ``j``. ``None`` for a single experience.
    """
    T = _check_square(A)
    if T < 2:
        return None
    last = T - 1
    per_exp = [max(A[l][j] for l in range(j, last)) - A[last][j] for j in range(last)]
    return float(sum(per_exp) / len(per_exp))


def forgetting_from_first(A: Matrix) -> Optional[float]:
    """Forgetting measured from the accuracy right after learning: mean over ``j < T`` of ``A[j][j] − A[T][j]``.

    This is what Avalanche's ``forgetting_metrics(stream=True)`` reports at the end of a
    stream (it remembers the first accuracy, not the best). ``None`` for a single experience.
    """
    T = _check_square(A)
    if T < 2:
        return None
    last = T - 1
    return float(sum(A[j][j] - A[last][j] for j in range(last)) / last)


def backward_transfer(A: Matrix) -> Optional[float]:
    """Backward transfer, BWT = ``(1/T) Σ_{j<T} (A[T][j] − A[j][j])`` (Lopez-Paz & Ranzato, GEM, NeurIPS 2017, Eq. 3).

    Negative values mean forgetting; ``BWT = −forgetting_from_first``. ``None`` for a single experience.
    """
    T = _check_square(A)
    if T < 2:
        return None
    last = T - 1
    return float(sum(A[last][j] - A[j][j] for j in range(last)) / last)


def harmonic_mean(base: Optional[float], novel: Optional[float]) -> Optional[float]:
    """Harmonic mean ``2·b·n / (b + n)`` of base- and novel-class accuracy (Peng et al., ALICE, ECCV 2022).

    ``None`` when novel accuracy is undefined (the base session); ``0.0`` when both are zero.
    """
    if base is None or novel is None:
        return None
    if base + novel == 0:
        return 0.0
    return float(2.0 * base * novel / (base + novel))


def performance_drop(seen: Sequence[float]) -> float:
    """Performance drop, ``seen[0] − seen[T]``: first minus last session accuracy (Tao et al., TOPIC, CVPR 2020; TEEN Table 3 "PD")."""
    if not seen:
        raise ValueError("seen-class accuracy list is empty")
    return float(seen[0] - seen[-1])


def forward_transfer(ahead: Matrix, initial: Sequence[Optional[float]]) -> Optional[float]:
    """Forward transfer, FWT = ``(1/T) Σ_{j=1..T} (R[j−1][j] − b[j])`` (Lopez-Paz & Ranzato, GEM, NeurIPS
    2017, Eq. 4; 1-based there: ``1/(T−1) Σ_{i=2..T} (R_{i−1,i} − b̄_i)``).

    0-based here: ``ahead[j−1][j]`` is the accuracy on experience ``j`` *before* training on it (after
    experience ``j−1``), ``initial[j]`` (GEM's ``b̄_j``) the accuracy on ``j`` of the model at its random
    initialisation, before the first experience. Both must be measured the same way; clproto measures them
    task-incrementally (argmax over ``j``'s own classes), because class-incremental prediction cannot
    choose a class not yet seen. Only the entries just above the diagonal are read.

    ``None`` when undefined: a single experience, or any needed entry ``None`` — e.g. a strategy that
    cannot score classes it has not seen (prototype methods score them ``-inf``), for which there is no
    accuracy before training and no honest ``b̄_j`` either.
    """
    T = len(ahead)
    if len(initial) != T:
        raise ValueError(f"{len(initial)} initial accuracies for {T} experiences")
    if T < 2:
        return None
    gains = []
    for j in range(1, T):
        if len(ahead[j - 1]) != T:
            raise ValueError(f"matrix row {j - 1} has {len(ahead[j - 1])} entries, expected {T}")
        before, b = ahead[j - 1][j], initial[j]
        if before is None or b is None:
            return None
        gains.append(before - b)
    return float(sum(gains) / len(gains))


TOP5_MIN_CLASSES = 10  # top-5 accuracy is reported only over at least this many candidate classes


def top_k_accuracy(scores: Sequence[Sequence[float]], labels: Sequence[int], k: int) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores (columns = candidate classes).

    ``labels[i]`` is the column of sample ``i``'s true class. Ties rank the lower column first, as
    ``argmax`` does, so ``k = 1`` is exactly the argmax accuracy: the true class's rank is the number of
    columns scoring more, plus those scoring the same at a lower column.
    """
    s = np.asarray(scores, dtype=np.float64)  # (N, C)
    y = np.asarray(labels, dtype=np.int64)  # (N,)
    if s.ndim != 2 or y.shape != (s.shape[0],) or len(y) == 0:
        raise ValueError(f"scores of shape {s.shape} and labels of shape {y.shape}: expected (N, C) and (N,), N > 0")
    if k < 1 or ((y < 0) | (y >= s.shape[1])).any():
        raise ValueError(f"k = {k} must be >= 1 and labels within 0..{s.shape[1] - 1}")
    true = s[np.arange(len(y)), y][:, None]  # (N, 1)
    lower = np.arange(s.shape[1])[None, :] < y[:, None]  # (N, C): columns before the true one
    rank = (s > true).sum(axis=1) + ((s == true) & lower).sum(axis=1)  # (N,)
    return float((rank < k).mean())


def top5_accuracy(scores: Sequence[Sequence[float]], labels: Sequence[int]) -> Optional[float]:
    """:func:`top_k_accuracy` with ``k = 5``; ``None`` with fewer than :data:`TOP5_MIN_CLASSES` candidate classes
    (where five guesses out of a handful would say little)."""
    if np.asarray(scores).shape[-1] < TOP5_MIN_CLASSES:
        return None
    return top_k_accuracy(scores, labels, 5)


def old_new_accuracy(accuracy_matrix: Matrix, test_sizes: Sequence[int]) -> tuple[list[Optional[float]], list[float]]:
    """Accuracy on the old and on the new classes after each step of a class-incremental stream.

    ``old[t] = Σ_{j<t} n_j A[t][j] / Σ_{j<t} n_j`` (test-size-weighted, i.e. the accuracy on the union of
    the earlier experiences' test sets; ``None`` at ``t = 0`` and when those sets are empty) and
    ``new[t] = A[t][t]``, the accuracy on the experience just learned — the "old" / "new" top-1 split
    that PyCIL (Zhou et al., "PyCIL: a Python toolbox for class-incremental learning", 2023) logs per step.
    ``n_j`` = ``test_sizes[j]``, the test samples of experience ``j``.
    """
    T = _check_square(accuracy_matrix)
    if len(test_sizes) != T:
        raise ValueError(f"{len(test_sizes)} test sizes for an accuracy matrix of {T} experiences")
    if any(n < 0 for n in test_sizes):
        raise ValueError(f"test sizes must be non-negative, got {list(test_sizes)}")
    old: list[Optional[float]] = []
    new: list[float] = []
    for t in range(T):
        weight = sum(test_sizes[j] for j in range(t))
        old.append(float(sum(test_sizes[j] * accuracy_matrix[t][j] for j in range(t)) / weight) if weight > 0 else None)
        new.append(float(accuracy_matrix[t][t]))
    return old, new
