"""Extraction on the run's device (issue 12): plans, the read-ahead thread, pinned copies, autocast, cache keys,
and memory-mapped pages handed back while streaming. This machine has no GPU: every path runs with device="cpu"
(the CUDA-only steps — pinning — through a stand-in)."""

from __future__ import annotations

import hashlib
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.features import batches as batches_mod
from clproto.features.backbone import PixelBackbone, load_backbone
from clproto.features.backbone.kinds import BuildContext
from clproto.features.backbone.tables import DEFAULT_BATCH, PixelsTable, TorchScriptTable
from clproto.features.batches import prefetched
from clproto.features.cache import feature_entry, feature_key
from clproto.features.device import ExtractionPlan, batch_for, extract_on_device, plan_for
from clproto.features.extraction import extract_dataset_features
from clproto.features.store import FeatureStore
from clproto.pages import release_all, release_rows, releasable
from conftest import rss_file_kb
from clproto.storage import CACHE_FORMAT, read_meta


class ConvNet(torch.nn.Module):
    """(N, 3, S, S) -> (N, 6): conv, batch norm, ReLU, global average pooling (enough arithmetic for bf16 to show)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv = torch.nn.Conv2d(3, 6, 3)
        self.bn = torch.nn.BatchNorm2d(6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x))).mean(dim=(2, 3))  # (N, 6)


@pytest.fixture
def models(tmp_path):
    torch.jit.save(torch.jit.script(ConvNet().eval()), str(tmp_path / "conv_16_net.pt"))
    return tmp_path


def _plain_loop(bb, images: np.ndarray, batch: int) -> np.ndarray:
    """The extraction of earlier versions, written out: preprocess on the CPU, forward, batch by batch."""
    out = []
    for s in range(0, len(images), batch):
        with torch.inference_mode():
            out.append(bb.module(bb.preprocess(images[s:s + batch])).numpy())
    return np.concatenate(out)


# --------------------------------------------------------------------------- plans
def test_plan_defaults_to_cpu_fp32_and_the_tables_batch():
    assert plan_for(None) == ExtractionPlan(device="cpu", precision="fp32", batch=DEFAULT_BATCH, pin_memory=False)
    assert plan_for(RunContext(device="cpu", precision="bf16"), table_batch=5) == ExtractionPlan(
        device="cpu", precision="bf16", batch=5, pin_memory=False)


def test_batch_size_is_chosen_per_device_unless_the_table_sets_it():
    assert batch_for("cpu", DEFAULT_BATCH) == DEFAULT_BATCH
    assert batch_for("cuda", DEFAULT_BATCH) == 256 and batch_for("cuda:1", DEFAULT_BATCH) == 256
    assert batch_for("mps", DEFAULT_BATCH) == 64
    assert batch_for("cuda", 32) == 32 and batch_for("cpu", 32) == 32


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error of a machine without CUDA")
def test_a_missing_accelerator_is_a_named_error_not_a_cpu_fallback(models, tiny_dataset):
    bb = load_backbone("torchscript:conv_16_net.pt", models_root=models)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        bb.extract(tiny_dataset.train_x, progress=False, context=RunContext(device="cuda"))


# --------------------------------------------------------------------------- the read-ahead thread
def test_prefetched_batches_are_every_row_in_order_as_copies():
    images = np.arange(23 * 2 * 2 * 3, dtype=np.uint8).reshape(23, 2, 2, 3)
    with prefetched(images, batch=5) as batches:
        got = list(batches)
    assert [s for s, _ in got] == [0, 5, 10, 15, 20]
    assert np.array_equal(np.concatenate([b.numpy() for _, b in got]), images)
    assert all(not np.shares_memory(b.numpy(), images) for _, b in got)


def test_a_reader_error_reaches_the_consumer_and_leaving_early_stops_the_thread():
    def failing(images, start, stop):
        if start >= 4:
            raise OSError("disk gone")
        return torch.from_numpy(images[start:stop].copy())

    images = np.zeros((10, 1, 1, 3), np.uint8)
    with pytest.raises(OSError, match="disk gone"):
        with prefetched(images, batch=2, reader=failing) as batches:
            for _ in batches:
                pass
    before = {t for t in threading.enumerate() if t.name == "clproto-prefetch"}
    with pytest.raises(RuntimeError, match="forward failed"):
        with prefetched(np.zeros((1000, 1, 1, 3), np.uint8), batch=1) as batches:
            next(batches)
            raise RuntimeError("forward failed")
    assert {t for t in threading.enumerate() if t.name == "clproto-prefetch"} <= before  # reader joined


def test_cuda_plan_pins_batches_and_copies_them_non_blocking(models, tiny_dataset, monkeypatch):
    """The CUDA path run on the CPU: pinning stands in (no CUDA here), the numbers are those of a plain loop."""
    pinned = []

    def fake_pin(t: torch.Tensor) -> torch.Tensor:
        pinned.append(len(t))
        return t.clone()

    monkeypatch.setattr(batches_mod, "pin", fake_pin)
    bb = load_backbone("torchscript:conv_16_net.pt?batch=5", models_root=models)
    out = np.empty((len(tiny_dataset.train_x), bb.dim), np.float32)
    plan = ExtractionPlan(device="cpu", precision="fp32", batch=5, pin_memory=True)
    with torch.inference_mode():
        extract_on_device(bb.preprocess.on_device, bb.module, tiny_dataset.train_x, out, plan=plan, progress=False)
    assert sum(pinned) == len(tiny_dataset.train_x) and max(pinned) == 5
    assert np.array_equal(out, _plain_loop(bb, tiny_dataset.train_x, 5))


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("spec,batch", [("torchscript:conv_16_net.pt", DEFAULT_BATCH),
                                        ("torchscript:conv_16_net.pt?batch=5&norm=imagenet", 5),
                                        ("torchscript:conv_16_net.pt?size=native&batch=64", 64)])
def test_cpu_fp32_features_are_those_of_the_plain_loop_bit_for_bit(models, tiny_dataset, spec, batch):
    bb = load_backbone(spec, models_root=models)
    expected = _plain_loop(bb, tiny_dataset.train_x, batch)
    assert np.array_equal(bb.extract(tiny_dataset.train_x, progress=False), expected)
    assert np.array_equal(bb.extract(tiny_dataset.train_x, progress=False, context=RunContext(device="cpu")), expected)
    grey = tiny_dataset.train_x[..., :1].copy()  # greyscale repeated to 3 channels on the device
    assert np.array_equal(bb.extract(grey, progress=False, context=RunContext(device="cpu")), _plain_loop(bb, grey, batch))


def test_bf16_autocast_gives_float32_features_close_to_fp32(models, tiny_dataset):
    bb = load_backbone("torchscript:conv_16_net.pt", models_root=models)
    fp32 = bb.extract(tiny_dataset.train_x, progress=False)
    bf16 = bb.extract(tiny_dataset.train_x, progress=False, context=RunContext(device="cpu", precision="bf16"))
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    assert not np.array_equal(bf16, fp32)  # the forward pass did run in bfloat16
    np.testing.assert_allclose(bf16, fp32, atol=0.05 * np.abs(fp32).max())


# --------------------------------------------------------------------------- cache keys
def _key(*parts: str) -> str:
    return hashlib.blake2b("|".join(parts).encode(), digest_size=20).hexdigest()


def test_precision_joins_the_feature_key_only_when_not_fp32(models, tiny_dataset, tmp_path):
    bb = load_backbone("torchscript:conv_16_net.pt", models_root=models)
    old = _key("features", bb.identity, tiny_dataset.identity, "train", f"v{CACHE_FORMAT}")  # the formula of earlier versions
    assert feature_key(bb.identity, tiny_dataset.identity, "train") == old
    cache = tmp_path / "c"
    for ctx in (None, RunContext(), RunContext(device="cpu", precision="fp32")):
        assert feature_entry(cache, bb, tiny_dataset, "train", ctx).name.endswith(old[:24])
    bf16 = feature_entry(cache, bb, tiny_dataset, "train", RunContext(precision="bf16"))
    fp16 = feature_entry(cache, bb, tiny_dataset, "train", RunContext(precision="fp16"))
    assert len({bf16.name, fp16.name, feature_entry(cache, bb, tiny_dataset, "train").name}) == 3
    assert bf16.name.endswith(_key("features", bb.identity, tiny_dataset.identity, "train", f"v{CACHE_FORMAT}",
                                   "precision=bf16")[:24])
    pixels = PixelBackbone()  # no model, no precision: its key never changes
    assert feature_entry(cache, pixels, tiny_dataset, "train", RunContext(precision="bf16")) == \
        feature_entry(cache, pixels, tiny_dataset, "train")


def test_the_store_extracts_with_the_runs_context_into_its_own_entries(models, tiny_dataset, tmp_path):
    table = TorchScriptTable(path="conv_16_net.pt")
    cache = tmp_path / "cache"
    got = {}
    for precision in ("fp32", "bf16"):
        ctx = BuildContext(models_root=str(models), cache_dir=str(cache), progress=False,
                           run=RunContext(device="cpu", precision=precision))
        got[precision] = FeatureStore().get(tiny_dataset, table, context=ctx)
        assert not got[precision].cache_hit
    entries = sorted((cache / "features").iterdir())
    assert len(entries) == 4  # train and test, at each precision
    assert sorted(read_meta(e).get("precision", "fp32") for e in entries) == ["bf16", "bf16", "fp32", "fp32"]
    bb = load_backbone(table, models_root=models)
    assert np.array_equal(got["fp32"].features.train_x, bb.extract(tiny_dataset.train_x, progress=False))
    again = extract_dataset_features(bb, tiny_dataset, progress=False, cache_dir=cache,
                                     context=RunContext(precision="bf16"))
    assert again.cache_hit and np.array_equal(again.features.test_x, got["bf16"].features.test_x)
    pixels = FeatureStore().get(tiny_dataset, PixelsTable(), context=BuildContext(
        cache_dir=str(cache), progress=False, run=RunContext(precision="bf16")))
    assert np.array_equal(pixels.features.train_x, PixelBackbone().extract(tiny_dataset.train_x))


# --------------------------------------------------------------------------- pages of a memory map
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc are Linux's")
def test_released_pages_leave_the_resident_set_and_the_data_stay(tmp_path):
    rows = 64
    data = np.random.default_rng(0).integers(0, 256, (rows, 256, 256, 3), dtype=np.uint8)  # 12 MB
    np.save(tmp_path / "x.npy", data)
    x = np.load(tmp_path / "x.npy", mmap_mode="r")
    assert releasable(x) and releasable(x[8:16])
    before = rss_file_kb()
    assert int(x.sum(dtype=np.int64)) == int(data.sum(dtype=np.int64))  # touches every page
    touched = rss_file_kb()
    assert touched - before > 10_000  # ~12 MB of the map became resident
    assert release_all(x)
    assert touched - rss_file_kb() > 10_000
    assert np.array_equal(x[10:20], data[10:20])  # read again from the page cache: same bytes
    assert release_rows(x, 10, 20) and not release_rows(x, 5, 5)
    copy = np.load(tmp_path / "x.npy", mmap_mode="c")
    assert not releasable(copy) and not release_all(copy)  # copy-on-write: private changes would be lost
    assert not releasable(data) and not release_rows(data, 0, 4)  # not a map


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise is Linux's")
def test_released_pages_of_a_writable_map_are_still_written(tmp_path):
    x = np.lib.format.open_memmap(tmp_path / "w.npy", mode="w+", dtype=np.uint8, shape=(40, 64, 64, 3))
    x[:] = 7
    assert release_all(x)  # dirty pages dropped from this process: the page cache still writes them
    x.flush()
    del x
    assert np.all(np.load(tmp_path / "w.npy") == 7)
