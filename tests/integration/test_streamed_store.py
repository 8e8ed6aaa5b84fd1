"""Data larger than RAM (issue 12): the decoded store is written and read through a memory map whose pages are
handed back as it streams — with the same pixels — and benchmarks/large_data.py runs end to end (tiny)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from clproto.data.kinds import decoded
from clproto.data.sources import load_dataset
from clproto.features.batches import prefetched, read_rows
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
