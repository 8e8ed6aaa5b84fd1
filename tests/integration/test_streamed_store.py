"""Data larger than RAM (issue 12): the decoded store is written and read through a memory map whose pages are
handed back as it streams — with the same pixels — and benchmarks/large_data.py runs end to end (tiny)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from clproto.data.kinds import decoded
from clproto.data.rows import ImageRows
from clproto.data.sources import load_dataset
from clproto.features.batches import prefetched, read_rows
from conftest import rss_file_kb
from imagezips import image_folder_members, write_zip

ROOT = Path(__file__).resolve().parents[2]


def test_decoding_with_pages_released_every_image_gives_the_same_pixels(tiny_dataset, tmp_path, monkeypatch):
    zip_path = write_zip(tmp_path / "tiny.zip", image_folder_members(tiny_dataset))
    spec = f"imagefolder:{zip_path}?size=12&fit=stretch"  # resized on decode, as a store of mixed sizes would be
    kept = load_dataset(spec, cache_dir=tmp_path / "a", progress=False)
    monkeypatch.setattr(decoded, "RELEASE_BYTES", 1)  # release after every image
    released = load_dataset(spec, cache_dir=tmp_path / "b", progress=False)
    assert isinstance(released.train_x, np.memmap) and released.train_x.shape[1:] == (12, 12, 3)
    for a, b in ((kept.train_x, released.train_x), (kept.test_x, released.test_x)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    plain = load_dataset(f"imagefolder:{zip_path}", cache_dir=tmp_path / "c", progress=False)
    assert np.array_equal(np.asarray(plain.train_x), tiny_dataset.train_x)  # PNG round trip: the fixture's pixels


def test_a_shuffled_epoch_gathers_the_right_rows_from_the_map(tiny_dataset, tmp_path):
    zip_path = write_zip(tmp_path / "tiny.zip", image_folder_members(tiny_dataset))
    ds = load_dataset(f"imagefolder:{zip_path}", cache_dir=tmp_path / "c", progress=False)
    order = np.random.default_rng(1).permutation(len(ds.train_x))
    seen = []
    with prefetched(ds.train_x, batch=7, reader=lambda x, s, e: read_rows(x, order[s:e])) as batches:
        for start, host in batches:
            assert np.array_equal(host.numpy(), np.asarray(ds.train_x)[order[start:start + len(host)]])
            seen += order[start:start + len(host)].tolist()
    assert sorted(seen) == list(range(len(ds.train_x)))


def test_large_data_benchmark_runs_tiny(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("large_data", ROOT / "benchmarks" / "large_data.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.SIDE = 64  # 12 KiB images: the same steps in seconds
    assert bench.main(["--decoded-gb", "0.001", "--budget-gb", "0.00025", "--in-process", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert {"decode", "nmc", "finetune"} <= set(lines)
    assert float(out.split("decoded / budget: ")[1].split("x")[0]) >= 4
    accuracy = float(lines["nmc"].split("final accuracy")[1].split()[0])
    assert accuracy > 0.5  # 10 classes: the synthetic patterns are separable through the frozen network
    assert not list(tmp_path.iterdir())  # the zip and the cache went with the temporary folder
    with pytest.raises(SystemExit, match="4x"):
        bench.main(["--decoded-gb", "1", "--budget-gb", "0.5"])


# --------------------------------------------------------------------------- training streamed from the store
def _store(tiny_dataset, tmp_path):
    zip_path = write_zip(tmp_path / "tiny.zip", image_folder_members(tiny_dataset))
    return load_dataset(f"imagefolder:{zip_path}", cache_dir=tmp_path / "cache", progress=False)


def test_image_rows_read_the_rows_asked_for_and_refuse_bad_ones(tiny_dataset, tmp_path):
    ds = _store(tiny_dataset, tmp_path)
    assert isinstance(ds.train_x, np.memmap)
    rows = ImageRows(ds.train_x, np.array([5, 2, 9, 0]))
    assert len(rows) == 4 and rows.shape == (4, *ds.train_x.shape[1:])
    assert np.array_equal(rows.read(np.array([2, 0])).numpy(), np.asarray(ds.train_x)[[9, 5]])
    assert np.array_equal(rows.materialise().numpy(), np.asarray(ds.train_x)[[5, 2, 9, 0]])
    with pytest.raises(ValueError, match=r"rows must lie in \[0, "):
        ImageRows(ds.train_x, np.array([0, len(ds.train_x)]))
    with pytest.raises(ValueError, match="integer indices"):
        ImageRows(ds.train_x, np.array([0.5]))
    with pytest.raises(ValueError, match=r"\(M, H, W, C\) uint8"):
        ImageRows(np.zeros((3, 4), dtype=np.uint8), np.array([0]))


def _train(x, y, *, epochs=2, seed=3):
    import torch

    from clproto.context import RunContext
    from clproto.training.loop import TrainingConfig, TrainingLoop, seeded

    cfg = TrainingConfig(architecture="resnet20", epochs=epochs, batch_size=5, lr=0.05)
    loop = TrainingLoop(config=cfg, seed=seed, context=RunContext(progress=False))
    with seeded(seed):
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                                  torch.nn.Flatten(), torch.nn.Linear(4, 6))
    seen = []

    def loss_fn(views, yb):
        seen.append(yb.clone())
        return torch.nn.functional.cross_entropy(net(views[0]), yb)

    losses = loop.run(modules=[net], groups=[{"params": list(net.parameters())}], x=x, y=y, loss_fn=loss_fn)
    return losses, [p.detach().clone() for p in net.parameters()], seen


def test_training_on_rows_of_the_store_gives_the_numbers_of_training_on_the_tensor(tiny_dataset, tmp_path):
    import torch

    ds = _store(tiny_dataset, tmp_path)
    idx = np.random.default_rng(0).permutation(len(ds.train_x))[:31]  # an experience's rows, any order; 31 = 6*5 + 1
    y = torch.from_numpy(np.asarray(ds.train_y)[idx]).long()
    in_memory = _train(torch.from_numpy(np.asarray(ds.train_x)[idx]), y)
    streamed = _train(ImageRows(ds.train_x, idx), y)
    assert in_memory[0] == streamed[0]  # epoch losses, bit for bit
    assert all(torch.equal(a, b) for a, b in zip(in_memory[1], streamed[1]))  # trained weights
    assert all(torch.equal(a, b) for a, b in zip(in_memory[2], streamed[2]))  # the same batches in the same order
    with pytest.raises(ValueError, match="31 images but 30 labels"):
        _train(ImageRows(ds.train_x, idx), y[:30])


@pytest.mark.parametrize("name", ["finetune", "joint", "prd"])
def test_trained_strategies_stream_their_experiences_with_unchanged_numbers(name, tiny_dataset, tmp_path, monkeypatch):
    """They hand the loop the rows of the memory-mapped store (Experience.train_rows), never Experience.train_x;
    the scores equal those of the same strategy handed every experience read whole (the way before streaming)."""
    import torch

    from clproto.scenarios.config import ScenarioConfig
    from clproto.scenarios.scenario import Experience, build_scenario
    from clproto.strategies import REGISTRY

    ds = _store(tiny_dataset, tmp_path)
    scenario = build_scenario(ScenarioConfig(name="tiny-ci", dataset="tiny", increment=2), ds, seed=0)
    params = dict(architecture="convnet-small", batch_size=16, lr=0.05, crop_padding=1, flip=True, epochs=1)
    entry = REGISTRY.get(name)

    def scores() -> torch.Tensor:
        strategy = entry.cls(config=entry.cls.Config(**params), num_classes=6, seed=0)
        for experience in scenario:
            strategy.fit_experience(experience)
        return strategy.predict_scores(torch.from_numpy(np.array(ds.test_x)))  # a writable copy

    with monkeypatch.context() as m:  # before: every experience read whole and handed over as one tensor
        m.setattr(Experience, "train_rows", property(lambda self: self.train_x))
        whole = scores()
    monkeypatch.setattr(Experience, "train_x", property(lambda self: pytest.fail("an experience was read whole")))
    assert torch.equal(scores(), whole)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc are Linux's")
def test_a_shuffled_pass_over_rows_smaller_than_a_page_leaves_them_out_of_the_resident_set(tmp_path):
    data = np.random.default_rng(0).integers(0, 256, (4000, 32, 32, 3), dtype=np.uint8)  # 3 KiB rows, 12 MB
    np.save(tmp_path / "x.npy", data)
    rows = ImageRows(np.load(tmp_path / "x.npy", mmap_mode="r"), np.random.default_rng(1).permutation(4000))
    before = rss_file_kb()
    for start in range(0, 4000, 64):  # one shuffled epoch, as the training loop reads it
        batch = rows.read(np.arange(start, min(start + 64, 4000)))
        assert np.array_equal(batch.numpy(), data[rows.rows[start:start + 64]])
    assert rss_file_kb() - before < 2_000  # of ~12 000 KiB read: the pages shared by neighbouring rows went too


def test_an_experience_of_features_is_refused_by_image_training_with_the_dataset_named(tiny_dataset):
    from clproto.errors import ConfigError
    from clproto.scenarios.config import ScenarioConfig
    from clproto.scenarios.scenario import build_scenario

    features = tiny_dataset.with_inputs(tiny_dataset.train_x.reshape(len(tiny_dataset.train_x), -1).astype(np.float32),
                                        tiny_dataset.test_x.reshape(len(tiny_dataset.test_x), -1).astype(np.float32),
                                        suffix="-features")
    scenario = build_scenario(ScenarioConfig(name="tiny-ci", dataset="tiny", increment=2), features, seed=0)
    with pytest.raises(ConfigError, match="needs uint8 images") as info:
        scenario[0].train_rows
    assert "float32" in str(info.value) and "dataset" in str(info.value)


def test_base_training_gives_the_same_network_resized_once_or_every_epoch(tiny_dataset):
    import torch

    from clproto.training.base_session import BaseTrainingConfig, train_base_session

    config = BaseTrainingConfig(architecture="convnet-small", epochs=2, batch_size=16, image_size=12, val_fraction=0.2)
    rows = ImageRows(tiny_dataset.train_x, np.arange(len(tiny_dataset.train_x)))
    kept = train_base_session(rows, tiny_dataset.train_y, config=config)  # 12x12 images: resized once, in memory
    streamed = train_base_session(rows, tiny_dataset.train_y, config=config, resident_bytes=0)  # resized per batch
    assert kept.mean == streamed.mean and kept.std == streamed.std and kept.history[-1]["loss"] == streamed.history[-1]["loss"]
    assert all(torch.equal(kept.state_dict[k], streamed.state_dict[k]) for k in kept.state_dict)
    with pytest.raises(ValueError, match="read at 16 pixels"):
        train_base_session(ImageRows(tiny_dataset.train_x, np.arange(10), 16), tiny_dataset.train_y[:10], config=config)
