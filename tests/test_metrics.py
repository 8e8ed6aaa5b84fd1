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
