"""Issue 14 items 2-3 and its bad input: the published protocols (PyCIL/PILOT class orders, TOPIC few-shot lists)
run end to end on synthetic stand-ins of their datasets, in the real layouts and names (tests/standins.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_tiny_dataset
from standins import (listed_names, reduced_lists, topic_cifar100_labels, write_cifar100, write_cub,
                      write_imagenet_variant, write_miniimagenet)

from clproto.cli import main
from clproto.config import load_scenario, load_strategy, named_scenario, parse_override, strategy_from_dict
from clproto.errors import ConfigError
from clproto.runner import Runner
from clproto.scenarios import build_scenario
from clproto.scenarios.index_lists import read_session_lists
from clproto.strategies import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
NMC = str(ROOT / "strategies" / "nmc-pixels.toml")
CIFAR_PROTOCOLS = {"cifar100-b0-inc5": (5, 5), "cifar100-b0-inc10": (10, 10), "cifar100-b0-inc20": (20, 20),
                   "cifar100-b50-inc10": (50, 10), "cifar100-b50-inc5": (50, 5)}  # PyCIL's init_cls, increment


def pycil_order(n: int) -> list[int]:
    """PyCIL's utils/data_manager.py with shuffle = true, seed = 1993 (the global numpy RNG, restored after)."""
    state = np.random.get_state()
    try:
        np.random.seed(1993)
        return np.random.permutation(n).tolist()
    finally:
        np.random.set_state(state)


def pycil_increments(n: int, init_cls: int, increment: int) -> list[int]:
    """PyCIL's DataManager.__init__: init_cls, then `increment` while it fits, then the remainder (if any)."""
    sizes = [init_cls]
    while sum(sizes) + increment < n:
        sizes.append(increment)
    return sizes + ([n - sum(sizes)] if n > sum(sizes) else [])


def _run(tmp_path: Path, scenario: str, *overrides: str):
    """A run of a shipped definition with nmc-pixels and ``--set``-style overrides, through the Python API."""
    config = named_scenario(ROOT / "scenarios" / scenario, [parse_override(f"scenario.{o}") for o in overrides])
    runner = Runner(data_root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"), progress=False)
    return runner.run(config, load_strategy(NMC, runner.registry), seed=0)


# --------------------------------------------------------------------------- class orders (item 3)
@pytest.mark.parametrize("name", sorted(CIFAR_PROTOCOLS))
def test_cifar100_definitions_hold_pycils_seed_1993_order_and_increments(name):
    config = load_scenario(ROOT / "scenarios" / f"{name}.toml")
    assert config.dataset == "CIFAR100" and config.kind == "class-incremental"
    order = pycil_order(100)
    assert config.class_order == order and order[:5] == [68, 56, 78, 8, 23]
    data = make_tiny_dataset(num_classes=100, train_per_class=1, test_per_class=1, size=2)
    sc = build_scenario(config, data, seed=0)
    sizes = pycil_increments(100, *CIFAR_PROTOCOLS[name])
    assert [len(e.classes) for e in sc] == sizes
    starts = np.cumsum([0] + sizes)
    assert [list(e.classes) for e in sc] == [order[a:b] for a, b in zip(starts, starts[1:])]
    assert build_scenario(config, data, seed=5).class_order == sc.class_order  # fixed for every seed


def test_imagenet_r_definition_holds_pilots_order_and_runs_on_a_stand_in(tmp_path):
    config = load_scenario(ROOT / "scenarios" / "imagenet-r-b0-inc20.toml")
    assert config.class_order == pycil_order(200) and config.dataset.startswith("imagenet-r:")
    write_imagenet_variant(tmp_path / "data" / "imagenet-r", classes=200, per_class=(1, 1))
    result = _run(tmp_path, "imagenet-r-b0-inc20.toml", 'dataset="imagenet-r:imagenet-r?size=8"')
    assert result.class_order == pycil_order(200)
    assert [len(c) for c in result.experience_classes] == pycil_increments(200, 20, 20) == [20] * 10
    assert result.test_sizes == [20] * 10  # each experience's test images: one per class


def test_cifar100_b50_runs_end_to_end_on_a_stand_in(tmp_path):
    write_cifar100(tmp_path / "data", np.repeat(np.arange(100), 2), np.arange(100))
    result = _run(tmp_path, "cifar100-b50-inc10.toml")
    assert result.experience_classes[0] == pycil_order(100)[:50]
    assert [len(c) for c in result.experience_classes] == [50, 10, 10, 10, 10, 10]
    assert result.test_sizes == [50, 10, 10, 10, 10, 10]


def test_an_order_that_is_not_a_permutation_of_the_dataset_names_the_file_and_field(tmp_path):
    config = load_scenario(ROOT / "scenarios" / "cifar100-b0-inc20.toml")
    where = str(ROOT / "scenarios" / "cifar100-b0-inc20.toml")
    data = make_tiny_dataset(num_classes=200, train_per_class=1, test_per_class=1, size=2)  # e.g. ImageNet-R
    with pytest.raises(ConfigError) as err:
        build_scenario(config, data, seed=0, where=where)
    assert err.value.where == where and err.value.field == "class_order"
    assert "leaves out 100 of the dataset's 200 classes" in str(err.value)
    with pytest.raises(ConfigError, match="class 90 does not exist"):
        build_scenario(config, make_tiny_dataset(num_classes=90, size=2), seed=0, where=where)


# --------------------------------------------------------------------------- the TOPIC few-shot lists (item 2)
@dataclass
class _NoParams:
    pass


class ChannelMeans:
    """Nearest class mean of each image's mean colour (3 numbers): an image strategy cheap enough for 50 000 images."""

    Config = _NoParams
    input_kind = "images"

    def __init__(self, *, config: _NoParams, num_classes: int, seed: int = 0) -> None:
        self.sums = torch.zeros(num_classes, 3, dtype=torch.float64)  # (C, 3)
        self.counts = torch.zeros(num_classes, dtype=torch.float64)  # (C,)

    def fit_experience(self, experience) -> None:
        for x, y in experience.train_chunks(8192):  # x: (n, 32, 32, 3) uint8
            self.sums.index_add_(0, y, x.float().mean(dim=(1, 2)).double())
            self.counts.index_add_(0, y, torch.ones(len(y), dtype=torch.float64))

    def predict_scores(self, x: torch.Tensor) -> torch.Tensor:
        means = self.sums / self.counts.clamp(min=1)[:, None]  # (C, 3)
        scores = -torch.cdist(x.float().mean(dim=(1, 2)).double(), means)  # (B, C)
        return scores.masked_fill(self.counts == 0, -1e9).float()


def test_fscil_cifar100_reproduces_the_topic_lists_exactly_on_a_full_size_stand_in(tmp_path):
    """50 000 training images (random pixels) labelled so that the shipped lists are consistent; every session's
    training images are exactly the listed indices, and the run completes through the runner."""
    train_y, test_y = topic_cifar100_labels()
    write_cifar100(tmp_path, train_y, test_y)
    registry = REGISTRY.copy()
    registry.register("channel-means", ChannelMeans, scenario_kinds=("class-incremental", "few-shot"))
    runner = Runner(registry=registry, data_root=str(tmp_path), progress=False)
    config = load_scenario(ROOT / "scenarios" / "fscil-cifar100.toml")
    sc = runner.scenario(config, seed=0)
    lists = read_session_lists("fscil-topic/cifar100").entries
    assert [e.train_indices.tolist() for e in sc] == [sorted(int(i) for i in es) for es in lists]
    assert [len(e.classes) for e in sc] == [60] + [5] * 8 and len(sc[-1].seen_classes) == 100
    assert [len(e.test_indices) for e in sc] == [6000] + [500] * 8  # every test image of the session's classes
    # the run, with 2 test images per class to keep the evaluation short
    quick = load_scenario(ROOT / "scenarios" / "fscil-cifar100.toml", overrides=[parse_override("scenario.test_per_class=2")])
    means = strategy_from_dict({"name": "means", "implementation": "channel-means"}, registry)
    result = runner.run(quick, means, seed=0)
    assert result.experience_classes == [list(e.classes) for e in sc] and result.test_sizes == [120] + [10] * 8
    assert len(result.seen_accuracy) == 9 and result.metrics.performance_drop is not None


@pytest.mark.parametrize("layout", ["cec", "topic"])
def test_fscil_miniimagenet_runs_end_to_end_on_a_stand_in_with_the_listed_names(tmp_path, layout):
    """The shipped definition with a reduced base session (2 of the 500 listed images per base class, the 8 few-shot
    sessions as shipped): the stand-in holds exactly those names, one unlisted training image per class and one test
    image per class."""
    lists = reduced_lists("fscil-topic/mini_imagenet", tmp_path / "lists", base_per_class=2)
    write_miniimagenet(tmp_path / "data" / "miniimagenet", listed_names(lists), layout=layout, extra_train=1)
    result = _run(tmp_path, "fscil-miniimagenet.toml", f'index_lists="{lists}"',
                  'dataset="miniimagenet:miniimagenet?size=8"')
    assert [len(c) for c in result.experience_classes] == [60] + [5] * 8
    assert len(result.seen_accuracy) == 9 and result.test_sizes == [60] + [5] * 8


def test_fscil_cub200_runs_end_to_end_on_a_stand_in_with_the_listed_names(tmp_path):
    lists = reduced_lists("fscil-topic/cub200", tmp_path / "lists", base_per_class=1)
    write_cub(tmp_path / "data", listed_names(lists))  # data/CUB_200_2011/, as the definition names it
    result = _run(tmp_path, "fscil-cub200.toml", f'index_lists="{lists}"', 'dataset="cub200:CUB_200_2011?size=8"')
    assert [len(c) for c in result.experience_classes] == [100] + [10] * 10
    assert len(result.seen_accuracy) == 11 and result.test_sizes == [100] + [10] * 10
    assert result.scenario.startswith("fscil-cub200@")  # the overrides name the run


def test_the_shipped_lists_on_a_dataset_missing_their_images_name_the_count_and_the_first_few(tmp_path, capsys):
    lists = reduced_lists("fscil-topic/mini_imagenet", tmp_path / "lists", base_per_class=2)
    write_miniimagenet(tmp_path / "data" / "miniimagenet", listed_names(lists), layout="cec")
    args = ["run", str(ROOT / "scenarios" / "fscil-miniimagenet.toml"), NMC, "--seeds", "0", "--out",
            str(tmp_path / "out"), "--data-root", str(tmp_path / "data"), "--cache-dir", str(tmp_path / "cache"),
            "--set", "scenario.dataset=miniimagenet:miniimagenet?size=8", "--no-progress"]
    assert main(args) == 2  # the shipped lists name all 500 images of each base class
    err = capsys.readouterr().err
    assert "session_1.txt.gz" in err and "29880 of 30000 entries name images it does not hold" in err
    assert "'MINI-ImageNet/train/n01532829/" in err and not list((tmp_path / "out").rglob("results.json"))


def test_an_index_entry_that_is_neither_an_index_nor_a_path_of_the_dataset_is_named(tmp_path, tiny_dataset):
    folder = tmp_path / "lists"
    folder.mkdir()
    by = {c: np.flatnonzero(tiny_dataset.train_y == c).tolist() for c in range(6)}
    (folder / "session_1.txt").write_text("".join(f"{i}\n" for i in by[0] + by[1]))
    (folder / "session_2.txt").write_text("".join(f"{i}\n" for i in by[2][:2]) + "12a\n" + f"{by[3][0]}\n")
    config = load_scenario(ROOT / "scenarios" / "fscil-cifar100.toml")
    from dataclasses import replace

    config = replace(config, index_lists=str(folder), base_classes=2, ways=2, shots=2, sessions=1)
    with pytest.raises(ConfigError) as err:
        build_scenario(config, tiny_dataset, seed=0)
    assert err.value.where.endswith("session_2.txt") and "entry '12a' is not a training-set index" in str(err.value)


@pytest.mark.parametrize("edit, message", [
    (lambda s: s[:24] + [s[0].replace("MINI-ImageNet/", "other/copy/")], "1 image(s) listed more than once"),
    (lambda s: s[:24], "session 2 lists 24 images of 5 classes"),
    (lambda s: s[:24] + ["MINI-ImageNet/train/n09999999/n0999999900000001.jpg"],
     "1 of 25 entries name images it does not hold of dataset 'mini': 'MINI-ImageNet/train/n09999999/"),
], ids=["same-image-two-spellings", "ways-x-shots", "missing"])
def test_bad_path_named_lists_name_their_file(tmp_path, edit, message):
    """The shipped miniImageNet lists, edited, on an in-memory stand-in holding exactly their images."""
    lists = reduced_lists("fscil-topic/mini_imagenet", tmp_path / "lists", base_per_class=1)
    names = listed_names(lists)
    folders = sorted({n.split("/")[0] for n in names})
    y = np.array([folders.index(n.split("/")[0]) for n in names])
    data = make_tiny_dataset(num_classes=100, train_per_class=1, test_per_class=1, size=1)
    data = type(data)("mini", np.zeros((len(y), 1, 1, 3), np.uint8), y, data.test_x, data.test_y, tuple(folders),
                      "mini", train_names=tuple(f"train/{n}" for n in names))
    session = tmp_path / "lists" / "session_2.txt"
    session.write_text("".join(f"{e}\n" for e in edit(session.read_text().split())))
    config = load_scenario(ROOT / "scenarios" / "fscil-miniimagenet.toml", overrides=[
        parse_override(f'scenario.index_lists="{tmp_path / "lists"}"')])
    with pytest.raises(ConfigError) as err:
        build_scenario(config, data, seed=0)
    assert err.value.where == str(session) and message in str(err.value)
