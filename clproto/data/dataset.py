"""The in-memory dataset every scenario is cut from."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/test inputs with integer labels ``0..C-1`` and a name per class.

    ``train_x``/``test_x`` are images as uint8 arrays ``(N, H, W, C)`` for a raw dataset,
    or float32 feature matrices ``(N, D)`` once a backbone has been applied
    (:meth:`with_inputs`). ``identity`` is a content hash of the source and its decoding,
    used as a cache key; it does not change when only inputs are swapped for features.
    """

    name: str
    train_x: np.ndarray  # (N_train, H, W, C) uint8 images, or (N_train, D) float32 features
    train_y: np.ndarray  # (N_train,) int64 labels in 0..C-1
    test_x: np.ndarray  # (N_test, ...) as train_x
    test_y: np.ndarray  # (N_test,) int64
    class_names: tuple[str, ...]
    identity: str  # content hash of the source data (cache key)
    # where each training sample came from, when known: member paths such as "train/n01532829/x.jpg"
    # (or "<class>/<file>" when a list file gives the class); published index lists match the last two
    # parts; None otherwise
    train_names: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if len(x) != len(y):
                raise ValueError(f"dataset {self.name!r}: {split} has {len(x)} inputs but {len(y)} labels")
            if len(y) and (y.min() < 0 or y.max() >= len(self.class_names)):
                raise ValueError(
                    f"dataset {self.name!r}: {split} labels must lie in 0..{len(self.class_names) - 1}"
                )
        if self.train_names is not None and len(self.train_names) != len(self.train_y):
            raise ValueError(f"dataset {self.name!r}: {len(self.train_names)} train names for {len(self.train_y)} samples")

    def __repr__(self) -> str:  # shapes only: the arrays may be gigabytes (or memory maps)
        def arr(a: np.ndarray) -> str:
            return f"{'x'.join(map(str, a.shape))} {a.dtype}"

        return (f"Dataset({self.name!r}, train_x={arr(self.train_x)}, test_x={arr(self.test_x)}, "
                f"classes={self.num_classes}, identity={self.identity[:12]!r})")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_images(self) -> bool:
        return self.train_x.dtype == np.uint8 and self.train_x.ndim == 4

    def with_inputs(self, train_x: np.ndarray, test_x: np.ndarray, *, suffix: str = "") -> "Dataset":
        """The same samples and labels with other inputs (e.g. backbone features)."""
        return Dataset(
            name=self.name + suffix,
            train_x=train_x,
            train_y=self.train_y,
            test_x=test_x,
            test_y=self.test_y,
            class_names=self.class_names,
            identity=self.identity,
            train_names=self.train_names,
        )

    def nbytes(self) -> int:
        return int(self.train_x.nbytes + self.test_x.nbytes)
