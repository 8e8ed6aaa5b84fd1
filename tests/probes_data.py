"""Trust probes of the data side (issue 10): scenario caps, image zips, classes.tsv, the caches, a full disk.

Each probe writes a tiny image zip (4 classes, PNG or JPEG members) and a one-strategy run, so the
whole module runs in seconds. The cache probes run clproto once to fill the cache, damage an entry,
then expect the probed run to heal it (exit 0) with a note saying so.
"""

from __future__ import annotations

import errno
import io
import zipfile
from pathlib import Path

import numpy as np
from imagezips import image_folder_members, write_zip
from PIL import Image

from conftest import make_tiny_dataset
from probes import Probe

TINY = make_tiny_dataset(num_classes=4, train_per_class=4, test_per_class=2)
MEMBERS = image_folder_members(TINY)  # classes.tsv + train/c<k>/<i>.png + test/c<k>/<i>.png


# --------------------------------------------------------------------------- builders
def _scenario(tmp: Path, extra: str = "", *, dataset: str = "imagefolder:imgs.zip", kind: str = "increment = 2") -> Path:
    path = tmp / "sc.toml"
    path.write_text(f'[scenario]\nname = "sc"\ndataset = "{dataset}"\nclass_order = "listed"\n{kind}\n{extra}\n')
    return path


def _strategy(tmp: Path) -> Path:
    path = tmp / "nmc.toml"
    path.write_text('[strategy]\nname = "nmc"\nimplementation = "nmc"\nbackbone = "pixels"\n')
    return path


def _run(tmp: Path, *extra: str, scenario: Path | None = None, out: str = "out") -> list[str]:
    sc = scenario or _scenario(tmp)
    return ["run", str(sc), str(_strategy(tmp)), "--seeds", "0", "--data-root", str(tmp), "--out", str(tmp / out),
            "--no-progress", *extra]


def _zip_run(members: dict[str, bytes], *extra: str, scenario_extra: str = "", kind: str = "increment = 2"):
    """A probe's ``make``: the zip ``imgs.zip`` holding ``members`` and a run of nmc on it."""
    def make(tmp: Path) -> list[str]:
        write_zip(tmp / "imgs.zip", members)
        return _run(tmp, *extra, scenario=_scenario(tmp, scenario_extra, kind=kind))
    return make


def _flip_member_byte(path: Path, member: str, *, at: int) -> None:
    """Flip one byte of ``member``'s stored bytes inside the zip (its CRC-32 in the headers stays)."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(member)
    raw = bytearray(path.read_bytes())
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + at] ^= 0x01
    path.write_bytes(bytes(raw))


def _jpeg_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _jpeg_members() -> dict[str, bytes]:
    return {k.replace(".png", ".jpg"): (v if k == "classes.tsv" else _jpeg_bytes(np.asarray(Image.open(io.BytesIO(v)))))
            for k, v in MEMBERS.items()}


def _flipped_jpeg(tmp: Path) -> list[str]:
    members = _jpeg_members()
    write_zip(tmp / "imgs.zip", members)
    name = "train/c1/0005.jpg"
    _flip_member_byte(tmp / "imgs.zip", name, at=len(members[name]) - 20)  # inside the entropy-coded scan
    return _run(tmp)


def _flipped_tsv(tmp: Path) -> list[str]:
    write_zip(tmp / "imgs.zip", MEMBERS)
    _flip_member_byte(tmp / "imgs.zip", "classes.tsv", at=3)
    return _run(tmp)


def _without(prefix: str) -> dict[str, bytes]:
    return {k: v for k, v in MEMBERS.items() if not k.startswith(prefix)}


def _renamed(old: str, new: str) -> dict[str, bytes]:
    return {k.replace(old, new, 1): v for k, v in MEMBERS.items()}


def _deeper(name: str) -> str:
    """train/c0/0000.png -> train/c0/images/0000.png (the Tiny-ImageNet habit)."""
    head, sep, file = name.rpartition("/")
    return f"{head}/images/{file}" if sep else name


def _no_cache_temp(tmp: Path) -> None:
    """Nothing half-written in the cache: no private ``.tmp-*`` or ``.trash-*`` folder is left."""
    left = [p for p in (tmp / "cache").rglob(".t*-*")]
    assert not left, f"cache temp folders left: {left}"


# --------------------------------------------------------------------------- caches: damaged entries heal
def _damaged(kind: str, damage: str):
    """Fill the decoded and feature caches as a run would, damage one ``kind`` entry, then run."""
    def make(tmp: Path) -> list[str]:
        from clproto.data.sources import load_dataset
        from clproto.features.backbone import extract_dataset_features, load_backbone

        write_zip(tmp / "imgs.zip", MEMBERS)
        dataset = load_dataset("imagefolder:imgs.zip", data_root=tmp, cache_dir=tmp / "cache", progress=False)
        extract_dataset_features(load_backbone("pixels"), dataset, progress=False, cache_dir=tmp / "cache")
        entry = sorted(p for p in (tmp / "cache" / kind).iterdir() if not p.name.startswith("."))[0]
        if damage == "meta-deleted":
            (entry / "meta.json").unlink()
        else:  # a damaged .npy header: the dict literal numpy parses is cut in the middle
            npy = next(entry.glob("*.npy"))
            raw = bytearray(npy.read_bytes())
            raw[20:30] = b"{'(\x00\x00\x00\x00\x00\x00["
            npy.write_bytes(bytes(raw))
        return _run(tmp, out="second")
    return make


def _healed(tmp: Path) -> None:
    _no_cache_temp(tmp)
    assert (tmp / "second" / "sc" / "nmc" / "seed0" / "results.json").exists()


# --------------------------------------------------------------------------- a full disk
def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _disk_full_at_fallocate(monkeypatch, tmp: Path) -> None:
    monkeypatch.setattr("os.posix_fallocate", _enospc)


def _disk_full_at_fsync(monkeypatch, tmp: Path) -> None:
    monkeypatch.setattr("os.fsync", _enospc)


def _fresh_out(tmp: Path) -> None:
    _no_cache_temp(tmp)
    assert not (tmp / "out").exists() or not any(p.is_file() and p.name != ".sweep.lock" for p in (tmp / "out").rglob("*"))


# --------------------------------------------------------------------------- the probes
PROBES = [
    # scenario caps: negative values are refused before any data is read (also in sweeps)
    Probe("scenario-negative-train-per-class", _zip_run(MEMBERS, scenario_extra="train_per_class = -1"),
          says=("sc.toml", "train_per_class", "-1", "non-negative")),
    Probe("scenario-negative-test-per-class-set", _zip_run(MEMBERS, "--set", "scenario.test_per_class=-1"),
          says=("sc.toml", "--set scenario.test_per_class=-1", "test_per_class", "non-negative")),
    Probe("sweep-negative-train-per-class",
          lambda tmp: ["sweep", "--scenario", str(_scenario(tmp, dataset="digits")), "--strategy", str(_strategy(tmp)),
                       "--vary", "scenario.train_per_class=[3,-1]", "--seeds", "0", "--jobs", "1",
                       "--out", str(tmp / "out"), "--no-progress"],
          says=("train_per_class", "-1", "non-negative")),
    # classes.tsv
    Probe("classes-tsv-not-utf8", _zip_run({**MEMBERS, "classes.tsv": "c0\tcafé\n".encode("latin-1")}),
          says=("sc.toml", "classes.tsv", "UTF-8", "line 1")),
    Probe("classes-tsv-bad-line", _zip_run({**MEMBERS, "classes.tsv": b"c0\tzero\nc1 one\n"}),
          says=("sc.toml", "classes.tsv", "line 2", "<class id>")),
    Probe("classes-tsv-bad-crc", _flipped_tsv, says=("sc.toml", "classes.tsv", "fails its CRC-32 check")),
    # image members: a flipped byte in a JPEG decodes fine, only the zip's CRC-32 can tell
    Probe("jpeg-member-bad-crc", _flipped_jpeg, says=("sc.toml", "train/c1/0005.jpg", "fails its CRC-32 check")),
    Probe("image-member-not-an-image", _zip_run({**MEMBERS, "train/c0/0000.png": b"\x89PNG\r\n\x1a\nbroken"}),
          says=("sc.toml", "train/c0/0000.png")),
    # zip layouts other than train/<class>/ + test/<class>/
    Probe("zip-layout-val-folder", _zip_run(_renamed("test/", "val/")),
          says=("sc.toml", "imgs.zip", "val/", "train/<class>/", "test/<class>/")),
    Probe("zip-layout-extra-images-level",
          _zip_run({_deeper(k): v for k, v in MEMBERS.items()}),
          says=("sc.toml", "imgs.zip", "images/")),
    Probe("zip-layout-stray-files", _zip_run({**MEMBERS, "train/notes.txt": b"hello", "train/c0/x.png.bak": b"?"}),
          says=("sc.toml", "imgs.zip", "train/notes.txt")),
    Probe("zip-macos-junk-is-ignored",
          _zip_run({**MEMBERS, "__MACOSX/train/c0/._0000.png": b"\x00\x05\x16\x07junk",
                    "train/c0/._0000.png": b"\x00\x05\x16\x07junk", "__MACOSX/._classes.tsv": b"junk"}),
          code=0),
    Probe("class-without-test-images", _zip_run(_without("test/c3/")),
          says=("sc.toml", "imgs.zip", "c3", "no test images")),
    # the shots hint must not suggest a larger train_per_class when it already means all images
    Probe("shots-hint-with-all-images",
          _zip_run(MEMBERS, kind='kind = "few-shot"\nbase_classes = 2\nways = 1\nshots = 5'),
          says=("sc.toml", "shots", "at most 4", "no more training images")),
    Probe("shots-hint-with-a-cap",
          _zip_run(MEMBERS, kind='kind = "few-shot"\nbase_classes = 2\nways = 1\nshots = 4',
                   scenario_extra="train_per_class = 2"),
          says=("sc.toml", "shots", "at most 2", "train_per_class of at least 4")),
    # caches: a damaged entry is recomputed with a note, never a blocked run
    Probe("decoded-cache-meta-deleted-heals", _damaged("decoded", "meta-deleted"), code=0,
          prints=("decoded cache entry", "is corrupt", "decoding imgs.zip again"), check=_healed),
    Probe("decoded-cache-npy-header-damaged-heals", _damaged("decoded", "npy-header"), code=0,
          prints=("decoded cache entry", "is corrupt", "decoding imgs.zip again"), check=_healed),
    Probe("feature-cache-meta-deleted-heals", _damaged("features", "meta-deleted"), code=0,
          prints=("corrupt entry recomputed",), check=_healed),
    Probe("feature-cache-npy-header-damaged-heals", _damaged("features", "npy-header"), code=0,
          prints=("corrupt entry recomputed",), check=_healed),
    # a full disk: one line naming the path and the bytes needed, nothing half-written
    Probe("cache-disk-full", _zip_run(MEMBERS), patch=_disk_full_at_fallocate,
          says=("disk is full", "cache/decoded/imgs-", "needs 3200 bytes"), check=_fresh_out),
    Probe("out-disk-full", lambda tmp: _run(tmp, scenario=_scenario(tmp, dataset="digits")), patch=_disk_full_at_fsync,
          says=("disk is full", "config.json", "bytes"), check=_fresh_out),
]
