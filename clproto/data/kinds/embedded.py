"""``digits``: scikit-learn's 8x8 digits, embedded (no download) — the data of the fast tests.

A stratified 70/30 train/test split with a fixed seed (0), so it never changes.
"""

from __future__ import annotations

import numpy as np

from clproto.data.dataset import Dataset
from clproto.data.kinds.decoded import hash_arrays
from clproto.data.registry import DatasetKind, DatasetRequest


def load_digits(req: DatasetRequest | None = None) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    bunch = sk_digits()
    images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (1797, 8, 8, 1)
    labels = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(
        np.arange(len(labels)), test_size=0.3, stratify=labels, random_state=0
    )
    idx_train, idx_test = np.sort(idx_train), np.sort(idx_test)
    return Dataset(
        name="digits",
        train_x=images[idx_train],
        train_y=labels[idx_train],
        test_x=images[idx_test],
        test_y=labels[idx_test],
        class_names=tuple(str(i) for i in range(10)),
        identity=hash_arrays("digits-v1", images, labels, idx_train),
    )


DIGITS = DatasetKind("digits", load_digits, "scikit-learn 8x8 digits, embedded (10 classes, 1257 train / 540 test)")
