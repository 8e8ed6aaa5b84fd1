"""Image folders: ``imagefolder:PATH`` and ``tinyimagenet:PATH`` (a directory or a ``.zip``, read in place).

``imagefolder``: ``train/<class>/<image>`` and ``test/<class>/<image>`` with an optional
``classes.tsv`` (``<class id>\\t<names>``). Any other layout is a :class:`ConfigError` saying what
was found instead (a ``val/`` folder, an extra folder level, images without a class folder, stray
files); so are a class without test images and a bad ``classes.tsv`` line (named by number).

``tinyimagenet``: the official layout, ``train/<wnid>/images/*`` for training and the labelled
``val/`` split (``val/val_annotations.txt``) as test, class names from ``words.txt``.

Both decode through :mod:`clproto.data.kinds.decoded` (``?size=`` resizes on decode).
"""

from __future__ import annotations

from clproto.data.kinds.archive import Source, is_image, read_text, read_tsv
from clproto.data.kinds.decoded import ImageSize, Listing, decoded_cached
from clproto.data.paths import cache_root
from clproto.data.registry import DatasetKind, DatasetRequest
from clproto.errors import ConfigError

IMAGEFOLDER_LAYOUT = "train/<class>/<image> and test/<class>/<image> (plus an optional classes.tsv)"


def read_imagefolder(src: Source) -> Listing:
    train: list[tuple[str, str]] = []
    test: list[tuple[str, str]] = []
    stray: list[str] = []
    for f in src.files:
        parts = f.split("/")
        if parts[0] in ("train", "test"):
            if len(parts) == 3 and is_image(f):
                (train if parts[0] == "train" else test).append((parts[1], f))
            else:
                stray.append(f)
    others = sorted({f.split("/")[0] + "/" for f in src.files if "/" in f and is_image(f)} - {"train/", "test/"})
    if not train or not test or others:
        raise ConfigError(f"{str(src.path)!r} is not an image folder: {layout_found(src, others)}",
                          field="dataset", expected=IMAGEFOLDER_LAYOUT)
    if stray:
        raise ConfigError(
            f"{str(src.path)!r} holds {len(stray)} file(s) that are not train/<class>/<image> or "
            f"test/<class>/<image>: " + ", ".join(repr(f) for f in stray[:3]) + (" ..." if len(stray) > 3 else ""),
            field="dataset", expected=IMAGEFOLDER_LAYOUT + " only")
    class_ids = sorted({c for c, _ in train})
    check_test_classes(src, class_ids, {c for c, _ in test})
    return Listing(class_ids, read_tsv(src, "classes.tsv"), train, test)


def check_test_classes(src: Source, class_ids: list[str], tested: set[str]) -> None:
    """Every class has test images, and the test split has no class without training images."""
    unknown = sorted(tested - set(class_ids))
    if unknown:
        raise ConfigError(f"{str(src.path)!r}: test/ has classes with no training images: {unknown[:5]}",
                          field="dataset")
    untested = sorted(set(class_ids) - tested)
    if untested:
        raise ConfigError(
            f"{str(src.path)!r}: class(es) {', '.join(untested[:5])}{' ...' if len(untested) > 5 else ''} have "
            f"training images but no test images (no test/{untested[0]}/)",
            field="dataset", expected="test images for every class")


def layout_found(src: Source, others: list[str]) -> str:
    """Which layout ``src`` has instead of train/<class>/ + test/<class>/, in a few words."""
    images = [f for f in src.files if is_image(f)]
    if not images:
        return "it holds no images"
    tops = sorted({f.split("/")[0] + "/" for f in images if "/" in f})
    found = []
    if "val/" in tops and "test/" not in tops:
        found.append("a val/ folder where test/ was expected")
    if others and not found:
        found.append("images in " + ", ".join(others[:3]) + " beside train/ and test/")
    deeper = [f for f in images if f.split("/")[0] in ("train", "test", "val") and len(f.split("/")) > 3]
    if deeper:
        found.append(f"an extra folder level, e.g. {deeper[0]!r}")
    flat = [f for f in images if f.split("/")[0] in ("train", "test", "val") and len(f.split("/")) == 2]
    if flat:
        found.append(f"images without a class folder, e.g. {flat[0]!r}")
    for split in ("train/", "test/"):
        if split not in tops and not (split == "test/" and "val/" in tops):
            found.append(f"no {split} folder")
    hint = (" - the official Tiny-ImageNet layout: use dataset = \"tinyimagenet:...\""
            if "val/val_annotations.txt" in src.fileset else "")
    return "found " + "; ".join(found) + f" (top-level folders with images: {', '.join(tops) or 'none'}){hint}"


def read_tinyimagenet(src: Source) -> Listing:
    """train/<wnid>/images/*.JPEG for training; the labelled val/ split (val_annotations.txt) as test."""
    train = []
    for f in src.files:
        parts = f.split("/")
        if len(parts) == 4 and parts[0] == "train" and parts[2] == "images" and is_image(f):
            train.append((parts[1], f))
    if "val/val_annotations.txt" not in src.fileset or not train:
        raise ConfigError(
            f"{str(src.path)!r} is not in the official Tiny-ImageNet layout",
            field="dataset",
            expected="train/<wnid>/images/*.JPEG and val/val_annotations.txt",
        )
    class_ids = sorted({c for c, _ in train})
    known = set(class_ids)
    test = []
    for n, line in enumerate(read_text(src, "val/val_annotations.txt").splitlines(), 1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2 or f"val/images/{fields[0]}" not in src.fileset:
            raise ConfigError(f"{str(src.path)!r}: val/val_annotations.txt line {n} names no image in val/images/",
                              field="dataset", value=line[:80], expected="<file>\\t<wnid>\\t... per line")
        if fields[1] in known:
            test.append((fields[1], f"val/images/{fields[0]}"))
    names = read_tsv(src, "words.txt")
    return Listing(class_ids, {c: names.get(c, c) for c in class_ids}, train, sorted(test))


def _load_imagefolder(req: DatasetRequest):
    return decoded_cached("imagefolder", req.path, read_imagefolder, cache_root(req.cache_dir),
                          progress=req.progress, size=req.options)


def _load_tinyimagenet(req: DatasetRequest):
    return decoded_cached("tinyimagenet", req.path, read_tinyimagenet, cache_root(req.cache_dir),
                          progress=req.progress, size=req.options)


IMAGEFOLDER = DatasetKind("imagefolder", _load_imagefolder, "train/<class>/*, test/<class>/* (+ classes.tsv), "
                          "directory or .zip", path="required", options=ImageSize)
TINYIMAGENET = DatasetKind("tinyimagenet", _load_tinyimagenet, "official Tiny-ImageNet layout "
                           "(train/<wnid>/images, val/val_annotations.txt), directory or .zip",
                           path="required", options=ImageSize)
