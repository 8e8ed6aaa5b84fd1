"""Every metric against matrices computed by hand."""

import math

import pytest

from clproto.evaluation import metrics as M

# After step 1 the first experience *improves* (0.6 -> 0.8), so the max-based forgetting of
# Chaudhry et al. differs from the first-value-based one.
A = [
    [0.6, None, None],
    [0.8, 0.7, None],
    [0.5, 0.6, 0.9],
]
SEEN = [0.6, 0.75, 2 / 3]


def test_final_and_average_accuracy():
    assert M.final_accuracy(SEEN) == pytest.approx(2 / 3)
    assert M.average_accuracy(A) == pytest.approx((0.5 + 0.6 + 0.9) / 3)


def test_average_incremental_accuracy():
    assert M.average_incremental_accuracy(SEEN) == pytest.approx((0.6 + 0.75 + 2 / 3) / 3)


def test_forgetting_uses_the_max_over_earlier_steps():
    # j=0: max(0.6, 0.8) - 0.5 = 0.3 ; j=1: 0.7 - 0.6 = 0.1 -> 0.2
    assert M.forgetting(A) == pytest.approx(0.2)


def test_forgetting_from_first_and_bwt():
    # j=0: 0.6 - 0.5 = 0.1 ; j=1: 0.7 - 0.6 = 0.1
    assert M.forgetting_from_first(A) == pytest.approx(0.1)
    assert M.backward_transfer(A) == pytest.approx(-0.1)


def test_single_experience_has_no_forgetting():
    assert M.forgetting([[0.9]]) is None
    assert M.backward_transfer([[0.9]]) is None
    assert M.forgetting_from_first([[0.9]]) is None
    assert M.average_accuracy([[0.9]]) == pytest.approx(0.9)


def test_negative_forgetting_when_accuracy_rises():
    B = [[0.5, None], [0.7, 0.9]]
    assert M.forgetting(B) == pytest.approx(-0.2)
    assert M.backward_transfer(B) == pytest.approx(0.2)


def test_harmonic_mean_and_performance_drop():
    assert M.harmonic_mean(0.8, 0.2) == pytest.approx(2 * 0.8 * 0.2 / 1.0)
    assert M.harmonic_mean(0.0, 0.0) == 0.0
    assert M.harmonic_mean(0.7, None) is None
    assert M.performance_drop([0.8, 0.7, 0.55]) == pytest.approx(0.25)


def test_metrics_do_not_mutate_input():
    import copy

    before = copy.deepcopy(A)
    for f in (M.average_accuracy, M.forgetting, M.forgetting_from_first, M.backward_transfer):
        f(A)
    assert A == before


@pytest.mark.parametrize("bad", [[], [[0.5, None]], [[None]], [[0.5, None], [None, 0.5]]])
def test_malformed_matrices_are_rejected(bad):
    with pytest.raises(ValueError):
        M.forgetting(bad)


def test_compute_metrics_few_shot_lists():
    from clproto.evaluation.results import compute_metrics

    m = compute_metrics(A, A, SEEN, few_shot=True, base_accuracy=[0.6, 0.7, 0.65], novel_accuracy=[None, 0.9, 0.5])
    assert m.harmonic_mean[0] is None
    assert m.harmonic_mean[2] == pytest.approx(2 * 0.65 * 0.5 / 1.15)
    assert m.performance_drop == pytest.approx(0.6 - 2 / 3)
    assert not math.isnan(m.forgetting)


# --------------------------------------------------------------------------- top-k accuracy
# 3 samples x 4 candidate classes; the true class's rank (0 = best) by hand:
#   sample 0 (class 2, 0.5): col 0 scores more, col 1 ties at a lower column        -> rank 2
#   sample 1 (class 0, 0.3): col 3 scores more; cols 1, 2 tie but come after col 0   -> rank 1
#   sample 2 (class 3, 0.1): every other column scores more                         -> rank 3
TOPK_SCORES = [[0.9, 0.5, 0.5, 0.1],
               [0.3, 0.3, 0.3, 0.7],
               [0.4, 0.3, 0.2, 0.1]]
TOPK_LABELS = [2, 0, 3]


def test_top_k_accuracy_by_hand():
    assert M.top_k_accuracy(TOPK_SCORES, TOPK_LABELS, 1) == 0.0
    assert M.top_k_accuracy(TOPK_SCORES, TOPK_LABELS, 2) == pytest.approx(1 / 3)  # sample 1 (rank 1)
    assert M.top_k_accuracy(TOPK_SCORES, TOPK_LABELS, 3) == pytest.approx(2 / 3)  # + sample 0 (rank 2)
    assert M.top_k_accuracy(TOPK_SCORES, TOPK_LABELS, 4) == 1.0  # + sample 2 (rank 3)


def test_top_1_is_the_argmax_accuracy_ties_included():
    import numpy as np

    rng = np.random.default_rng(0)
    s = rng.integers(0, 3, size=(200, 6)).astype(float)  # many ties
    y = rng.integers(0, 6, size=200)
    assert M.top_k_accuracy(s, y, 1) == pytest.approx(float((s.argmax(axis=1) == y).mean()))


def test_top5_needs_ten_candidate_classes():
    assert M.top5_accuracy([[0.0] * 9], [0]) is None
    # 10 classes, scores = column index: class c has rank 9 - c, within the top 5 iff c >= 5
    scores = [list(range(10))] * 4
    assert M.top5_accuracy(scores, [9, 5, 4, 0]) == pytest.approx(0.5)


@pytest.mark.parametrize("scores, labels, k", [([[0.1, 0.2]], [2], 1), ([[0.1, 0.2]], [0], 0), ([0.1], [0], 1),
                                               ([], [], 1)])
def test_top_k_rejects_bad_input(scores, labels, k):
    with pytest.raises(ValueError):
        M.top_k_accuracy(scores, labels, k)


# --------------------------------------------------------------------------- forward transfer
# ahead[t][j] (j > t): task-IL accuracy on experience j before training on it; initial: the untrained model.
AHEAD = [[None, 0.6, 0.3],
         [None, None, 0.5],
         [None, None, None]]
INITIAL = [0.5, 0.4, 0.2]


def test_forward_transfer_gem_by_hand():
    # j=1: 0.6 - 0.4 = 0.2 ; j=2: 0.5 - 0.2 = 0.3 -> 0.25 (ahead[0][2] is not used)
    assert M.forward_transfer(AHEAD, INITIAL) == pytest.approx(0.25)


def test_forward_transfer_is_undefined_without_every_entry():
    assert M.forward_transfer([[None]], [0.5]) is None  # one experience
    assert M.forward_transfer(AHEAD, [0.5, None, 0.2]) is None  # the untrained model could not score j=1
    assert M.forward_transfer([[None, None, 0.3], [None, None, 0.5], [None] * 3], INITIAL) is None
    with pytest.raises(ValueError):
        M.forward_transfer(AHEAD, [0.5, 0.4])


def test_compute_metrics_top5_and_forward_transfer():
    from clproto.evaluation.results import compute_metrics

    m = compute_metrics(A, A, SEEN, few_shot=False, seen_top5_accuracy=[None, None, 0.9],
                        task_accuracy_ahead=AHEAD, initial_task_accuracy=INITIAL)
    assert m.final_top5_accuracy == 0.9 and m.forward_transfer == pytest.approx(0.25)
    m = compute_metrics(A, A, SEEN, few_shot=False)  # nothing measured: both undefined
    assert m.final_top5_accuracy is None and m.forward_transfer is None


def test_old_new_accuracy_by_hand():
    # three experiences with 10, 30 and 20 test samples
    A = [[0.9, None, None],
         [0.5, 0.8, None],
         [0.2, 0.6, 0.7]]
    old, new = M.old_new_accuracy(A, [10, 30, 20])
    assert old[0] is None  # nothing is old after the first experience
    assert old[1] == pytest.approx(0.5)  # only experience 0
    assert old[2] == pytest.approx((10 * 0.2 + 30 * 0.6) / 40)  # = 0.5, weighted by test size (unweighted: 0.4)
    assert new == pytest.approx([0.9, 0.8, 0.7])  # the diagonal
    assert A[2] == [0.2, 0.6, 0.7]  # input untouched
    with pytest.raises(ValueError, match="test sizes"):
        M.old_new_accuracy(A, [10, 30])
    assert M.old_new_accuracy(A, [0, 30, 20])[0][1] is None  # an empty earlier test set: undefined, not 0/0
