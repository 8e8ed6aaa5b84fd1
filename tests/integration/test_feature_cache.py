"""The feature cache: hit / miss, invalidation, corruption, concurrent fills, dimension mismatch, CLI."""

from __future__ import annotations

import errno
import json
import threading

import numpy as np
import pytest
import torch
from imagezips import image_folder_members, write_zip

from clproto.cli import main
from clproto.errors import ConfigError
from clproto.features.backbone import PixelBackbone, extract_dataset_features, load_backbone
from clproto.features.cache import feature_entry, list_entries
from clproto.storage import checksum, open_array, read_entry, save_arrays, write_entry


class Counting(PixelBackbone):
    """Pixels, counting how many images it was asked to extract."""

    def __init__(self, identity: str = PixelBackbone.identity) -> None:
        self.identity = identity
        self.calls = 0

    def extract(self, images, **kw):
        self.calls += len(images)
        return super().extract(images, **kw)


def _features(backbone, dataset, cache):
    return extract_dataset_features(backbone, dataset, progress=False, cache_dir=cache)


def test_miss_then_hit_returns_the_same_memory_mapped_features(tiny_dataset, tmp_path):
    bb = Counting()
    got = _features(bb, tiny_dataset, tmp_path)
    first = got.features
    assert not got.cache_hit and "miss" in got.note and got.seconds >= 0
    assert bb.calls == len(tiny_dataset.train_x) + len(tiny_dataset.test_x)
    got = _features(bb, tiny_dataset, tmp_path)
    second = got.features
    assert got.cache_hit and "hit" in got.note
    assert bb.calls == len(tiny_dataset.train_x) + len(tiny_dataset.test_x)  # nothing recomputed
    assert isinstance(second.train_x, np.memmap) and not second.train_x.flags.writeable
    np.testing.assert_array_equal(second.train_x, tiny_dataset.train_x.reshape(72, -1) / np.float32(255))
    np.testing.assert_array_equal(second.test_x, first.test_x)
    np.testing.assert_array_equal(second.train_y, tiny_dataset.train_y)


def test_any_part_of_the_key_changing_is_a_miss(tiny_dataset, tmp_path):
    from conftest import make_tiny_dataset

    _features(Counting(), tiny_dataset, tmp_path)
    other_weights = Counting(identity="f" * 40)
    assert not _features(other_weights, tiny_dataset, tmp_path).cache_hit
    other_data = make_tiny_dataset(seed=1)
    assert other_data.identity != tiny_dataset.identity
    assert not _features(Counting(), other_data, tmp_path).cache_hit
    assert _features(Counting(), tiny_dataset, tmp_path).cache_hit  # the first entry is still there
    assert len(list_entries(tmp_path)) == 6  # 3 (backbone, dataset) keys x 2 splits


def test_preprocessing_and_weight_changes_change_the_torch_key(tiny_dataset, tmp_path):
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.jit.save(torch.jit.script(net), str(tmp_path / "net.pt"))
    specs = ["torchscript:net.pt?size=12", "torchscript:net.pt?size=12&norm=imagenet", "torchscript:net.pt?size=16"]
    got = [_features(load_backbone(s, models_root=tmp_path), tiny_dataset, tmp_path / "c") for s in specs]
    assert not any(g.cache_hit for g in got)
    assert _features(load_backbone(specs[0], models_root=tmp_path), tiny_dataset, tmp_path / "c").cache_hit


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta", "meta-deleted", "npy-header", "npy-deleted"])
def test_a_corrupt_entry_is_detected_and_recomputed(tiny_dataset, tmp_path, damage, capsys):
    reference = np.array(_features(Counting(), tiny_dataset, tmp_path).features.train_x)
    entry = feature_entry(tmp_path, Counting(), tiny_dataset, "train")
    npy = entry / "features.npy"
    if damage == "flip":
        raw = bytearray(npy.read_bytes())
        raw[-3] ^= 0x40
        npy.write_bytes(bytes(raw))
    elif damage == "truncate":
        npy.write_bytes(npy.read_bytes()[:-100])
    elif damage == "meta":
        (entry / "meta.json").write_text("{not json")
    elif damage == "meta-deleted":
        (entry / "meta.json").unlink()  # used to block every later run: the publish found the folder in the way
    elif damage == "npy-header":
        raw = bytearray(npy.read_bytes())
        raw[20:30] = b"{'(\x00\x00\x00\x00\x00\x00["  # numpy's header parser raised tokenize.TokenError
        npy.write_bytes(bytes(raw))
    else:
        npy.unlink()
    capsys.readouterr()
    bb = Counting()
    got = _features(bb, tiny_dataset, tmp_path)
    again = got.features
    assert "corrupt entry recomputed" in got.note and not got.cache_hit
    assert f"feature cache entry '{entry}' is corrupt" in capsys.readouterr().err
    assert bb.calls == len(tiny_dataset.train_x)  # only the damaged split
    np.testing.assert_array_equal(again.train_x, reference)
    assert _features(Counting(), tiny_dataset, tmp_path).cache_hit


def test_dimension_mismatch_with_an_entry_is_a_clear_error_that_keeps_the_cache(tiny_dataset, tmp_path):
    bb = Counting()
    bb.dim = 5  # the backbone says it makes 5 features; the entry we plant holds 7
    entry = feature_entry(tmp_path, bb, tiny_dataset, "train")
    bad = np.zeros((len(tiny_dataset.train_x), 7), np.float32)
    write_entry(entry, fill=lambda tmp: {"features": bad}, meta={"kind": "features"})
    np.save(entry / "features.npy", bad)  # fill's arrays are saved by the caller in real use
    with pytest.raises(ConfigError, match="7-dimensional features but backbone 'pixels' produces 5"):
        _features(bb, tiny_dataset, tmp_path)
    assert entry.exists() and (entry / "meta.json").exists()  # left as it is, consistent


def test_two_runs_filling_one_entry_at_once_both_succeed(tiny_dataset, tmp_path):
    gate = threading.Barrier(2)

    class Slow(Counting):
        def extract(self, images, **kw):
            if len(images) == len(tiny_dataset.train_x):
                gate.wait(timeout=10)  # both threads are extracting the train split at the same time
            return super().extract(images, **kw)

    results: list = [None, None]

    def run(i):
        results[i] = _features(Slow(), tiny_dataset, tmp_path)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r is not None for r in results)
    np.testing.assert_array_equal(results[0].features.train_x, results[1].features.train_x)
    folder = tmp_path / "features"
    assert sorted(p.name.split("-")[0] for p in folder.iterdir()) == ["tiny.test", "tiny.train"]  # no temp left
    assert _features(Counting(), tiny_dataset, tmp_path).cache_hit


def test_a_failed_extraction_leaves_nothing_behind(tiny_dataset, tmp_path):
    class Broken(Counting):
        def extract(self, images, **kw):
            raise ConfigError("model exploded", field="backbone")

    with pytest.raises(ConfigError, match="exploded"):
        _features(Broken(), tiny_dataset, tmp_path)
    assert list((tmp_path / "features").iterdir()) == []


def test_a_stale_folder_in_the_way_of_a_publish_is_replaced(tmp_path, capsys):
    entry = tmp_path / "features" / "x-0123"
    entry.mkdir(parents=True)
    (entry / "features.npy").write_bytes(b"left by a crashed run")  # no meta.json: not an entry
    data = np.arange(6, dtype=np.float32).reshape(3, 2)
    assert write_entry(entry, fill=lambda tmp: save_arrays(tmp, {"features": data}), meta={"kind": "features"})
    np.testing.assert_array_equal(read_entry(entry)["features"], data)
    assert "is corrupt" in capsys.readouterr().err and sorted(p.name for p in entry.parent.iterdir()) == ["x-0123"]


def test_a_file_where_the_entry_folder_belongs_is_replaced(tmp_path):
    entry = tmp_path / "features" / "x-0123"
    entry.parent.mkdir(parents=True)
    entry.write_bytes(b"?")
    data = np.ones((2, 2), np.float32)
    assert write_entry(entry, fill=lambda tmp: save_arrays(tmp, {"features": data}), meta={})
    np.testing.assert_array_equal(read_entry(entry)["features"], data)
    assert [p.name for p in entry.parent.iterdir()] == ["x-0123"]


def test_a_readable_entry_in_the_way_is_kept_and_ours_dropped(tmp_path):
    entry = tmp_path / "features" / "x-0123"
    first = np.ones((2, 2), np.float32)
    assert write_entry(entry, fill=lambda tmp: save_arrays(tmp, {"features": first}), meta={})
    assert not write_entry(entry, fill=lambda tmp: save_arrays(tmp, {"features": first * 2}), meta={})
    np.testing.assert_array_equal(read_entry(entry)["features"], first)
    assert [p.name for p in entry.parent.iterdir()] == ["x-0123"]


# --------------------------------------------------------------------------- a full disk
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_open_array_reserves_the_whole_file_before_mapping(tmp_path):
    arr = open_array(tmp_path / "a.npy", dtype=np.float32, shape=(1000, 3))
    st = (tmp_path / "a.npy").stat()
    assert st.st_blocks * 512 >= 1000 * 3 * 4  # allocated blocks, not a sparse file
    arr[:] = 1.5
    arr.flush()
    del arr
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), np.full((1000, 3), 1.5, np.float32))


def test_open_array_without_fallocate_writes_zeros(tmp_path, monkeypatch):
    monkeypatch.setattr("os.posix_fallocate", lambda *a: (_ for _ in ()).throw(OSError(errno.EOPNOTSUPP, "no")))
    arr = open_array(tmp_path / "a.npy", dtype=np.uint8, shape=(3, 4, 5))
    arr[1] = 7
    arr.flush()
    del arr
    want = np.zeros((3, 4, 5), np.uint8)
    want[1] = 7
    np.testing.assert_array_equal(np.load(tmp_path / "a.npy"), want)


def test_a_full_disk_is_a_named_error_and_leaves_nothing(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setattr("os.posix_fallocate", _enospc)
    with pytest.raises(ConfigError) as err:
        _features(Counting(), tiny_dataset, tmp_path)
    entry = feature_entry(tmp_path, Counting(), tiny_dataset, "train")
    n = len(tiny_dataset.train_x) * 8 * 8 * 3 * 4  # (N, 192) float32
    assert str(entry) in str(err.value) and "disk is full" in str(err.value)
    assert f"needs {n + 128} bytes" in str(err.value)  # array + the .npy header
    assert list((tmp_path / "features").iterdir()) == []


def test_a_full_disk_in_any_write_of_an_entry_is_named(tmp_path, monkeypatch):
    def fill(tmp):
        np.save(tmp / "a.npy", np.zeros(10))
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ConfigError, match="needs more than the 208 bytes that fitted"):
        write_entry(tmp_path / "decoded" / "x", fill=fill, meta={})
    assert list((tmp_path / "decoded").iterdir()) == []


def test_atomic_writers_leave_no_temp_file_and_name_a_full_disk(tmp_path, monkeypatch):
    from clproto.storage import write_atomic, write_text_atomic

    target = tmp_path / "out" / "results.json"
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        write_atomic(target, lambda fh: (fh.write(b"half"), (_ for _ in ()).throw(RuntimeError("killed"))))
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["results.json"]
    monkeypatch.setattr("os.fsync", _enospc)
    with pytest.raises(ConfigError) as err:
        write_text_atomic(target, "new text")
    assert str(target) in str(err.value) and "disk is full" in str(err.value) and "8 bytes" in str(err.value)
    assert target.read_text() == "old" and [p.name for p in target.parent.iterdir()] == ["results.json"]


def test_a_checkpoint_that_fails_to_save_leaves_no_temp_file(tmp_path, monkeypatch):
    from clproto.runner import _save_checkpoint

    def broken_save(obj, f, *a, **k):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(ConfigError, match="checkpoint.pt"):
        _save_checkpoint(tmp_path / "checkpoint.pt", {"x": 1})
    assert list(tmp_path.iterdir()) == []


def test_entry_metadata_records_the_key_and_checksums(tiny_dataset, tmp_path):
    feats = _features(Counting(), tiny_dataset, tmp_path).features
    meta = json.loads((feature_entry(tmp_path, Counting(), tiny_dataset, "test") / "meta.json").read_text())
    assert meta["dataset_identity"] == tiny_dataset.identity and meta["split"] == "test"
    assert meta["backbone_identity"] == PixelBackbone.identity
    assert meta["arrays"]["features"]["blake2b"] == checksum(feats.test_x)


# --------------------------------------------------------------------------- CLI
def _toml(path, text):
    path.write_text(text)
    return str(path)


def test_cli_run_reports_a_hit_on_the_second_run_and_cache_ls_clear(tiny_dataset, tmp_path, capsys):
    write_zip(tmp_path / "tiny.zip", image_folder_members(tiny_dataset))
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.jit.save(torch.jit.script(net), str(tmp_path / "net_16_.pt"))
    scenario = _toml(tmp_path / "sc.toml", '[scenario]\nname = "sc"\ndataset = "imagefolder:tiny.zip"\nincrement = 2\n')
    strategy = _toml(tmp_path / "st.toml", '[strategy]\nname = "nmc"\nimplementation = "nmc"\nbackbone = "pixels"\n')
    common = [scenario, strategy, "--seeds", "0", "--data-root", str(tmp_path), "--models-root", str(tmp_path),
              "--cache-dir", str(tmp_path / "cache"), "--no-progress", "--backbone", "torchscript:net_16_.pt"]
    assert main(["run", *common, "--out", str(tmp_path / "r1")]) == 0
    assert main(["run", *common, "--out", str(tmp_path / "r2")]) == 0
    # --backbone changes the definition's backbone: the run is named by it (README, "Names")
    n1 = json.loads((tmp_path / "r1/sc/nmc@backbone=torchscript_net_16_.pt/seed0/results.json").read_text())["notes"]
    n2 = json.loads((tmp_path / "r2/sc/nmc@backbone=torchscript_net_16_.pt/seed0/results.json").read_text())["notes"]
    assert "torchscript:net_16_.pt" in n1[0] and "miss" in n1[0] and "hit" in n2[0]
    capsys.readouterr()
    assert main(["cache", "ls", "--cache-dir", str(tmp_path / "cache")]) == 0
    listing = capsys.readouterr().out
    assert "3 entries" in listing and "decoded" in listing and "[torchscript:net_16_.pt]" in listing
    assert main(["cache", "clear", "--kind", "features", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert [e.kind for e in list_entries(tmp_path / "cache")] == ["decoded"]
    # bad backbone: exit 2 before anything is written
    assert main(["run", scenario, strategy, "--seeds", "0", "--data-root", str(tmp_path), "--models-root",
                 str(tmp_path), "--cache-dir", str(tmp_path / "cache"), "--backbone", "torchscript:absent.pt",
                 "--out", str(tmp_path / "r3")]) == 2
    assert "absent.pt" in capsys.readouterr().err and not (tmp_path / "r3").exists()


def test_cache_ls_lists_base_trained_backbones_and_match_follows_what_ls_prints(tmp_path, capsys):
    """`cache ls` shows every entry (base-trained ones included) with size and description; `--match` selects
    on what it prints (e.g. the backbone in a description), and `clear --match` removes exactly those."""
    cache = tmp_path / "cache"
    features = cache / "features" / "digits.train-0123abcd"
    features.mkdir(parents=True)
    (features / "meta.json").write_text(json.dumps({"kind": "features", "dataset": "digits", "split": "train",
                                                    "backbone": "base-trained:resnet20,epochs=3"}))
    (features / "features.npy").write_bytes(b"\0" * 1000)
    other = cache / "features" / "digits.test-4567ef01"
    other.mkdir()
    (other / "meta.json").write_text(json.dumps({"dataset": "digits", "split": "test", "backbone": "pixels"}))
    trained = cache / "base-trained" / "resnet20-feedbeef.pt"
    trained.parent.mkdir()
    trained.write_bytes(b"\0" * 3000)
    trained.with_suffix(".json").write_text(json.dumps({"config": {"architecture": "resnet20", "epochs": 3},
                                                        "dataset": "digits", "base_classes": [0, 1, 2, 3],
                                                        "best_val_accuracy": 0.875}))
    assert main(["cache", "ls", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("base-trained"))
    assert "resnet20-feedbeef.pt" in line and "digits base session (4 classes) [base-trained:resnet20,epochs=3]" in line
    assert "3 entries" in out
    assert main(["cache", "ls", "--match", "resnet20", "--cache-dir", str(cache)]) == 0
    listed = [l.split()[3] for l in capsys.readouterr().out.splitlines()[:-1]]
    assert sorted(listed) == ["digits.train-0123abcd", "resnet20-feedbeef.pt"]  # by description and by name
    assert main(["cache", "clear", "--match", "resnet20", "--cache-dir", str(cache)]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert [e.path.name for e in list_entries(cache)] == ["digits.test-4567ef01"]
    assert not trained.with_suffix(".json").exists()  # the training log goes with its checkpoint


def test_a_killed_writers_temporary_folder_is_removed_by_the_next_writer(tmp_path):
    """A cache entry being written by a process that died (kill -9) leaves .tmp-<entry>-<pid>-*: cleaned next time."""
    import subprocess

    proc = subprocess.Popen(["true"])
    proc.wait()  # a pid whose process has exited
    entry = tmp_path / "entry"
    orphan = tmp_path / f".tmp-entry-{proc.pid}-deadbeef"
    orphan.mkdir()
    (orphan / "x.npy").write_bytes(b"partial")
    live = tmp_path / ".tmp-entry-1-cafecafe"  # pid 1 is alive: its writer may still be at work
    live.mkdir()

    def fill(tmp):
        np.save(tmp / "a.npy", np.arange(3))
        return {"a": np.load(tmp / "a.npy")}

    write_entry(entry, fill=fill, meta={"kind": "test"})
    assert not orphan.exists() and live.exists() and (entry / "a.npy").exists()
