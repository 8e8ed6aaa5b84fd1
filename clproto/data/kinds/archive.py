"""Reading a dataset's files uniformly from a directory or a zip (no extraction), and its small text files.

Operating-system litter (``__MACOSX/``, ``._*`` AppleDouble files, ``.DS_Store``, ``Thumbs.db``,
``desktop.ini``) is not part of a listing. Reading a zip member checks its CRC-32; a damaged member,
a file that is not UTF-8 and a bad line of a list file are :class:`ConfigError` naming the file.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from clproto.errors import ConfigError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".tif", ".tiff", ".jpe")
LITTER = ("__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini")  # files systems add beside the data
SPLIT_FOLDERS = ("train", "test", "val")  # top-level folders that are part of a layout, never a wrapper


class Source:
    """A directory or a zip file, read uniformly by relative posix path (``files``, ``fileset``, ``read``).

    One top-level folder wrapping everything (``tiny-imagenet-200/...``, ``CUB_200_2011/...``) is
    looked through, unless it is itself a split folder (``train``/``test``/``val``) or one of ``keep``.
    """

    def __init__(self, path: Path, *, keep: tuple[str, ...] = ()) -> None:
        self.path = path
        self.zip: zipfile.ZipFile | None = None
        self.prefix = ""
        not_wrappers = SPLIT_FOLDERS + keep
        if path.is_file():
            try:
                self.zip = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as exc:
                raise ConfigError(f"{str(path)!r} is not a readable zip file: {exc}", field="dataset") from exc
            names = [n for n in self.zip.namelist() if not n.endswith("/") and not is_litter(n)]
            tops = {n.split("/", 1)[0] for n in names}
            if len(tops) == 1 and all("/" in n for n in names) and next(iter(tops)) not in not_wrappers:
                self.prefix = next(iter(tops)) + "/"
            self.files = sorted(n[len(self.prefix):] for n in names)
        else:
            base = path
            entries = [e for e in os.listdir(base) if not is_litter(e)]
            if len(entries) == 1 and (base / entries[0]).is_dir() and entries[0] not in not_wrappers:
                base = base / entries[0]
            self.base = base
            self.files = sorted(
                name
                for dp, _, fs in os.walk(base)
                for f in fs
                if not is_litter(name := str(PurePosixPath(Path(dp).relative_to(base)) / f))
            )
        self.fileset = set(self.files)

    def read(self, name: str) -> bytes:
        if self.zip is None:
            return (self.base / name).read_bytes()
        info = self.zip.getinfo(self.prefix + name)
        try:
            data = self.zip.read(info)  # zipfile compares the CRC-32 itself once it read the whole member
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError) as exc:
            problem = "fails its CRC-32 check" if "CRC" in str(exc) else f"cannot be read ({exc})"
            raise self._damaged(name, problem) from exc
        if zlib.crc32(data) != info.CRC:  # the same check, explicit: cheap (GB/s) next to decoding an image
            raise self._damaged(name, "fails its CRC-32 check")
        return data

    def _damaged(self, name: str, problem: str) -> ConfigError:
        return ConfigError(f"member {name!r} of {str(self.path)!r} {problem}: the zip is damaged", field="dataset",
                           expected="an intact zip (download or create it again)")

    def close(self) -> None:
        if self.zip is not None:
            self.zip.close()


def is_litter(name: str) -> bool:
    parts = name.split("/")
    return parts[0] == "__MACOSX" or parts[-1].startswith("._") or parts[-1] in LITTER


def is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def read_text(src: Source, name: str) -> str:
    """A UTF-8 text member; not UTF-8 is a ConfigError naming the line and byte."""
    raw = src.read(name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise ConfigError(f"{name} in {str(src.path)!r} is not UTF-8 text (line {line}, byte {raw[exc.start]:#04x})",
                          field="dataset", expected="a UTF-8 text file") from exc


def read_tsv(src: Source, name: str) -> dict[str, str]:
    """``<id>\\t<names, comma separated>`` lines -> id: first name. Not UTF-8, a line without a
    tab or an id, and an id listed twice are ConfigErrors naming the file and the line."""
    out: dict[str, str] = {}
    if name not in src.fileset:
        return out
    where = f"{name} in {str(src.path)!r}"
    for n, line in enumerate(read_text(src, name).splitlines(), 1):
        if not line.strip():
            continue
        cid, tab, names = line.partition("\t")
        cid = cid.strip()
        if not tab or not cid:
            raise ConfigError(f"{where}, line {n}: not <class id><TAB><names>", field="dataset", value=line[:80],
                              expected="<class id>\\t<names, comma separated> on every line")
        if cid in out:
            raise ConfigError(f"{where}, line {n}: class id {cid!r} is listed a second time", field="dataset",
                              value=line[:80], expected="each class id on one line")
        out[cid] = names.split(",")[0].strip() or cid
    return out


def read_table(src: Source, name: str, *, columns: int, sep: str | None = None, header: bool = False,
               expected: str) -> list[tuple[int, list[str]]]:
    """The non-blank lines of a list file split into exactly ``columns`` fields, with their line numbers.

    A missing file or a line with another number of fields is a ConfigError naming the file and line.
    """
    if name not in src.fileset:
        raise ConfigError(f"{str(src.path)!r} has no {name}", field="dataset", expected=expected)
    rows = []
    for n, line in enumerate(read_text(src, name).splitlines(), 1):
        if not line.strip() or (header and n == 1):
            continue
        fields = [f.strip() for f in (line.split(sep) if sep else line.split(None, columns - 1))]
        if len(fields) != columns or not all(fields):
            raise ConfigError(f"{name} in {str(src.path)!r}, line {n}: not {columns} fields", field="dataset",
                              value=line[:80], expected=expected)
        rows.append((n, fields))
    return rows
