"""Scenario invariants: each class in exactly one experience, shot counts, seed determinism, bad input."""

import numpy as np
import pytest

from clproto.errors import ConfigError
from clproto.scenarios import ScenarioConfig, build_scenario


def ci(**kw):
    return ScenarioConfig(**{"name": "t", "dataset": "tiny", "increment": 2, **kw})


def fs(**kw):
    return ScenarioConfig(**{"name": "t", "dataset": "tiny", "kind": "few-shot", "base_classes": 2, "ways": 2, "shots": 3, **kw})


def test_sequence_protocol(tiny_dataset):
    sc = build_scenario(ci(), tiny_dataset, seed=0)
    assert len(sc) == 3
    assert [e.index for e in sc] == [0, 1, 2]
    assert sc[-1] is sc[2] and len(sc[0:2]) == 2
    assert list(iter(sc)) == list(sc)


@pytest.mark.parametrize("config", [ci(), ci(initial_increment=4), ci(increments=[1, 2, 3]), fs(), fs(train_per_class=5)])
def test_each_class_in_exactly_one_experience(tiny_dataset, config):
    sc = build_scenario(config, tiny_dataset, seed=3)
    classes = [c for e in sc for c in e.classes]
    assert sorted(classes) == list(range(tiny_dataset.num_classes))
    assert tuple(classes) == sc.class_order
    for e in sc:
        assert set(tiny_dataset.train_y[e.train_indices]) == set(e.classes)
        assert set(tiny_dataset.test_y[e.test_indices]) == set(e.classes)
        # every test image of the experience's classes
        if not config.test_per_class:
            assert len(e.test_indices) == np.isin(tiny_dataset.test_y, e.classes).sum()
    assert sc[-1].seen_classes == sc.class_order


def test_few_shot_counts(tiny_dataset):
    sc = build_scenario(fs(), tiny_dataset, seed=1)
    base = sc[0]
    assert len(base.train_indices) == 2 * 12  # all training data of the base classes
    for e in sc[1:]:
        counts = np.bincount(tiny_dataset.train_y[e.train_indices], minlength=6)
        assert sorted(counts[list(e.classes)]) == [3, 3]
        assert e.base_classes == base.classes


def test_seed_determinism_and_variation(tiny_dataset):
    a = build_scenario(fs(), tiny_dataset, seed=5)
    b = build_scenario(fs(), tiny_dataset, seed=5)
    c = build_scenario(fs(), tiny_dataset, seed=6)
    assert a.class_order == b.class_order
    assert all(np.array_equal(x.train_indices, y.train_indices) for x, y in zip(a, b))
    orders = {build_scenario(fs(), tiny_dataset, seed=s).class_order for s in range(6)}
    assert len(orders) > 1 and (a.class_order != c.class_order or any(
        not np.array_equal(x.train_indices, y.train_indices) for x, y in zip(a, c)))


def test_caps_are_seeded_and_independent_of_order(tiny_dataset):
    sc = build_scenario(ci(train_per_class=5, test_per_class=2), tiny_dataset, seed=0)
    for e in sc:
        assert len(e.train_indices) == 5 * len(e.classes)
        assert len(e.test_indices) == 2 * len(e.classes)
    # changing a cap does not change the class order
    assert build_scenario(ci(test_per_class=3), tiny_dataset, seed=0).class_order == sc.class_order


def test_listed_and_explicit_orders(tiny_dataset):
    assert build_scenario(ci(class_order="listed"), tiny_dataset, seed=9).class_order == tuple(range(6))
    sc = build_scenario(ci(class_order=["c5", 4, "c3", 2, 1, 0]), tiny_dataset, seed=0)
    assert sc.class_order == (5, 4, 3, 2, 1, 0)
    assert sc[0].classes == (5, 4)


def test_with_dataset_keeps_indices(tiny_dataset):
    sc = build_scenario(ci(), tiny_dataset, seed=0)
    feats = tiny_dataset.with_inputs(np.zeros((len(tiny_dataset.train_y), 3), np.float32),
                                     np.zeros((len(tiny_dataset.test_y), 3), np.float32))
    sc2 = sc.with_dataset(feats)
    assert all(np.array_equal(a.train_indices, b.train_indices) for a, b in zip(sc, sc2))
    assert sc2[0].train_x.shape[1] == 3


@pytest.mark.parametrize(
    "config, field",
    [
        (ci(class_order=[0, 1, 1, 2, 3, 4]), "class_order"),  # duplicates
        (ci(class_order=[0, 1, 2, 3, 4, 99]), "class_order"),  # unknown id
        (ci(class_order=["c0", "nope", 1, 2, 3, 4]), "class_order"),  # unknown name
        (ci(class_order=[0, 1, 2, 3, 4]), "class_order"),  # missing one
        (ci(class_order="sorted"), "class_order"),
        (ci(increment=4), "increment"),  # 6 classes do not split into 4s
        (ci(increments=[2, 2, 3]), "increments"),  # sums to 7
        (ci(increment=0), "increment"),
        (fs(shots=50), "shots"),  # more shots than images
        (fs(base_classes=0), "base_classes"),
        (fs(sessions=3), "sessions"),  # 2 + 3*2 > 6 (fewer is fine: a subset of the classes)
        (ci(kind="online"), "kind"),
    ],
)
def test_bad_definitions_name_the_field(tiny_dataset, config, field):
    with pytest.raises(ConfigError) as err:
        build_scenario(config, tiny_dataset, seed=0, where="x.toml")
    assert err.value.field == field
    assert "x.toml" in str(err.value)


def test_empty_test_set_is_an_error(tiny_dataset):
    from clproto.data.dataset import Dataset

    d = tiny_dataset
    keep = d.test_y != 0  # class 0 has no test images
    broken = Dataset(d.name, d.train_x, d.train_y, d.test_x[keep], d.test_y[keep], d.class_names, d.identity)
    with pytest.raises(ConfigError, match="empty test set"):
        build_scenario(ci(class_order="listed"), broken, seed=0)


def test_the_shots_hint_suggests_a_larger_cap_only_when_one_would_help(tiny_dataset):
    with pytest.raises(ConfigError) as err:  # 12 training images per class, all of them kept
        build_scenario(fs(shots=13), tiny_dataset, seed=0)
    assert "train_per_class" not in str(err.value) and "at most 12 (the class has no more" in str(err.value)
    with pytest.raises(ConfigError) as err:  # the cap keeps 5 of 12
        build_scenario(fs(shots=8, train_per_class=5), tiny_dataset, seed=0)
    assert "at most 5, or a train_per_class of at least 8" in str(err.value)
    with pytest.raises(ConfigError) as err:  # even without the cap there are too few
        build_scenario(fs(shots=20, train_per_class=5), tiny_dataset, seed=0)
    assert "at most 5, or at most 12 with a train_per_class of at least 12" in str(err.value)
