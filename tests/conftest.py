"""Shared fixtures: one tiny seeded synthetic dataset for every fast test; paths to the shared real data.

Here, above ``tests/unit`` (pure, fast) and ``tests/integration`` (runs, CLI, files), so both halves share it;
``from conftest import ...`` and the helper modules beside it import by name (pyproject's ``pythonpath``).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from clproto.data.dataset import Dataset

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CLPROTO_SHARED", ROOT.parent / "shared"))
SHARED_DATA = SHARED / "data"
SHARED_MODELS = SHARED / "models"


def make_tiny_dataset(*, num_classes: int = 6, train_per_class: int = 12, test_per_class: int = 6,
                      size: int = 8, channels: int = 3, seed: int = 0) -> Dataset:
    """Separable-but-noisy uint8 images: each class is a fixed random pattern plus noise."""
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(40, 215, size=(num_classes, size, size, channels))

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(num_classes), n)
        x = patterns[y] + rng.normal(0, 30, size=(len(y), size, size, channels))
        return np.clip(x, 0, 255).astype(np.uint8), y.astype(np.int64)

    train_x, train_y = split(train_per_class)
    test_x, test_y = split(test_per_class)
    return Dataset(name="tiny", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                   class_names=tuple(f"c{i}" for i in range(num_classes)), identity=f"tiny-{seed}-{num_classes}")


@pytest.fixture
def tiny_dataset() -> Dataset:
    return make_tiny_dataset()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Keep every test's caches out of the user's home; slow tests share one session cache."""
    if "CLPROTO_CACHE" not in os.environ:
        monkeypatch.setenv("CLPROTO_CACHE", str(tmp_path_factory.getbasetemp() / "clproto-cache"))
    monkeypatch.setenv("CLPROTO_PROGRESS", "0")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tests work on tiny tensors, where a second torch thread only adds synchronisation (and, on a loaded
    machine, spinning); one thread also makes the numbers independent of the core count. Session-scoped so
    that module-scoped fixtures (a trained network) see it too."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _back_to_one_thread():
    yield
    torch.set_num_threads(1)  # `clproto ... --threads N` inside a test changes it


@pytest.fixture
def one_blas_thread():
    """NumPy/SciPy/liblinear on one thread, like torch in the tests: tiny matrices, and no spinning on a busy machine.
    Use with ``pytestmark = pytest.mark.usefixtures("one_blas_thread")``."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


def runner_on(dataset: Dataset, *, name: str = "tiny"):
    """A quiet Runner whose scenarios with ``dataset = name`` use ``dataset`` (the shared synthetic fixture)."""
    from clproto.runner import Runner

    return Runner(progress=False, datasets={name: dataset})


def require_shared(*names: str) -> Path:
    """Skip the calling test unless every named file exists under ../shared (data/ or models/)."""
    for name in names:
        if not (SHARED / name).exists():
            pytest.skip(f"shared file {name} not present under {SHARED}")
    return SHARED


def rss_file_kb() -> int:
    """This process's resident file-backed memory (memory-mapped pages), in KiB (Linux: /proc/self/status)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssFile:"):
            return int(line.split()[1])
    raise AssertionError("no RssFile in /proc/self/status")
