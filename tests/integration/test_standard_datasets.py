"""Issue 14 item 2: the standard datasets (CIFAR-100, miniImageNet, CUB-200-2011, ImageNet-R/A) on synthetic
stand-ins in their real layouts and names (tests/standins.py), and their bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from standins import (image_bytes, listed_names, write_cifar100, write_cub, write_files, write_imagenet_variant,
                      write_miniimagenet, wnids)

from clproto.data import load_dataset
from clproto.data.kinds.decoded import hash_arrays
from clproto.errors import ConfigError


def _load(spec, tmp_path, **kw):
    return load_dataset(spec, data_root=tmp_path, cache_dir=tmp_path / "cache", progress=False, where="s.toml", **kw)


def _small_cifar(tmp_path, **kw):
    return write_cifar100(tmp_path, np.repeat(np.arange(100), 2), np.arange(100)[::-1], **kw)


# --------------------------------------------------------------------------- CIFAR-100
def test_cifar100_reads_the_pickles_exactly_as_torchvision_does(tmp_path, monkeypatch):
    import torchvision

    written = _small_cifar(tmp_path)
    ds = _load("CIFAR100", tmp_path)
    assert ds.train_x.shape == (200, 32, 32, 3) and ds.train_x.dtype == np.uint8 and ds.num_classes == 100
    np.testing.assert_array_equal(ds.train_x, written["train_x"])  # pickle order, channels last
    np.testing.assert_array_equal(ds.test_y, written["test_y"])
    # the reference: torchvision reading the same files (its MD5 check of the real archive switched off)
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    tv = {s: torchvision.datasets.CIFAR100(str(tmp_path / "torchvision"), train=s == "train") for s in ("train", "test")}
    np.testing.assert_array_equal(ds.train_x, tv["train"].data)
    assert ds.train_y.tolist() == tv["train"].targets and ds.test_y.tolist() == tv["test"].targets
    assert ds.class_names == tuple(tv["train"].classes)
    # the identity clproto gave CIFAR100 when torchvision loaded it: feature caches stay valid
    arrays = [np.ascontiguousarray(tv[s].data) for s in ("train", "test")]
    assert ds.identity == hash_arrays("torchvision-CIFAR100", arrays[0], np.asarray(tv["train"].targets, np.int64),
                                      arrays[1], np.asarray(tv["test"].targets, np.int64))
    assert _load("cifar100", tmp_path).identity == ds.identity  # kind names match without regard to case


def test_cifar100_reads_the_archive_in_place(tmp_path):
    written = _small_cifar(tmp_path, archive=True)
    ds = _load("CIFAR100", tmp_path)
    np.testing.assert_array_equal(ds.test_x, written["test_x"])
    assert not (tmp_path / "torchvision" / "cifar-100-python").exists()  # nothing extracted


def test_cifar100_offline_says_where_to_put_which_files_and_downloads_only_when_allowed(tmp_path, monkeypatch):
    import torchvision

    calls = []

    def fake_download(root, train=True, download=False):  # what torchvision's download leaves behind
        calls.append(download)
        _small_cifar(tmp_path)

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", fake_download)
    monkeypatch.delenv("CLPROTO_DOWNLOAD", raising=False)
    with pytest.raises(ConfigError) as err:
        _load("CIFAR100", tmp_path)
    text = str(err.value)
    assert err.value.where == "s.toml" and str(tmp_path / "torchvision") in text
    assert "cifar-100-python/{train,test,meta}" in text and "cifar-100-python.tar.gz" in text
    assert "CLPROTO_DOWNLOAD=1" in text and calls == []
    monkeypatch.setenv("CLPROTO_DOWNLOAD", "1")
    assert _load("CIFAR100", tmp_path).num_classes == 100 and calls == [True]


@pytest.mark.parametrize("member, content, message", [
    ("train", pickle.dumps(print), "refused to load builtins.print"),  # a pickle that would run code
    ("train", b"not a pickle", "is not a CIFAR-100 python pickle"),
    ("train", pickle.dumps({"data": np.zeros((2, 100), np.uint8), "fine_labels": [0, 1]}), "not an (N, 3072) uint8"),
    ("test", pickle.dumps({"data": np.zeros((2, 3072), np.uint8), "fine_labels": [0, 100]}), "a label in 0..99"),
    ("meta", pickle.dumps({"fine_label_names": ["a"]}), "not a list of 100 names"),
], ids=["code", "garbage", "shape", "labels", "names"])
def test_damaged_cifar100_files_are_named(tmp_path, member, content, message):
    _small_cifar(tmp_path)
    (tmp_path / "torchvision" / "cifar-100-python" / member).write_bytes(content)
    with pytest.raises(ConfigError) as err:
        _load("CIFAR100", tmp_path)
    assert message in str(err.value) and f"cifar-100-python/{member}" in str(err.value)
    assert err.value.where == "s.toml"


# --------------------------------------------------------------------------- miniImageNet
MINI_TRAIN = [f"{w}/{w}{i:08d}.jpg" for w in wnids(3) for i in (5, 17, 120)]


@pytest.mark.parametrize("layout", ["topic", "cec"])
def test_miniimagenet_in_both_layouts_gives_the_same_dataset_at_84_pixels(tmp_path, layout):
    write_miniimagenet(tmp_path / layout, MINI_TRAIN, layout=layout, test_per_class=2)
    ds = _load(f"miniimagenet:{layout}", tmp_path)
    assert ds.train_x.shape == (9, 84, 84, 3) and ds.test_x.shape == (6, 84, 84, 3)  # the protocol's size
    assert ds.class_names == tuple(wnids(3)) and ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # every training sample keeps <wnid>/<file>: what the TOPIC lists are matched by
    assert sorted("/".join(n.split("/")[-2:]) for n in ds.train_names) == sorted(MINI_TRAIN)


def test_miniimagenet_layouts_decode_identical_pixels(tmp_path):
    for layout in ("topic", "cec"):
        write_miniimagenet(tmp_path / layout, MINI_TRAIN, layout=layout, seed=3)
    a, b = _load("miniimagenet:topic?size=20", tmp_path), _load("miniimagenet:cec?size=20", tmp_path)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)
    assert a.identity != b.identity  # different files, different cache entries


@pytest.mark.parametrize("change, message", [
    (lambda root: (root / "images" / MINI_TRAIN[4].split("/")[1]).unlink(), "names 1 image(s) missing from images/"),
    (lambda root: (root / "split" / "test.csv").write_text("filename,label\nx.jpg\n"), "line 2: not 2 fields"),
    (lambda root: (root / "split" / "test.csv").unlink(), "has no split/test.csv"),
], ids=["missing-image", "bad-line", "no-test-csv"])
def test_bad_miniimagenet_files_are_named(tmp_path, change, message):
    write_miniimagenet(tmp_path / "mini", MINI_TRAIN, layout="cec")
    change(tmp_path / "mini")
    with pytest.raises(ConfigError, match="s.toml") as err:
        _load("miniimagenet:mini", tmp_path)
    assert message in str(err.value)


# --------------------------------------------------------------------------- CUB-200-2011
CLASSES = ["001.Black_footed_Albatross", "002.Laysan_Albatross", "101.White_Pelican"]
CUB_TRAIN = [f"{c}/{c.split('.')[1]}_{i:04d}_{100 + i}.jpg" for c in CLASSES for i in range(3)]


def test_cub_official_layout_split_labels_and_size(tmp_path):
    write_cub(tmp_path / "cub", CUB_TRAIN, test_per_class=2)
    ds = _load("cub200:cub", tmp_path)  # the folder holding CUB_200_2011/ and attributes.txt
    assert ds.train_x.shape == (9, 224, 224, 3) and ds.test_x.shape == (6, 224, 224, 3)  # TEEN's 224 x 224
    assert ds.class_names == ("Black_footed_Albatross", "Laysan_Albatross", "White_Pelican")
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and ds.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    assert sorted("/".join(n.split("/")[-2:]) for n in ds.train_names) == sorted(CUB_TRAIN)
    small = _load("cub200:cub/CUB_200_2011?size=32&fit=stretch", tmp_path)  # the folder itself, another size
    assert small.train_x.shape == (9, 32, 32, 3) and small.train_y.tolist() == ds.train_y.tolist()


def _edit(path, fn):
    path.write_text(fn(path.read_text()))


@pytest.mark.parametrize("change, message", [
    (lambda r: (r / "images" / CUB_TRAIN[0]).unlink(), "1 image(s) missing from images/"),
    (lambda r: _edit(r / "train_test_split.txt", lambda t: t.replace("2 1\n", "")), "has no line for 1 image id(s)"),
    (lambda r: _edit(r / "images.txt", lambda t: t + t.splitlines()[0] + "\n"), "lists 1 id(s) more than once: '1'"),
    (lambda r: _edit(r / "image_class_labels.txt", lambda t: t.replace("1 1\n", "1 7\n", 1)),
     "1 class id(s) missing from classes.txt: '7'"),
    (lambda r: _edit(r / "train_test_split.txt", lambda t: t.replace("1 1\n", "1 yes\n", 1)), "other than 0 and 1"),
    (lambda r: (r / "classes.txt").unlink(), "has no CUB_200_2011/classes.txt"),
    (lambda r: _edit(r / "images.txt", lambda t: t.replace("1 001", "1001", 1)), "images.txt"),
], ids=["missing-image", "no-split-line", "duplicate-id", "unknown-class", "bad-split", "no-classes", "bad-line"])
def test_bad_cub_files_are_named(tmp_path, change, message):
    write_cub(tmp_path / "cub", CUB_TRAIN)
    change(tmp_path / "cub" / "CUB_200_2011")
    with pytest.raises(ConfigError) as err:
        _load("cub200:cub", tmp_path)
    assert message in str(err.value) and err.value.where == "s.toml"


# --------------------------------------------------------------------------- ImageNet-R / ImageNet-A
def test_imagenet_r_pilot_split_is_used_as_shipped_and_resized(tmp_path):
    write_imagenet_variant(tmp_path / "imagenet-r", classes=4, per_class=(3, 2))
    ds = _load("imagenet-r:imagenet-r", tmp_path)
    assert ds.train_x.shape == (12, 224, 224, 3) and ds.test_x.shape == (8, 224, 224, 3)  # PILOT's input size
    assert ds.class_names == tuple(wnids(4)) and ds.test_y.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    assert _load("imagenet-a:imagenet-r?size=16", tmp_path).train_x.shape == (12, 16, 16, 3)


def test_imagenet_r_official_class_folders_are_split_80_20_per_class_with_a_seed(tmp_path):
    write_imagenet_variant(tmp_path / "official", classes=3, per_class=10, layout="official")
    ds = _load("imagenet-r:official?size=8", tmp_path)
    assert np.bincount(ds.train_y).tolist() == [8, 8, 8] and np.bincount(ds.test_y).tolist() == [2, 2, 2]
    assert ds.class_names == ("class 0", "class 1", "class 2")  # from README.txt
    # train + test of a class are its 10 images, each once; the split is fixed by the seed
    again = _load("imagenet-r:official?size=8", tmp_path)
    np.testing.assert_array_equal(again.train_x, ds.train_x)
    other = _load("imagenet-r:official?size=8&split_seed=1", tmp_path)
    assert not np.array_equal(other.test_x, ds.test_x) and other.identity != ds.identity
    quarter = _load("imagenet-r:official?size=8&test_fraction=0.25", tmp_path)
    assert np.bincount(quarter.test_y).tolist() == [2, 2, 2]  # round(2.5) = 2 (banker's rounding)
    half = _load("imagenet-r:official?size=8&test_fraction=0.5", tmp_path)
    assert np.bincount(half.test_y).tolist() == [5, 5, 5]
    with pytest.raises(ConfigError, match="strictly between 0 and 1"):
        _load("imagenet-r:official?test_fraction=1.0", tmp_path)


def test_imagenet_a_class_with_one_image_cannot_be_split(tmp_path):
    write_imagenet_variant(tmp_path / "a", classes=2, per_class=3, layout="official")
    for f in sorted((tmp_path / "a" / wnids(2)[1]).iterdir())[1:]:
        f.unlink()
    with pytest.raises(ConfigError, match=f"class {wnids(2)[1]} has 1 image, too few"):
        _load("imagenet-a:a", tmp_path)


# --------------------------------------------------------------------------- resizing on decode
def test_resize_crop_keeps_the_centre_and_stretch_keeps_everything(tmp_path):
    """A 40 x 20 image, left half black and right half white with a red centre column band: "crop" to 10 keeps the
    centre 20 x 20 square (scaled to 10 x 10); "stretch" squeezes the whole width."""
    from PIL import Image

    img = np.zeros((20, 40, 3), np.uint8)
    img[:, 20:] = 255
    img[:, 18:22] = (255, 0, 0)
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    write_files(tmp_path / "f", {"train/a/x.png": buf.getvalue(), "test/a/y.png": buf.getvalue()})
    crop = _load("imagefolder:f?size=10", tmp_path).train_x[0]
    stretch = _load("imagefolder:f?size=10&fit=stretch", tmp_path).train_x[0]
    ref_crop = np.asarray(Image.fromarray(img).crop((10, 0, 30, 20)).resize((10, 10), Image.Resampling.BICUBIC))
    ref_stretch = np.asarray(Image.fromarray(img).resize((10, 10), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(crop, ref_crop)
    np.testing.assert_array_equal(stretch, ref_stretch)
    assert crop[:, 0].max() < 40 and crop[:, -1].min() > 200  # the outer quarters are cut off, not squeezed


def test_mixed_sizes_without_a_size_say_how_to_resize(tmp_path):
    rng = np.random.default_rng(0)
    write_files(tmp_path / "f", {"train/a/x.jpg": image_bytes(rng, size=(10, 12)),
                                 "train/a/z.jpg": image_bytes(rng, size=(11, 12)),
                                 "test/a/y.jpg": image_bytes(rng, size=(10, 12))})
    with pytest.raises(ConfigError, match=r"\?size=224"):
        _load("imagefolder:f", tmp_path)
    assert _load("imagefolder:f?size=6", tmp_path).train_x.shape == (2, 6, 6, 3)


def test_listed_names_helper_reads_the_shipped_lists():
    names = listed_names("fscil-topic/mini_imagenet")
    assert len(names) == 30_200 and names[0] == "n01532829/n0153282900000792.jpg"
