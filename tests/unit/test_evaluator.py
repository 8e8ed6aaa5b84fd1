"""The evaluator alone (clproto/evaluation/evaluator.py): hand-set predictions, accuracy entries counted by hand.

The stream: 6 classes arriving as (2, 3), (0, 1), (4, 5) — so arrival order differs from label order —
with 2 test samples per class. Test sample ``i`` has input ``[i]`` and label ``i // 2``, so the fake
strategy below looks up its hand-set ranking by sample id. Every expected value is a count of the
samples marked correct in the comments, over the samples counted.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clproto.data.dataset import Dataset
from clproto.evaluation.evaluator import Evaluator
from clproto.scenarios.scenario import Scenario

C = 6  # classes
ORDER = [(2, 3), (0, 1), (4, 5)]  # classes of experiences 0, 1, 2
INF = float("inf")


def ids_of(classes) -> list[int]:
    """Test sample ids of ``classes`` (two per class: 2c, 2c + 1)."""
    return [i for c in classes for i in (2 * c, 2 * c + 1)]


def stream(kind: str = "class-incremental", order=ORDER, num_classes: int = C) -> Scenario:
    y = np.repeat(np.arange(num_classes), 2)  # (2C,): sample i has label i // 2
    x = np.arange(len(y), dtype=np.float32)[:, None]  # (2C, 1): the sample id, read back by the fake
    ds = Dataset(name="ids", train_x=x, train_y=y, test_x=x, test_y=y,
                 class_names=tuple(str(c) for c in range(num_classes)), identity=f"ids-{num_classes}")
    return Scenario(name="hand", kind=kind, dataset=ds, class_order=[c for e in order for c in e],
                    experience_classes=order, train_indices=[ids_of(e) for e in order],
                    test_indices=[ids_of(e) for e in order], seed=0)


class HandSet:
    """A fake strategy: for sample ``i`` the classes ``ranking[i]`` score 10, 9, 8, ... (most preferred
    first); every other learned class scores 0, every other not-learned class ``unseen`` (-inf as the
    built-in strategies do). Records the size of every batch it is asked to score."""

    def __init__(self, *, unseen: float = -INF) -> None:
        self.ranking: dict[int, list[int]] = {}
        self.learned: set[int] = set()
        self.unseen = unseen
        self.batches: list[int] = []

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(x))
        out = torch.full((len(x), C), self.unseen)  # (B, C)
        out[:, sorted(self.learned)] = 0.0
        for row, i in enumerate(x[:, 0].long().tolist()):
            for rank, c in enumerate(self.ranking.get(i, [])):
                out[row, c] = 10.0 - rank
        return out


def after_step_0(fake: HandSet) -> None:
    fake.learned = {2, 3}
    fake.ranking = {
        4: [5, 2, 3],  # y=2: unseen class 5 on top; among the seen, 2 -> A ok, TA ok
        5: [3, 2],     # y=2: 3 -> A wrong, TA wrong
        6: [3],        # y=3: ok, ok
        7: [0, 3, 2],  # y=3: unseen 0 on top, then 3 -> ok, ok
    }


def after_step_1(fake: HandSet) -> None:
    fake.learned = {2, 3, 0, 1}
    fake.ranking = {
        4: [0, 2],     # y=2: 0 is seen now -> A wrong; among exp 0's own (2, 3): 2 -> TA ok
        5: [2],        # y=2: ok, ok
        6: [4, 3],     # y=3: unseen 4 on top, then 3 -> ok, ok
        7: [3],        # y=3: ok, ok
        0: [0],        # y=0: ok, ok
        1: [1, 0],     # y=0: 1 -> A wrong; among (0, 1): 1 -> TA wrong
        2: [3, 1],     # y=1: 3 -> A wrong; among (0, 1): 1 -> TA ok
        3: [1],        # y=1: ok, ok
    }


def after_step_2(fake: HandSet) -> None:
    fake.learned = set(range(C))
    fake.ranking = {i: [i // 2] for i in range(2 * C)}  # every sample ok ...
    fake.ranking.update({
        0: [4, 0],     # y=0: 4 -> A wrong; among (0, 1): 0 -> TA ok
        9: [5, 4],     # y=4: 5 -> A wrong; among (4, 5): 5 -> TA wrong
        10: [2, 5],    # y=5: 2 -> A wrong; among (4, 5): 5 -> TA ok
    })


STEPS = [after_step_0, after_step_1, after_step_2]


def run(scenario: Scenario, fake: HandSet, *, batch_size: int = 1024):
    ev = Evaluator(scenario, batch_size=batch_size)
    out = []
    for t, set_up in enumerate(STEPS):
        set_up(fake)
        out.append(ev.evaluate(fake.predict_scores, t))
    return out


def test_class_il_rows_score_only_seen_classes():
    steps = run(stream(), HandSet())
    assert steps[0].accuracy_row == [3 / 4, None, None]  # ids 4, 6, 7 of 4..7
    assert steps[1].accuracy_row == [3 / 4, 2 / 4, None]  # exp 0: 5, 6, 7; exp 1: 0, 3
    assert steps[2].accuracy_row == [4 / 4, 3 / 4, 2 / 4]  # exp 1 misses 0; exp 2 misses 9, 10


def test_task_il_rows_score_each_experience_among_its_own_classes():
    steps = run(stream(), HandSet())
    assert steps[0].task_accuracy_row == [3 / 4, None, None]
    assert steps[1].task_accuracy_row == [4 / 4, 3 / 4, None]  # exp 1: 0, 2, 3 (1 picks class 1)
    assert steps[2].task_accuracy_row == [4 / 4, 4 / 4, 3 / 4]  # exp 2: 9 picks 5


def test_seen_and_per_class_accuracy():
    steps = run(stream(), HandSet())
    assert [s.seen_accuracy for s in steps] == [3 / 4, 5 / 8, 9 / 12]
    assert steps[0].per_class_accuracy == [None, None, 1 / 2, 2 / 2, None, None]
    assert steps[1].per_class_accuracy == [1 / 2, 1 / 2, 1 / 2, 2 / 2, None, None]
    assert steps[2].per_class_accuracy == [1 / 2, 2 / 2, 2 / 2, 2 / 2, 1 / 2, 1 / 2]
    for s in steps:  # the seen accuracy is the pooled one: the classes have equal test sizes here
        seen = [a for a in s.per_class_accuracy if a is not None]
        assert s.seen_accuracy == pytest.approx(sum(seen) / len(seen))


def test_class_il_matrix_equals_an_independent_recount():
    """The class-IL row recomputed in plain Python from the same scores: argmax over the seen classes."""
    sc, fake = stream(), HandSet()
    ev = Evaluator(sc)
    for t, set_up in enumerate(STEPS):
        set_up(fake)
        row = ev.evaluate(fake.predict_scores, t).accuracy_row
        seen = [c for e in ORDER[: t + 1] for c in e]
        for j, exp in enumerate(sc):
            if j > t:
                assert row[j] is None
                continue
            scores = fake.predict_scores(torch.tensor(exp.test_indices, dtype=torch.float32)[:, None]).tolist()
            hits = [max(seen, key=lambda c: s[c]) == int(y)  # ties cannot occur: ranked scores are distinct
                    for s, y in zip(scores, exp.test_y)]
            assert row[j] == sum(hits) / len(hits)


@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_chunking_changes_nothing_and_respects_the_batch_size(batch_size):
    whole = run(stream(), HandSet())
    fake = HandSet()
    chunked = run(stream(), fake, batch_size=batch_size)
    assert chunked == whole
    assert max(fake.batches) <= batch_size
    assert sum(fake.batches) >= 4 + 8 + 12  # every seen test sample scored at each step


def test_few_shot_base_and_novel_accuracy():
    steps = run(stream("few-shot"), HandSet())  # base session = experience 0, classes (2, 3)
    assert [s.base_accuracy for s in steps] == [3 / 4, 3 / 4, 4 / 4]  # ids 4..7
    assert [s.novel_accuracy for s in steps] == [None, 2 / 4, 5 / 8]  # ids 0..3, then 0..3 and 8..11
    assert steps[2].accuracy_row == [4 / 4, 3 / 4, 2 / 4]  # the matrices do not depend on the kind


def test_class_incremental_has_no_base_novel_split():
    steps = run(stream(), HandSet())
    assert all(s.base_accuracy is None and s.novel_accuracy is None for s in steps)


def test_task_accuracy_ahead_is_none_where_scores_are_not_finite():
    steps = run(stream(), HandSet())  # classes not learned yet score -inf
    assert [s.task_accuracy_ahead for s in steps] == [[None, None, None]] * 3


def test_task_accuracy_ahead_and_initial_with_finite_scores_for_unseen_classes():
    sc, fake = stream(), HandSet(unseen=0.0)
    after_step_0(fake)
    fake.ranking.update({
        0: [0], 1: [0], 2: [0], 3: [1],  # exp 1 (0, 1): ids 0, 1, 3 ok -> 3/4
        8: [5], 9: [4], 10: [5], 11: [4],  # exp 2 (4, 5): ids 9, 10 ok -> 2/4
    })
    ev = Evaluator(sc)
    assert ev.evaluate(fake.predict_scores, 0).task_accuracy_ahead == [None, 3 / 4, 2 / 4]
    assert ev.initial_task_accuracy(fake.predict_scores) == [3 / 4, 3 / 4, 2 / 4]  # exp 0 as TA[0][0]
    fake.unseen, fake.learned = -INF, set()  # a prototype strategy before its first experience
    assert ev.initial_task_accuracy(fake.predict_scores) == [None, None, None]


def test_task_accuracy_stops_at_the_first_non_finite_batch():
    sc, fake = stream(), HandSet()
    ev = Evaluator(sc, batch_size=1)
    assert ev.task_accuracy(fake.predict_scores, sc[2]) is None
    assert fake.batches == [1]  # one sample scored, not the experience's four


def test_top5_needs_ten_seen_classes():
    """One experience of 10 classes, one test sample each; class c's sample ranks its true class at
    position c + 1 (classes c+1, c+2, ... before it): top-1 1/10, top-5 5/10."""
    order = [tuple(range(10))]
    ds = stream(order=order, num_classes=10).dataset

    def scores(x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), 10)
        for row, i in enumerate(x[:, 0].long().tolist()):
            c = i // 2
            for rank, k in enumerate([(c + 1 + r) % 10 for r in range(c)] + [c]):
                out[row, k] = 20.0 - rank
        return out

    sc = Scenario(name="ten", kind="class-incremental", dataset=ds, class_order=range(10),
                  experience_classes=order, train_indices=[ids_of(order[0])[::2]],
                  test_indices=[ids_of(order[0])[::2]], seed=0)  # one test sample (id 2c) per class
    step = Evaluator(sc).evaluate(scores, 0)
    assert step.accuracy_row == [1 / 10]
    assert step.seen_top5_accuracy == 5 / 10
    assert run(stream(), HandSet())[2].seen_top5_accuracy is None  # six seen classes: undefined


def test_scores_of_the_wrong_shape_are_refused():
    sc = stream()
    with pytest.raises(RuntimeError, match=r"scores of shape \(4, 5\), expected \(4, 6\)"):
        Evaluator(sc).evaluate(lambda x: torch.zeros(len(x), C - 1), 0)
