"""Avalanche interop: scenario round trips, every registered strategy inside Avalanche, metric parity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from avalanche.benchmarks.scenarios.dataset_scenario import benchmark_from_datasets
from avalanche.benchmarks.scenarios.supervised import class_incremental_benchmark
from avalanche.benchmarks.scenarios.task_aware import task_incremental_benchmark
from avalanche.benchmarks.utils import AvalancheDataset, _make_taskaware_tensor_classification_dataset
from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
from avalanche.models import NCMClassifier
from avalanche.training.plugins import EvaluationPlugin
from torch.utils.data import TensorDataset

from clproto.avalanche import INDEX_ATTRIBUTE, ClprotoTemplate, StrategyModule, from_avalanche, read_metrics, to_avalanche
from clproto.data import load_dataset
from clproto.errors import ConfigError
from clproto.evaluation import Evaluator
from clproto.evaluation import metrics as M
from clproto.features.backbone import PixelBackbone, extract_dataset_features
from clproto.scenarios import ScenarioConfig, build_scenario
from clproto.strategies import NMC, REGISTRY

pytestmark = pytest.mark.filterwarnings("ignore:No loggers specified")  # metrics are read, not logged

# small training budgets for strategies that train a network (fields applied only where they exist)
FAST = {"architecture": "convnet-small", "epochs": 1, "batch_size": 32,
        "projection_dim": 256}  # RanPAC: the default M = 10 000 makes every solve seconds long


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def split(dataset, **fields):
    config = ScenarioConfig(name="split-digits", dataset="digits", **({"increment": 2} | fields))
    return build_scenario(config, dataset, seed=0)


def features(scenario):
    return scenario.with_dataset(extract_dataset_features(PixelBackbone(), scenario.dataset, progress=False).features)


def evaluation_plugin():
    return EvaluationPlugin(accuracy_metrics(stream=True, experience=True),
                            forgetting_metrics(experience=True, stream=True), loggers=[])


def clproto_steps(scenario, strategy):
    evaluator = Evaluator(scenario)
    steps = []
    for exp in scenario:
        strategy.fit_experience(exp)
        steps.append(evaluator.evaluate(strategy.predict_scores, exp.index))
    return steps


def avalanche_run(benchmark, template):
    for t, exp in enumerate(benchmark.train_stream):
        template.train(exp)
        template.eval(benchmark.test_stream[: t + 1])
    return read_metrics(template.evaluator, num_experiences=len(benchmark.train_stream))


def assert_parity(steps, got):
    A = [s.accuracy_row for s in steps]
    T = len(A)
    for t in range(T):
        for j in range(t + 1):
            assert got.accuracy_matrix[t][j] == pytest.approx(A[t][j], abs=1e-6), (t, j)
    assert got.stream_accuracy == pytest.approx([s.seen_accuracy for s in steps], abs=1e-6)
    if T > 1:
        assert got.stream_forgetting == pytest.approx(M.forgetting_from_first(A), abs=1e-6)
        assert got.experience_forgetting[:-1] == pytest.approx([A[j][j] - A[-1][j] for j in range(T - 1)], abs=1e-6)


# --------------------------------------------------------------------------- scenarios both ways
ROUND_TRIPS = {
    "split": {},
    "capped-uneven": {"increments": [4, 3, 3], "train_per_class": 20, "test_per_class": 10, "class_order": "listed"},
    "few-shot": {"kind": "few-shot", "base_classes": 4, "ways": 2, "shots": 5},
}


@pytest.mark.parametrize("case", ROUND_TRIPS)
def test_round_trip_keeps_every_index_label_and_boundary(digits, case):
    sc = split(digits, **ROUND_TRIPS[case])
    bm = to_avalanche(sc)
    assert len(bm.train_stream) == len(bm.test_stream) == len(sc)
    for exp, tr, te in zip(sc, bm.train_stream, bm.test_stream):
        for av, idx, x, y in ((tr, exp.train_indices, digits.train_x, digits.train_y),
                              (te, exp.test_indices, digits.test_x, digits.test_y)):
            assert list(getattr(av.dataset, INDEX_ATTRIBUTE)) == idx.tolist()
            assert [int(t) for t in av.dataset.targets] == y[idx].tolist()
            assert av.classes_in_this_experience == set(exp.classes)
            first, last = av.dataset[0], av.dataset[len(idx) - 1]
            assert np.array_equal(first[0].numpy(), x[idx[0]]) and np.array_equal(last[0].numpy(), x[idx[-1]])
            assert int(first[2]) == 0  # task label 0: class-incremental
    back = from_avalanche(bm, dataset=sc.dataset)
    assert back.dataset is sc.dataset
    assert (back.name, back.kind, back.seed, back.class_order) == (sc.name, sc.kind, sc.seed, sc.class_order)
    for a, b in zip(sc, back):
        assert a.classes == b.classes and a.base_classes == b.base_classes
        assert np.array_equal(a.train_indices, b.train_indices) and np.array_equal(a.test_indices, b.test_indices)


@pytest.mark.parametrize("case", ["split", "capped-uneven"])
def test_round_trip_without_the_dataset_copies_the_same_samples(digits, case):
    sc = split(digits, **ROUND_TRIPS[case])
    back = from_avalanche(to_avalanche(sc))
    assert back.dataset is not sc.dataset and back.class_order == sc.class_order
    for a, b in zip(sc, back):
        assert np.array_equal(a.train_x, b.train_x) and np.array_equal(a.train_y, b.train_y)
        assert np.array_equal(a.test_x, b.test_x) and np.array_equal(a.test_y, b.test_y)
        if case == "split":  # every sample used: the copied dataset is the original, indices included
            assert np.array_equal(a.train_indices, b.train_indices) and np.array_equal(a.test_indices, b.test_indices)


def _tensor_splits(digits):
    return ({"train": TensorDataset(torch.from_numpy(digits.train_x), torch.from_numpy(digits.train_y)),
             "test": TensorDataset(torch.from_numpy(digits.test_x), torch.from_numpy(digits.test_y))})


def test_from_avalanche_class_incremental_benchmark(digits):
    order = [3, 1, 4, 0, 5, 9, 2, 6, 8, 7]
    bm = class_incremental_benchmark(_tensor_splits(digits), class_order=order, num_classes_per_exp=[4, 3, 3])
    sc = from_avalanche(bm)
    assert [e.classes for e in sc] == [(0, 1, 3, 4), (2, 5, 9), (6, 7, 8)]  # no order kept: sorted
    for exp in sc:
        assert exp.train_x.dtype == torch.uint8 and exp.train_x.shape[1:] == (8, 8, 1)
        for c in exp.classes:  # every sample of the class, with its own image
            mask = digits.train_y == c
            assert int((exp.train_y == c).sum()) == int(mask.sum())
            assert int(exp.train_x[exp.train_y == c].long().sum()) == int(digits.train_x[mask].astype(np.int64).sum())
        assert set(exp.test_y.tolist()) == set(exp.classes)


def test_class_incremental_benchmark_num_experiences_drops_leftover_classes(digits):
    """The pitfall documented in clproto.avalanche: 10 classes in 3 experiences keep only 9."""
    bm = class_incremental_benchmark(_tensor_splits(digits), class_order=list(range(10)), num_experiences=3)
    sc = from_avalanche(bm)
    assert [e.classes for e in sc] == [(0, 1, 2), (3, 4, 5), (6, 7, 8)]
    assert 9 not in sc.class_order


def test_from_avalanche_keeps_the_class_order_of_a_deprecated_nc_benchmark(digits):
    from avalanche.benchmarks.scenarios.deprecated.generators import nc_benchmark

    splits = _tensor_splits(digits)
    bm = nc_benchmark(splits["train"], splits["test"], n_experiences=5, task_labels=False, seed=1)
    sc = from_avalanche(bm)
    assert list(sc.class_order) == list(bm.classes_order)
    assert [set(e.classes) for e in sc] == [set(e.classes_in_this_experience) for e in bm.train_stream]


def test_from_avalanche_benchmark_from_datasets_with_float_inputs():
    rng = np.random.default_rng(0)
    parts = []
    for classes in ((0, 1), (2, 3)):
        y = np.repeat(classes, 5)
        parts.append(_make_taskaware_tensor_classification_dataset(torch.from_numpy(rng.normal(size=(10, 2, 3)).astype(np.float32)),
                                                                   torch.from_numpy(y)))
    sc = from_avalanche(benchmark_from_datasets(train=parts, test=parts))
    assert [e.classes for e in sc] == [(0, 1), (2, 3)] and sc.kind == "class-incremental"
    assert sc.dataset.train_x.shape == (20, 6) and sc.dataset.train_x.dtype == np.float32  # flattened features
    expected = torch.stack([parts[1][i][0].reshape(-1) for i in range(10)])  # (10, 6) in stream order
    assert torch.equal(sc[1].train_x, expected) and sc[1].train_y.tolist() == [2] * 5 + [3] * 5


# --------------------------------------------------------------------------- bad input
def test_task_labels_are_refused(digits):
    bm = task_incremental_benchmark(to_avalanche(split(digits)), reset_task_labels=True)
    with pytest.raises(ConfigError, match=r"task labels \[0, 1, 2, 3, 4\].*class-incremental"):
        from_avalanche(bm)


def test_overlapping_classes_are_refused():
    y = torch.tensor([0, 1, 1, 2])
    d01 = _make_taskaware_tensor_classification_dataset(torch.zeros(2, 3), y[:2])
    d12 = _make_taskaware_tensor_classification_dataset(torch.zeros(2, 3), y[2:])
    with pytest.raises(ConfigError, match="class 1 appears in train experiences 0 and 1"):
        from_avalanche(benchmark_from_datasets(train=[d01, d12], test=[d01, d12]))


def test_unsupported_inputs_are_refused():
    unlabelled = AvalancheDataset([TensorDataset(torch.zeros(4, 3))])
    with pytest.raises(ConfigError, match="unsupported dataset type AvalancheDataset.*expected a class-incremental"):
        from_avalanche(benchmark_from_datasets(train=[unlabelled], test=[unlabelled]))
    empty = _make_taskaware_tensor_classification_dataset(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ConfigError, match=r"train_stream\[0\]'.*experience has no samples"):
        from_avalanche(benchmark_from_datasets(train=[empty], test=[empty]))
    with pytest.raises(ConfigError, match="has streams none"):
        from_avalanche([1, 2, 3])
    ints = _make_taskaware_tensor_classification_dataset(torch.zeros(2, 3, dtype=torch.int64), torch.tensor([0, 1]))
    with pytest.raises(ConfigError, match="dtype int64.*expected uint8 images or floating-point features"):
        from_avalanche(benchmark_from_datasets(train=[ints], test=[ints]))


def test_a_foreign_dataset_is_refused(digits):
    bm = to_avalanche(split(digits))
    other = dataclasses.replace(digits, train_y=np.roll(digits.train_y, 1))
    with pytest.raises(ConfigError, match="does not match the given dataset"):
        from_avalanche(bm, dataset=other)


def test_feature_strategy_on_images_needs_a_backbone(digits):
    template = ClprotoTemplate(strategy=NMC(num_classes=10), num_classes=10, evaluator=evaluation_plugin())
    with pytest.raises(ConfigError, match="consumes features but the experience holds uint8 images"):
        template.train(to_avalanche(split(digits)).train_stream[0])


# --------------------------------------------------------------------------- strategies inside Avalanche
def _scenario_for(entry, dataset):
    if "class-incremental" in entry.scenario_kinds:
        config = ScenarioConfig(name="tiny", dataset="tiny", increment=2)
    else:
        config = ScenarioConfig(name="tiny", dataset="tiny", kind="few-shot", base_classes=2, ways=2, shots=3)
    sc = build_scenario(config, dataset, seed=0)
    return features(sc) if entry.cls.input_kind == "features" else sc


def _fast(config):
    names = {f.name for f in dataclasses.fields(config)}
    return dataclasses.replace(config, **{k: v for k, v in FAST.items() if k in names})


# clproto's own strategies; "avalanche" (an Avalanche strategy already) is tested in
# tests/integration/test_avalanche_rows.py
OWN = [n for n in REGISTRY.names() if n != "avalanche"]


@pytest.mark.parametrize("name", OWN)
def test_every_registered_strategy_runs_inside_avalanche_with_parity(name, tiny_dataset):
    entry = REGISTRY.get(name)
    sc = _scenario_for(entry, tiny_dataset)
    params = _fast(entry.cls.Config())
    steps = clproto_steps(sc, entry.cls(config=params, num_classes=sc.num_classes, seed=0))
    bm = to_avalanche(sc)
    for dataset in (sc.dataset, None):  # the exact experiences, then copies read from Avalanche
        template = ClprotoTemplate(strategy=entry.cls(config=params, num_classes=sc.num_classes, seed=0),
                                   num_classes=sc.num_classes, dataset=dataset, evaluator=evaluation_plugin())
        got = avalanche_run(bm, template)
        if entry.cls.input_kind == "features":
            assert template.clock.train_iterations == 0  # frozen features: no SGD step at all
        else:  # the strategy's own steps, relayed to Avalanche's callbacks (none by the template's optimiser)
            assert template.clock.train_iterations > 0
        assert_parity(steps, got)


@pytest.mark.parametrize("name", [n for n in OWN if REGISTRY.get(n).cls.input_kind == "images"])
def test_trained_strategies_report_their_per_batch_loss_through_the_template(name, tiny_dataset):
    from avalanche.evaluation.metrics import loss_metrics

    entry = REGISTRY.get(name)
    sc = _scenario_for(entry, tiny_dataset)
    params = dataclasses.replace(_fast(entry.cls.Config()), epochs=2, batch_size=8)
    strategy = entry.cls(config=params, num_classes=sc.num_classes, seed=0)
    seen = []  # what the strategy's own loop reports, beside what Avalanche records
    strategy.loop.listeners.append(seen.append)
    evaluator = EvaluationPlugin(loss_metrics(minibatch=True, epoch=True), accuracy_metrics(epoch=True), loggers=[])
    template = ClprotoTemplate(strategy=strategy, num_classes=sc.num_classes, dataset=sc.dataset, evaluator=evaluator)
    for exp in to_avalanche(sc).train_stream:
        template.train(exp)
    assert strategy.loop.listeners == [seen.append]  # the template's relay is detached after each fit

    metrics = evaluator.get_all_metrics()
    minibatch = metrics["Loss_MB/train_phase/train_stream"][1]
    epoch = metrics["Loss_Epoch/train_phase/train_stream"][1]
    steps = [e for e in seen if e.kind == "step"]
    epochs = [e for e in seen if e.kind == "epoch_end"]
    assert len(minibatch) == len(steps) == template.clock.train_iterations
    assert minibatch == pytest.approx([e.loss for e in steps], rel=1e-6)
    assert len(epoch) == len(epochs) == 2 * len(sc)  # 2 epochs per experience
    assert epoch == pytest.approx([e.loss for e in epochs], rel=1e-5)  # sample-weighted means agree
    accuracy = metrics["Top1_Acc_Epoch/train_phase/train_stream"][1]
    assert len(accuracy) == len(epochs) and all(0.0 <= a <= 1.0 for a in accuracy)


def test_metric_parity_on_split_digits(digits):
    sc = split(digits)
    fsc = features(sc)
    steps = clproto_steps(fsc, NMC(num_classes=10))
    A = [s.accuracy_row for s in steps]
    assert M.forgetting(A) >= M.forgetting_from_first(A)  # max over past steps vs. first accuracy
    runs = [(to_avalanche(fsc), dict(dataset=fsc.dataset)),  # feature benchmark, exact experiences
            (to_avalanche(sc), dict(backbone=PixelBackbone()))]  # image benchmark, features computed per batch
    for bm, kw in runs:
        template = ClprotoTemplate(strategy=NMC(num_classes=10), num_classes=10, evaluator=evaluation_plugin(), **kw)
        assert_parity(steps, avalanche_run(bm, template))


def test_unseen_classes_score_minus_inf_unlike_avalanche_ncm():
    """The NCMClassifier pitfall documented in clproto.avalanche, and what the adapter does instead."""
    means = {0: torch.tensor([1.0, 0.0]), 1: torch.tensor([0.0, 1.0])}
    x = torch.tensor([[-1.0, 0.0]])
    ncm = NCMClassifier(normalize=True)
    ncm.update_class_means_dict(means)
    ncm.init_missing_classes([2], 2, "cpu")  # what NCMClassifier.adaptation does for an eval experience's classes
    assert ncm(x).argmax(1).item() == 2  # the unseen class wins with its zero-vector mean

    nmc = NMC(num_classes=3)
    nmc.partial_fit(torch.stack(list(means.values())), torch.tensor([0, 1]))
    scores = StrategyModule(strategy=nmc)(x)
    assert scores[0, 2] == float("-inf") and scores.argmax(1).item() in (0, 1)


def test_plugins_that_replace_the_adapted_dataset_change_what_the_strategy_sees(tiny_dataset):
    from avalanche.training.plugins import GDumbPlugin

    sc = features(build_scenario(ScenarioConfig(name="tiny", dataset="tiny", increment=2), tiny_dataset, seed=0))
    nmc = NMC(num_classes=sc.num_classes)
    template = ClprotoTemplate(strategy=nmc, num_classes=sc.num_classes, plugins=[GDumbPlugin(mem_size=5)],
                               evaluator=evaluation_plugin())
    template.train(to_avalanche(sc).train_stream[0])
    assert int(nmc.counts.sum()) == 5  # GDumb's buffer, not the experience's 24 samples
