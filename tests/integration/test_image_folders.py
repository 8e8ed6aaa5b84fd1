"""Image folders in zips and directories, the official Tiny-ImageNet layout, and the decoded-array cache."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from imagezips import image_folder_members, png_bytes, write_dir, write_zip

from clproto.data.sources import load_dataset
from clproto.errors import ConfigError


def _load(spec: str, tmp_path, **kw):
    return load_dataset(spec, data_root=tmp_path, cache_dir=tmp_path / "cache", progress=False, **kw)


def _assert_same_samples(ds, ref):
    """Same images and labels as ``ref`` (loaders sort by class id, then member name)."""
    assert ds.class_names == tuple(f"class {n}" for n in ref.class_names)  # first name in classes.tsv
    for x, y, rx, ry in ((ds.train_x, ds.train_y, ref.train_x, ref.train_y), (ds.test_x, ds.test_y, ref.test_x, ref.test_y)):
        order = np.argsort(ry, kind="stable")  # members are numbered in fixture order within a class
        np.testing.assert_array_equal(y, ry[order])
        np.testing.assert_array_equal(np.asarray(x), rx[order])


@pytest.mark.parametrize("form", ["zip", "dir"])
def test_image_folder_roundtrip(tiny_dataset, tmp_path, form):
    members = image_folder_members(tiny_dataset)
    if form == "zip":
        write_zip(tmp_path / "tiny.zip", members)
        spec = "imagefolder:tiny.zip"
    else:
        write_dir(tmp_path / "tiny", members)
        spec = "imagefolder:tiny"
    ds = _load(spec, tmp_path)
    assert ds.train_x.dtype == np.uint8 and ds.train_x.shape == (72, 8, 8, 3)
    _assert_same_samples(ds, tiny_dataset.with_inputs(tiny_dataset.train_x, tiny_dataset.test_x))
    assert ds.name == "tiny" and len(ds.identity) == 40


def test_decoded_cache_is_reused_memory_mapped_and_recovers_from_corruption(tiny_dataset, tmp_path):
    write_zip(tmp_path / "tiny.zip", image_folder_members(tiny_dataset))
    first = _load("imagefolder:tiny.zip", tmp_path)
    reference = np.array(first.train_x)  # a copy: `first` maps the cached file itself
    entries = list((tmp_path / "cache" / "decoded").iterdir())
    assert len(entries) == 1 and not entries[0].name.startswith(".")
    again = _load("imagefolder:tiny.zip", tmp_path)
    assert isinstance(again.train_x, np.memmap)  # read from the cache, not decoded again
    assert again.identity == first.identity
    np.testing.assert_array_equal(again.train_x, reference)
    # flip one pixel in the cached array: the checksum catches it and the folder is decoded again
    path = entries[0] / "train_x.npy"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))
    repaired = _load("imagefolder:tiny.zip", tmp_path)
    np.testing.assert_array_equal(repaired.train_x, reference)
    # a changed source file is a different dataset identity
    write_zip(tmp_path / "tiny.zip", {**image_folder_members(tiny_dataset), "test/c0/extra.png": png_bytes(tiny_dataset.test_x[0])})
    changed = _load("imagefolder:tiny.zip", tmp_path)
    assert changed.identity != first.identity and len(changed.test_y) == len(first.test_y) + 1


def test_greyscale_images_become_rgb(tmp_path):
    from conftest import make_tiny_dataset

    grey = make_tiny_dataset(channels=1, num_classes=2, train_per_class=3, test_per_class=2)
    write_zip(tmp_path / "grey.zip", image_folder_members(grey))
    ds = _load("imagefolder:grey.zip", tmp_path)
    assert ds.train_x.shape[-1] == 3
    np.testing.assert_array_equal(ds.train_x[..., 0], ds.train_x[..., 2])
    np.testing.assert_array_equal(ds.train_x[..., :1], grey.train_x)


def test_top_level_folder_in_zip_is_tolerated(tiny_dataset, tmp_path):
    members = {f"wrapped/{k}": v for k, v in image_folder_members(tiny_dataset).items()}
    write_zip(tmp_path / "wrapped.zip", members)
    assert _load("imagefolder:wrapped.zip", tmp_path).num_classes == tiny_dataset.num_classes


# --------------------------------------------------------------------------- official Tiny-ImageNet layout
def _tinyimagenet_members(ds, *, top: str = "tiny-imagenet-200/") -> dict[str, bytes]:
    """The layout users download: train/<wnid>/images/*.JPEG + boxes, val/images + val_annotations.txt,
    an unlabelled test/images, wnids.txt and words.txt (PNG bytes under .JPEG names: PIL sniffs content)."""
    wnids = [f"n{1000 + c:08d}" for c in range(ds.num_classes)]
    m = {f"{top}wnids.txt": "\n".join(wnids).encode(),
         f"{top}words.txt": "".join(f"{w}\tthing {i}, other name\n" for i, w in enumerate(wnids)).encode()
                            + b"n99999999\tnot in this dataset\n"}
    for i, (x, y) in enumerate(zip(ds.train_x, ds.train_y)):
        m[f"{top}train/{wnids[y]}/images/{wnids[y]}_{i}.JPEG"] = png_bytes(x)
    for w in wnids:
        m[f"{top}train/{w}/{w}_boxes.txt"] = b"ignored\t0\t0\t8\t8\n"
    lines = []
    for i, (x, y) in enumerate(zip(ds.test_x, ds.test_y)):
        m[f"{top}val/images/val_{i}.JPEG"] = png_bytes(x)
        lines.append(f"val_{i}.JPEG\t{wnids[y]}\t0\t0\t8\t8")
    m[f"{top}val/val_annotations.txt"] = "\n".join(lines).encode()
    m[f"{top}test/images/test_0.JPEG"] = png_bytes(ds.test_x[0])  # unlabelled: never loaded
    return m


@pytest.mark.parametrize("form", ["zip", "dir"])
def test_official_tinyimagenet_layout(tiny_dataset, tmp_path, form):
    members = _tinyimagenet_members(tiny_dataset)
    if form == "zip":
        write_zip(tmp_path / "tin.zip", members)
        spec = "tinyimagenet:tin.zip"
    else:
        write_dir(tmp_path / "tin", members)
        spec = "tinyimagenet:tin"
    ds = _load(spec, tmp_path)
    assert ds.class_names == tuple(f"thing {i}" for i in range(tiny_dataset.num_classes))
    assert len(ds.train_y) == len(tiny_dataset.train_y) and len(ds.test_y) == len(tiny_dataset.test_y)
    # every validation image keeps its annotated class
    for c in range(tiny_dataset.num_classes):
        got = np.sort(np.asarray(ds.test_x[ds.test_y == c]).reshape(-1))
        want = np.sort(tiny_dataset.test_x[tiny_dataset.test_y == c].reshape(-1))
        np.testing.assert_array_equal(got, want)


def test_the_official_tinyimagenet_layout_read_as_an_image_folder_says_so(tiny_dataset, tmp_path):
    write_zip(tmp_path / "tin.zip", _tinyimagenet_members(tiny_dataset))
    with pytest.raises(ConfigError, match='extra folder level.*use dataset = "tinyimagenet:...'):
        _load("imagefolder:tin.zip", tmp_path)


def test_tinyimagenet_layout_errors(tiny_dataset, tmp_path):
    members = _tinyimagenet_members(tiny_dataset)
    write_zip(tmp_path / "noval.zip", {k: v for k, v in members.items() if "val_annotations" not in k})
    with pytest.raises(ConfigError, match="official Tiny-ImageNet layout"):
        _load("tinyimagenet:noval.zip", tmp_path)
    bad = dict(members)
    bad["tiny-imagenet-200/val/val_annotations.txt"] += b"\nmissing.JPEG\tn00001000\t0\t0\t1\t1"
    write_zip(tmp_path / "badval.zip", bad)
    with pytest.raises(ConfigError, match="line 37"):
        _load("tinyimagenet:badval.zip", tmp_path)


# --------------------------------------------------------------------------- bad input
def test_bad_inputs_name_the_problem_and_leave_no_cache_entry(tiny_dataset, tmp_path):
    members = image_folder_members(tiny_dataset)
    with pytest.raises(ConfigError, match="does not exist"):
        _load("imagefolder:absent.zip", tmp_path)
    (tmp_path / "garbage.zip").write_bytes(b"this is not a zip file at all")
    with pytest.raises(ConfigError, match="not a readable zip"):
        _load("imagefolder:garbage.zip", tmp_path)
    write_zip(tmp_path / "corrupt.zip", {**members, "train/c1/0013.png": b"\x89PNG\r\n\x1a\nbroken"})
    with pytest.raises(ConfigError, match="train/c1/0013.png"):
        _load("imagefolder:corrupt.zip", tmp_path)
    big = np.zeros((16, 16, 3), np.uint8)
    write_zip(tmp_path / "sizes.zip", {**members, "test/c2/big.png": png_bytes(big)})
    with pytest.raises(ConfigError, match="16x16"):
        _load("imagefolder:sizes.zip", tmp_path)
    write_zip(tmp_path / "empty.zip", {"classes.tsv": b"a\tb\n"})
    with pytest.raises(ConfigError, match="no images"):
        _load("imagefolder:empty.zip", tmp_path)
    decoded = tmp_path / "cache" / "decoded"
    assert not decoded.exists() or list(decoded.iterdir()) == []  # no entry, no leftover temp folder


def test_corrupt_member_bytes_in_zip_are_named(tiny_dataset, tmp_path):
    path = write_zip(tmp_path / "crc.zip", image_folder_members(tiny_dataset))
    with zipfile.ZipFile(path) as z:
        info = z.getinfo("train/c3/0040.png")
    raw = bytearray(path.read_bytes())
    start = info.header_offset + 30 + len(info.filename)  # local header, then the stored bytes
    raw[start + 20] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ConfigError, match="train/c3/0040.png"):
        _load("imagefolder:crc.zip", tmp_path)


def test_a_member_whose_bytes_disagree_with_its_crc_is_named_even_if_zipfile_does_not_check(tiny_dataset, tmp_path,
                                                                                          monkeypatch):
    """The explicit zlib.crc32 check does not rely on zipfile's own (a flipped byte in a JPEG decodes fine)."""
    write_zip(tmp_path / "z.zip", image_folder_members(tiny_dataset))
    real_read = zipfile.ZipFile.read

    def read_flipped(self, name, pwd=None):
        data = bytearray(real_read(self, name, pwd))
        if getattr(name, "filename", name) == "train/c2/0030.png":
            data[-5] ^= 0x01
        return bytes(data)

    monkeypatch.setattr(zipfile.ZipFile, "read", read_flipped)
    with pytest.raises(ConfigError, match="'train/c2/0030.png' of .* fails its CRC-32 check"):
        _load("imagefolder:z.zip", tmp_path)


@pytest.mark.parametrize("form", ["zip", "dir"])
@pytest.mark.parametrize("change, message", [
    (lambda m: {k.replace("test/", "val/", 1): v for k, v in m.items()}, "a val/ folder where test/ was expected"),
    (lambda m: {k.replace("train/", "train/images/", 1): v for k, v in m.items()}, "an extra folder level"),
    (lambda m: {**m, "extra/c0/0.png": m["train/c0/0000.png"]}, "images in extra/ beside train/ and test/"),
    (lambda m: {**m, "train/0000.png": m["train/c0/0000.png"]}, "'train/0000.png'"),
    (lambda m: {k: v for k, v in m.items() if not k.startswith("test/c4/")}, "c4 have training images but no test"),
])
def test_other_layouts_say_what_was_found(tiny_dataset, tmp_path, form, change, message):
    members = change(image_folder_members(tiny_dataset))
    if form == "zip":
        write_zip(tmp_path / "x.zip", members)
    else:
        write_dir(tmp_path / "x", members)
    with pytest.raises(ConfigError, match=message):
        _load("imagefolder:x.zip" if form == "zip" else "imagefolder:x", tmp_path, where="sc.toml")


@pytest.mark.parametrize("form", ["zip", "dir"])
def test_operating_system_litter_is_ignored(tiny_dataset, tmp_path, form):
    junk = {"top/train/c0/._0000.png": b"\x00\x05\x16\x07", "top/train/c1/.DS_Store": b"\x00",
            "top/test/Thumbs.db": b"\x00", "__MACOSX/top/train/c0/._0000.png": b"\x00\x05\x16\x07",
            ".DS_Store": b"\x00"}  # macOS and Windows add these beside the data
    members = {**{f"top/{k}": v for k, v in image_folder_members(tiny_dataset).items()}, **junk}
    if form == "zip":
        write_zip(tmp_path / "x.zip", members)
    else:
        write_dir(tmp_path / "x", members)
    ds = _load("imagefolder:x.zip" if form == "zip" else "imagefolder:x", tmp_path)
    assert len(ds.train_y) == len(tiny_dataset.train_y)  # the wrapping top/ folder is still recognised


@pytest.mark.parametrize("tsv, message", [
    ("c0\tzero\nc1\tone\n".encode("utf-16"), "classes.tsv in .* is not UTF-8 text \\(line 1"),
    ("c0\tzéro\n".encode("utf-8") + b"c1\t\xff\n", "not UTF-8 text \\(line 2, byte 0xff\\)"),
    (b"c0\tzero\n\nc1 one\n", "classes.tsv in .*, line 3: not <class id><TAB><names>"),
    (b"c0\tzero\n\tnone\n", "line 2: not <class id><TAB><names>"),
    (b"c0\tzero\nc0\tnull\n", "line 2: class id 'c0' is listed a second time"),
])
def test_bad_classes_tsv_names_the_line(tiny_dataset, tmp_path, tsv, message):
    write_zip(tmp_path / "x.zip", {**image_folder_members(tiny_dataset), "classes.tsv": tsv})
    with pytest.raises(ConfigError, match=message) as err:
        _load("imagefolder:x.zip", tmp_path, where="sc.toml")
    assert str(err.value).startswith("sc.toml, field 'dataset': ")


def test_data_errors_name_the_definition_file(tmp_path):
    (tmp_path / "garbage.zip").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="^scenarios/x.toml, field 'dataset': .*not a readable zip"):
        _load("imagefolder:garbage.zip", tmp_path, where="scenarios/x.toml")


@pytest.mark.parametrize("damage", ["meta-deleted", "npy-header", "class-names-missing"])
def test_a_damaged_decoded_entry_is_decoded_again_with_a_note(tiny_dataset, tmp_path, damage, capsys):
    write_zip(tmp_path / "tiny.zip", image_folder_members(tiny_dataset))
    reference = np.array(_load("imagefolder:tiny.zip", tmp_path).train_x)
    (entry,) = (tmp_path / "cache" / "decoded").iterdir()
    if damage == "meta-deleted":
        (entry / "meta.json").unlink()
    elif damage == "npy-header":
        raw = bytearray((entry / "train_y.npy").read_bytes())
        raw[20:30] = b"{'(\x00\x00\x00\x00\x00\x00["
        (entry / "train_y.npy").write_bytes(bytes(raw))
    else:
        meta = json.loads((entry / "meta.json").read_text())
        del meta["class_names"]
        (entry / "meta.json").write_text(json.dumps(meta))
    capsys.readouterr()
    again = _load("imagefolder:tiny.zip", tmp_path)
    np.testing.assert_array_equal(again.train_x, reference)
    assert f"decoded cache entry '{entry}' is corrupt" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "cache" / "decoded").iterdir()] == [entry.name]
    _load("imagefolder:tiny.zip", tmp_path)
    assert capsys.readouterr().err == ""  # healed: the next load is a plain hit


def test_a_full_disk_while_decoding_is_named_and_leaves_nothing(tiny_dataset, tmp_path, monkeypatch):
    import errno

    def enospc(*a):
        raise OSError(errno.ENOSPC, "No space left on device")

    write_zip(tmp_path / "tiny.zip", image_folder_members(tiny_dataset))
    monkeypatch.setattr("os.posix_fallocate", enospc)
    with pytest.raises(ConfigError, match=f"decoded/tiny-.*disk is full.*needs {72 * 8 * 8 * 3 + 128} bytes"):
        _load("imagefolder:tiny.zip", tmp_path)
    assert list((tmp_path / "cache" / "decoded").iterdir()) == []
