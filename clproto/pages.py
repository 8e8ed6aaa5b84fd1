"""Keeping memory-mapped arrays out of the resident set while they are streamed.

A decoded image store larger than RAM is read (and written) through a memory map, one batch at a
time. Every page a process touches in a file-backed map counts in its resident set (RSS) until the
kernel needs the memory back, so a pass over an 8 GB map would *look* like 8 GB of RSS (and the
kernel would have to reclaim it under pressure instead of the process handing it back). After a
batch is copied out (or written), :func:`release_rows` tells the kernel the process is done with
those pages (``madvise(MADV_DONTNEED)``): for a *shared* file mapping — numpy's modes ``"r"`` and
``"r+"`` — that only drops this process's page-table entries; the data stay in the page cache (and
dirty pages are still written back), so a later read sees the same bytes. A copy-on-write map (mode
``"c"``) would lose its private changes, so it is never released; neither is anything that is not a
C-contiguous ``np.memmap`` (then this is a no-op, as on systems without ``madvise``).

A leaf module: numpy and the standard library only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import sys

import numpy as np

MADV_DONTNEED = 4  # Linux's value (<sys/mman.h>); madvise is only called on Linux
_PAGE = mmap.PAGESIZE
# what one page fault on a file map may map at once: the page cache keeps large folios (up to a PMD, 2 MiB on
# x86-64), mapped whole, besides the kernel's 64 KiB fault-around; measured: 64 KiB blocks left 20 % of a shuffled
# pass over 3 KiB rows resident, 2 MiB blocks none (tests/integration/test_streamed_store.py)
FAULT_AROUND = 2 * 1024 * 1024


def _libc_madvise():
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    fn.restype = ctypes.c_int
    return fn


_MADVISE = _libc_madvise()


def releasable(array: np.ndarray) -> bool:
    """True when :func:`release_rows` may drop ``array``'s pages: a C-contiguous shared (``r``/``r+``) memmap."""
    return (_MADVISE is not None and isinstance(array, np.memmap) and getattr(array, "mode", None) in ("r", "r+")
            and array.flags.c_contiguous and array.size > 0)


def release_rows(array: np.ndarray, start: int, stop: int, *, outward: bool = False) -> bool:
    """Drop the resident pages of rows ``[start, stop)`` of a memory-mapped ``array``: the whole pages inside that
    byte range, or with ``outward`` every page of the :data:`FAULT_AROUND` blocks it touches (within the array):
    reading a row maps its neighbours' pages too (fault-around, large folios), and rows smaller than a page share
    pages, so a shuffled reader copying rows one by one must drop those as well; a neighbour read later just faults
    its page back in from the page cache. True when ``madvise`` was called and succeeded."""
    row = array.strides[0] if array.ndim else array.itemsize
    return release_bytes(array, max(0, start) * row, min(stop, len(array) if array.ndim else 1) * row, outward=outward)


def release_bytes(array: np.ndarray, lo: int, hi: int, *, outward: bool = False) -> bool:
    """:func:`release_rows` by byte offsets ``[lo, hi)`` into the array's data."""
    if not releasable(array) or hi <= lo:
        return False
    base = array.__array_interface__["data"][0]
    end = base + min(hi, array.nbytes)
    if outward:  # the blocks holding any byte of the range, clipped to the array's pages (the mapping has them all)
        first = max((base + lo) // FAULT_AROUND * FAULT_AROUND, base // _PAGE * _PAGE)
        last = min(-(-end // FAULT_AROUND) * FAULT_AROUND, -(-(base + array.nbytes) // _PAGE) * _PAGE)
    else:
        first = -(-(base + lo) // _PAGE) * _PAGE  # round up: never a page holding bytes before `lo`
        last = end // _PAGE * _PAGE  # round down: never a page holding bytes after `hi`
    if last <= first:
        return False
    return _MADVISE(ctypes.c_void_p(first), ctypes.c_size_t(last - first), MADV_DONTNEED) == 0


def release_all(array: np.ndarray) -> bool:
    """:func:`release_rows` over the whole array."""
    return release_rows(array, 0, len(array)) if array.ndim else False
