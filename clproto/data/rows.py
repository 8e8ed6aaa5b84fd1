"""Training images left where they are: rows of a (memory-mapped) uint8 array, read one batch at a time.

An experience's training set is a list of row indices into the dataset's images, which for an image
dataset are the decoded store's memory map (:mod:`clproto.data.kinds.decoded`). Reading
``train_x[indices]`` copies the whole experience into RAM; an :class:`ImageRows` instead hands the
training loop the array and the rows, and the loop gathers each shuffled batch (``read``) as it needs
it, so a training set larger than RAM can be trained on (the pages each batch came from are released
after the copy: :mod:`clproto.pages`). The values a batch holds are exactly those of
``train_x[indices][positions]``: training on an :class:`ImageRows` gives the same numbers as on the tensor.

    rows = experience.train_rows                 # ImageRows over the dataset's (N, H, W, C) uint8 images
    batch = rows.read(np.array([3, 0, 7]))       # (3, H, W, C) uint8 tensor: rows 3, 0 and 7 of the experience

A leaf of the data layer: numpy, torch and :mod:`clproto.pages` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from clproto.pages import release_rows


RESIZE_CHUNK = 32  # images resized at once: the float copy of 32 images at 512x512 is 100 MB


def resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``(B, H, W, C)`` -> uint8 ``(B, size, size, C)`` (bilinear, antialiased, rounded); ``x`` itself when
    ``size`` is 0 or already its side. Each image is resized on its own (the same pixels in any batch), at most
    :data:`RESIZE_CHUNK` at a time, so the float working copy stays small whatever the batch."""
    if size == 0 or (x.shape[1] == size and x.shape[2] == size):
        return x
    out = torch.empty((len(x), size, size, x.shape[3]), dtype=torch.uint8)
    for i in range(0, len(x), RESIZE_CHUNK):
        r = F.interpolate(x[i:i + RESIZE_CHUNK].permute(0, 3, 1, 2).float(), size=(size, size), mode="bilinear",
                          align_corners=False, antialias=True)  # (b, C, size, size)
        out[i:i + RESIZE_CHUNK] = r.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return out  # (B, size, size, C)


def gather(array: np.ndarray, rows: np.ndarray) -> torch.Tensor:
    """``array[rows]`` (any order) as a contiguous tensor; each row's pages of a memory map, including those it
    shares with its neighbours, are released after the copy (a no-op for an array in RAM)."""
    rows = np.asarray(rows, dtype=np.int64)
    host = torch.from_numpy(array[rows])  # (B, ...): fancy indexing copies
    for r in rows:
        release_rows(array, int(r), int(r) + 1, outward=True)
    return host


@dataclass(frozen=True, eq=False)
class ImageRows:
    """The images ``array[rows]``, not read yet: what :meth:`TrainingLoop.run` streams batches from."""

    array: np.ndarray  # (M, H, W, C) uint8: a dataset's images, usually the decoded store's memory map
    rows: np.ndarray  # (N,) int64: the rows of `array` that make up this set, in its order
    size: int = 0  # images are resized on read to size x size (bilinear, antialiased); 0 keeps the stored size

    def __post_init__(self) -> None:
        rows = np.asarray(self.rows)
        if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
            raise ValueError(f"rows must be a 1-D array of integer indices, not {rows.dtype} of shape {rows.shape}")
        if self.array.ndim != 4 or self.array.dtype != np.uint8:
            raise ValueError(f"images must be (M, H, W, C) uint8 arrays, not {self.array.dtype} of shape "
                             f"{self.array.shape}")
        if rows.size and (rows.min() < 0 or rows.max() >= len(self.array)):
            raise ValueError(f"rows must lie in [0, {len(self.array)}), got {rows.min()}..{rows.max()}")
        if self.size < 0:
            raise ValueError(f"size must be 0 (keep) or a side in pixels, not {self.size}")
        object.__setattr__(self, "rows", rows.astype(np.int64, copy=False))

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(N, H, W, C)``, as the tensor ``array[rows]`` (resized) would have."""
        _, h, w, c = self.array.shape
        return (len(self.rows), self.size or h, self.size or w, c)

    def read(self, positions: np.ndarray) -> torch.Tensor:
        """Images at ``positions`` (indices into this set, any order) as a ``(B, H, W, C)`` uint8 tensor. Resized
        images are read :data:`RESIZE_CHUNK` at a time: never more than that many at the stored size in memory."""
        rows = self.rows[np.asarray(positions, dtype=np.int64)]
        _, h, w, c = self.shape
        if (h, w) == self.array.shape[1:3]:
            return gather(self.array, rows)  # (B, H, W, C)
        out = torch.empty((len(rows), h, w, c), dtype=torch.uint8)
        for i in range(0, len(rows), RESIZE_CHUNK):
            out[i:i + RESIZE_CHUNK] = resize(gather(self.array, rows[i:i + RESIZE_CHUNK]), self.size)
        return out  # (B, size, size, C)

    def subset(self, positions: np.ndarray) -> "ImageRows":
        """The images at ``positions`` (indices into this set), still not read."""
        return ImageRows(self.array, self.rows[np.asarray(positions, dtype=np.int64)], self.size)

    def chunks(self, batch: int) -> Iterator[torch.Tensor]:
        """Every image in order, ``batch`` at a time: ``(B, H, W, C)`` uint8 tensors."""
        for start in range(0, len(self.rows), batch):
            yield self.read(np.arange(start, min(start + batch, len(self.rows))))

    def materialise(self, *, batch: int = 256) -> torch.Tensor:
        """All of them in one tensor ``(N, H, W, C)``, read (and resized) ``batch`` at a time: the working memory is
        the result plus one batch at the stored size (for sets that fit: e.g. a base session resized once)."""
        out = torch.empty(self.shape, dtype=torch.uint8)
        for start, chunk in zip(range(0, len(self.rows), batch), self.chunks(batch)):
            out[start:start + len(chunk)] = chunk
        return out
