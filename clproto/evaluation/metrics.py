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
