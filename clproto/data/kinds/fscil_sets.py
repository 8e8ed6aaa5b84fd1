"""The image datasets of the few-shot class-incremental benchmarks (TOPIC, CEC, TEEN).

``miniimagenet:PATH`` — miniImageNet's 100 classes (500 training and 100 test images each) in either
  layout in use: TOPIC's folders ``train/<wnid>/<file>.jpg`` + ``test/<wnid>/<file>.jpg`` (what the
  TOPIC index lists name: ``MINI-ImageNet/train/<wnid>/<file>.jpg``), or CEC/TEEN's
  ``images/<file>.jpg`` + ``split/train.csv`` + ``split/test.csv`` (``filename,label`` lines after a
  header). Decoded to ``size`` = 84 (the protocol's input size) unless the spec says otherwise.
``cub200:PATH`` — CUB-200-2011 in its official layout: ``images/<class dir>/<file>.jpg``,
  ``images.txt`` (``<image id> <path>``), ``image_class_labels.txt`` (``<image id> <class id>``),
  ``train_test_split.txt`` (``<image id> <1 = train, 0 = test>``) and ``classes.txt``
  (``<class id> <class dir>``); the folder ``CUB_200_2011`` (or the one holding it, or a zip).
  Decoded to ``size`` = 224 (TEEN/CEC crop 224 x 224) unless the spec says otherwise.

Every training sample keeps its ``<class folder>/<file>`` (``Dataset.train_names``), which is how
the TOPIC index lists find it. A list file that names a missing image, an image without a split
or label line, an id listed twice and a class id missing from ``classes.txt`` are
:class:`ConfigError` naming the file, the count and the first few.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from clproto.data.kinds.archive import Source, read_table, read_tsv
from clproto.data.kinds.decoded import ImageSize, Listing, decoded_cached
from clproto.data.kinds.imagefolder import check_test_classes, read_imagefolder
from clproto.data.paths import cache_root
from clproto.data.registry import DatasetKind, DatasetRequest
from clproto.errors import ConfigError

MINI_LAYOUTS = ("train/<wnid>/<file>.jpg + test/<wnid>/<file>.jpg (TOPIC), or images/<file>.jpg + "
                "split/train.csv + split/test.csv (CEC/TEEN)")
CUB_FILES = ("images.txt", "image_class_labels.txt", "train_test_split.txt", "classes.txt")


@dataclass(frozen=True)
class MiniImageNetSize(ImageSize):
    size: int = 84  # the FSCIL protocol's input size (CEC/TEEN: 84 x 84)


@dataclass(frozen=True)
class CubSize(ImageSize):
    size: int = 224  # TEEN/CEC train and test on 224 x 224 crops


def _first_few(items: list[str], n: int = 3) -> str:
    return ", ".join(repr(i) for i in items[:n]) + (" ..." if len(items) > n else "")


# --------------------------------------------------------------------------- miniImageNet
def read_miniimagenet(src: Source) -> Listing:
    if "split/train.csv" not in src.fileset:
        if not any(f.startswith("train/") for f in src.files):
            raise ConfigError(f"{str(src.path)!r} is not miniImageNet in a known layout", field="dataset",
                              expected=MINI_LAYOUTS)
        return read_imagefolder(src)  # TOPIC: train/<wnid>/ + test/<wnid>/
    splits = {}
    for split in ("train", "test"):
        rows = read_table(src, f"split/{split}.csv", columns=2, sep=",", header=True,
                          expected="a header line, then <file>,<wnid> per line")
        files = [f for _, (f, _) in rows]
        missing = [f for f in files if f"images/{f}" not in src.fileset]
        if missing:
            raise ConfigError(f"split/{split}.csv in {str(src.path)!r} names {len(missing)} image(s) missing from "
                              f"images/: {_first_few(missing)}", field="dataset", expected=MINI_LAYOUTS)
        splits[split] = [(wnid, f"images/{f}") for _, (f, wnid) in rows]
    class_ids = sorted({c for c, _ in splits["train"]})
    check_test_classes(src, class_ids, {c for c, _ in splits["test"]})
    names = [f"{c}/{m.rsplit('/', 1)[1]}" for c, m in splits["train"]]  # <wnid>/<file>, as the lists name it
    return Listing(class_ids, read_tsv(src, "classes.tsv"), splits["train"], splits["test"], train_names=names)


def _load_miniimagenet(req: DatasetRequest):
    return decoded_cached("miniimagenet", req.path, read_miniimagenet, cache_root(req.cache_dir),
                          progress=req.progress, size=req.options, keep=("images", "split"))


# --------------------------------------------------------------------------- CUB-200-2011
def read_cub(src: Source) -> Listing:
    roots = sorted((f[: -len("images.txt")] for f in src.files if f.endswith("images.txt")
                    and f[: -len("images.txt")] + "train_test_split.txt" in src.fileset), key=len)
    if not roots:
        absent = [n for n in CUB_FILES if not any(f.endswith(n) for f in src.files)]
        raise ConfigError(f"{str(src.path)!r} is not CUB-200-2011 in its official layout (no {', '.join(absent)})",
                          field="dataset", expected="images/, " + ", ".join(CUB_FILES))
    root = roots[0]  # "" or e.g. "CUB_200_2011/"
    table = {name: read_table(src, root + name, columns=2, expected=f"<id> <value> per line of {name}")
             for name in CUB_FILES}
    paths, labels, is_train, classes = ({k: v for _, (k, v) in table[name]} for name in CUB_FILES)
    for name in CUB_FILES:
        counts = Counter(k for _, (k, _) in table[name])
        dupes = sorted(i for i, n in counts.items() if n > 1)
        if dupes:
            raise ConfigError(f"{root}{name} in {str(src.path)!r} lists {len(dupes)} id(s) more than once: "
                              f"{_first_few(dupes)}", field="dataset", expected="each id on one line")
    for name, table_of in (("image_class_labels.txt", labels), ("train_test_split.txt", is_train)):
        absent = [i for i in paths if i not in table_of]
        if absent:
            raise ConfigError(f"{root}{name} in {str(src.path)!r} has no line for {len(absent)} image id(s) of "
                              f"images.txt: {_first_few(absent)}", field="dataset", expected="a line per image")
    unknown = sorted({c for c in labels.values() if c not in classes})
    missing = [p for p in paths.values() if f"{root}images/{p}" not in src.fileset]
    bad_split = sorted({v for v in is_train.values() if v not in ("0", "1")})
    for problem, found in (("class id(s) missing from classes.txt", unknown), ("image(s) missing from images/", missing),
                           ("train_test_split values other than 0 and 1", bad_split)):
        if found:
            raise ConfigError(f"{str(src.path)!r}: {len(found)} {problem}: {_first_few(found)}", field="dataset",
                              expected="the official CUB-200-2011 files, unchanged")
    train, test = [], []
    for image_id, rel in paths.items():  # images.txt order
        (train if is_train[image_id] == "1" else test).append((classes[labels[image_id]], f"{root}images/{rel}"))
    class_ids = sorted({c for c, _ in train})
    check_test_classes(src, class_ids, {c for c, _ in test})
    names = {c: c.split(".", 1)[-1] for c in class_ids}  # "001.Black_footed_Albatross" -> "Black_footed_Albatross"
    return Listing(class_ids, names, train, test)


def _load_cub(req: DatasetRequest):
    return decoded_cached("cub200", req.path, read_cub, cache_root(req.cache_dir), progress=req.progress,
                          size=req.options, keep=("images",))


MINIIMAGENET = DatasetKind("miniimagenet", _load_miniimagenet, "miniImageNet: " + MINI_LAYOUTS, path="required",
                           options=MiniImageNetSize)
CUB200 = DatasetKind("cub200", _load_cub, "CUB-200-2011, official layout (images/, images.txt, "
                     "image_class_labels.txt, train_test_split.txt, classes.txt)", path="required", options=CubSize)
