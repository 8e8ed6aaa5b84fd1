"""Issue 14 (items 1 and 4): few-shot sessions from published index lists (TOPIC), few-shot scenarios on a
subset of the classes, strategies refusing scenario kinds they do not support, and the few-shot console table."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from clproto.config import load_scenario, strategy_from_dict
from clproto.data.dataset import Dataset
from clproto.data.sources import load_dataset
from clproto.errors import ConfigError
from clproto.runner import Runner
from clproto.scenarios import ScenarioConfig, build_scenario
from clproto.scenarios.index_lists import read_session_lists, shipped_protocols
from conftest import make_tiny_dataset
from imagezips import png_bytes, write_zip

ROOT = Path(__file__).resolve().parents[2]


def _write_lists(folder: Path, sessions: list[list], *, gz: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for k, entries in enumerate(sessions, 1):
        text = "".join(f"{e}\n" for e in entries).encode()
        name = f"session_{k}.txt" + (".gz" if gz else "")
        (folder / name).write_bytes(gzip.compress(text) if gz else text)
    return folder


def _fs(lists: Path, **kw) -> ScenarioConfig:
    fields = dict(name="t", dataset="tiny", kind="few-shot", index_lists=str(lists), base_classes=2, ways=2, shots=3,
                  sessions=2)
    return ScenarioConfig(**(fields | kw))


# --------------------------------------------------------------------------- index form (in-memory dataset)
def _index_sessions(ds: Dataset) -> list[list[int]]:
    """Base: every training image of classes 4 and 1; then classes {0, 5} and {2, 3}, 3 shots each."""
    by = {c: np.flatnonzero(ds.train_y == c).tolist() for c in range(ds.num_classes)}
    return [by[4] + by[1], by[0][-3:] + by[5][:3], by[3][2:5] + by[2][:3]]


def test_index_lists_fix_every_session(tmp_path, tiny_dataset):
    sessions = _index_sessions(tiny_dataset)
    lists = _write_lists(tmp_path / "p", sessions, gz=True)
    sc = build_scenario(_fs(lists), tiny_dataset, seed=0)
    assert [e.classes for e in sc] == [(1, 4), (0, 5), (2, 3)]  # each session's classes, in label order
    for e, listed in zip(sc, sessions):
        assert e.train_indices.tolist() == sorted(listed)
        # the test set: every test image of the session's classes
        assert e.test_indices.tolist() == np.flatnonzero(np.isin(tiny_dataset.test_y, e.classes)).tolist()
    assert sc[2].base_classes == (1, 4) and sc[2].seen_classes == (1, 4, 0, 5, 2, 3)
    # the lists fix everything: another seed gives the same scenario
    other = build_scenario(_fs(lists), tiny_dataset, seed=7)
    assert all(np.array_equal(a.train_indices, b.train_indices) for a, b in zip(sc, other))


def test_index_list_runs_end_to_end(tmp_path, tiny_dataset):
    lists = _write_lists(tmp_path / "p", _index_sessions(tiny_dataset))
    runner = Runner(progress=False, datasets={"tiny": tiny_dataset})
    strategy = strategy_from_dict({"name": "teen", "implementation": "teen", "backbone": "pixels"}, runner.registry)
    result = runner.run(_fs(lists), strategy, seed=0)
    assert len(result.seen_accuracy) == 3 and result.metrics.performance_drop is not None


@pytest.mark.parametrize("change, field, message", [
    (lambda s: [s[0], s[1][:-1], s[2]], "index_lists", "session 2 lists 5 images of 2 classes"),  # 3 + 2 shots
    (lambda s: [s[0], s[1], s[2][:3] + [s[2][0]] * 3], "index_lists", "1 image(s) listed more than once"),
    (lambda s: [s[0], s[1][:-1] + [s[0][0]], s[2]], "index_lists", "listed before (in session_1.txt)"),
    (lambda s: [s[0], s[1], s[2][:-1] + [10_000]], "index_lists", "1 of 6 entries name indices beyond"),
    (lambda s: [s[0][:12], s[1], s[2]], "base_classes", "the base session lists images of 1 classes"),
    (lambda s: [s[0], s[1]], "sessions", "holds 1 few-shot sessions"),
], ids=["ways-x-shots", "duplicate", "duplicate-across-files", "missing", "base-classes", "session-count"])
def test_bad_index_lists_name_the_file(tmp_path, tiny_dataset, change, field, message):
    lists = _write_lists(tmp_path / "p", change(_index_sessions(tiny_dataset)))
    with pytest.raises(ConfigError) as err:
        build_scenario(_fs(lists), tiny_dataset, seed=0)
    assert err.value.field == field and message in str(err.value)
    if field == "index_lists":
        assert "session_" in (err.value.where or "")  # names the file


def test_sessions_may_group_the_listed_images_differently(tmp_path, tiny_dataset):
    s = _index_sessions(tiny_dataset)
    lists = _write_lists(tmp_path / "p", [s[0], s[1][:3] + s[2][:3], s[1][3:] + s[2][3:]])
    assert [e.classes for e in build_scenario(_fs(lists), tiny_dataset, seed=0)] == [(1, 4), (0, 3), (2, 5)]


def test_index_lists_refuse_settings_they_override(tmp_path, tiny_dataset):
    lists = _write_lists(tmp_path / "p", _index_sessions(tiny_dataset))
    for kw, field in [({"train_per_class": 5}, "train_per_class"), ({"class_order": [0, 1, 2, 3, 4, 5]}, "class_order"),
                      ({"kind": "class-incremental", "increment": 2}, "kind")]:
        with pytest.raises(ConfigError) as err:
            build_scenario(_fs(lists, **kw), tiny_dataset, seed=0)
        assert err.value.field == field
    with pytest.raises(ConfigError, match="no such index-list protocol"):
        build_scenario(_fs(tmp_path / "nope"), tiny_dataset, seed=0)
    (tmp_path / "p" / "session_2.txt").unlink()
    with pytest.raises(ConfigError, match="without gaps"):
        build_scenario(_fs(lists), tiny_dataset, seed=0)


# --------------------------------------------------------------------------- path form (image-folder zip)
def test_path_lists_match_image_folder_members(tmp_path):
    """miniImageNet naming: the lists say MINI-ImageNet/train/<wnid>/<file>.jpg, the folder train/<wnid>/<file>."""
    ds = make_tiny_dataset(num_classes=5, train_per_class=6, test_per_class=2)
    wnids = [f"n0{1000000 + 7 * c}" for c in range(5)]
    members = {}
    for split, xs, ys in (("train", ds.train_x, ds.train_y), ("test", ds.test_x, ds.test_y)):
        for i, (x, y) in enumerate(zip(xs, ys)):
            members[f"{split}/{wnids[y]}/{wnids[y]}{i:08d}.png"] = png_bytes(x)
    write_zip(tmp_path / "mini.zip", members)
    data = load_dataset("imagefolder:mini.zip", data_root=tmp_path, progress=False)
    assert data.train_names is not None and len(data.train_names) == 30
    train = sorted(m for m in members if m.startswith("train/"))
    listed = lambda c, n: [f"MINI-ImageNet/{m}" for m in train if m.split("/")[1] == wnids[c]][:n]  # noqa: E731
    sessions = [listed(3, 6) + listed(0, 6) + listed(4, 6), listed(1, 2) + listed(2, 2)]
    lists = _write_lists(tmp_path / "mini", sessions)
    config = ScenarioConfig(name="m", dataset="imagefolder:mini.zip", kind="few-shot", index_lists=str(lists),
                            base_classes=3, ways=2, shots=2)
    sc = build_scenario(config, data, seed=0)
    assert [e.classes for e in sc] == [(0, 3, 4), (1, 2)]
    names = [[data.train_names[i] for i in e.train_indices] for e in sc]
    assert [sorted(n) for n in names] == [sorted(m.removeprefix("MINI-ImageNet/") for m in s) for s in sessions]
    assert sc[1].test_indices.tolist() == np.flatnonzero(np.isin(data.test_y, [1, 2])).tolist()
    # missing images: the file, the count and the first few names
    _write_lists(tmp_path / "bad", [sessions[0], sessions[1][:-2] + ["MINI-ImageNet/train/n09999999/x.jpg", "a/b.jpg"]])
    with pytest.raises(ConfigError) as err:
        build_scenario(ScenarioConfig(**{**config.__dict__, "index_lists": str(tmp_path / "bad")}), data, seed=0)
    assert "session_2.txt" in err.value.where and "2 of 4 entries" in str(err.value) and "n09999999/x.jpg" in str(err.value)
    # a dataset without image names cannot resolve paths: said plainly
    with pytest.raises(ConfigError, match="keeps no image names"):
        build_scenario(config, make_tiny_dataset(num_classes=5), seed=0)


# --------------------------------------------------------------------------- the shipped lists
SHAPES = {"fscil-topic/cifar100": (30_000, 8, 5, 5), "fscil-topic/mini_imagenet": (30_000, 8, 5, 5),
          "fscil-topic/cub200": (3_000, 10, 10, 5)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_shipped_lists_have_the_documented_shapes(name):
    base, sessions, ways, shots = SHAPES[name]
    lists = read_session_lists(name)
    assert [len(e) for e in lists.entries] == [base] + [ways * shots] * sessions
    everything = [x for es in lists.entries for x in es]
    assert len(set(everything)) == len(everything)  # no image twice
    if name.endswith("cifar100"):  # training-set indices (the labels need the dataset, not here)
        assert all(e.isdigit() and int(e) < 50_000 for e in everything)
        return
    classes = [[e.split("/")[-2] for e in es] for es in lists.entries]  # the class folder of each path
    assert len(set(classes[0])) == (60 if "mini" in name else 100)
    for cs in classes[1:]:
        assert len(set(cs)) == ways and all(cs.count(c) == shots for c in set(cs))
    assert len({c for cs in classes for c in cs}) == len(set(classes[0])) + sessions * ways


@pytest.mark.parametrize("file, n_classes", [("fscil-miniimagenet.toml", 100), ("fscil-cub200.toml", 200)])
def test_shipped_scenarios_build_on_a_stand_in(file, n_classes):
    """The definitions on an in-memory stand-in holding exactly the listed training images (1x1 pixels)."""
    config = load_scenario(ROOT / "scenarios" / file)
    lists = read_session_lists(config.index_lists)
    names = sorted({"train/" + "/".join(e.split("/")[-2:]) for es in lists.entries for e in es})
    folders = sorted({n.split("/")[1] for n in names})
    assert len(folders) == n_classes
    label = {f: i for i, f in enumerate(folders)}
    y = np.array([label[n.split("/")[1]] for n in names], dtype=np.int64)
    ds = Dataset("stand-in", np.zeros((len(y), 1, 1, 3), np.uint8), y, np.zeros((n_classes, 1, 1, 3), np.uint8),
                 np.arange(n_classes), tuple(folders), "stand-in", train_names=tuple(names))
    sc = build_scenario(config, ds, seed=0)
    assert len(sc) == config.sessions + 1 and len(sc[0].classes) == config.base_classes
    assert all(len(e.train_indices) == config.ways * config.shots for e in sc[1:])
    assert len(sc[-1].seen_classes) == n_classes


def test_shipped_protocols_and_definitions():
    assert set(SHAPES) <= set(shipped_protocols())
    assert load_scenario(ROOT / "scenarios" / "fscil-cifar100.toml").index_lists == "fscil-topic/cifar100"
    text = (ROOT / "pyproject.toml").read_text()
    assert "protocols/*/*/*.txt.gz" in text  # shipped in the wheel


# --------------------------------------------------------------------------- item 4: subsets and kinds
def test_few_shot_on_a_subset_of_the_classes(tiny_dataset):
    config = ScenarioConfig(name="t", dataset="tiny", kind="few-shot", base_classes=2, ways=1, shots=3, sessions=2)
    sc = build_scenario(config, tiny_dataset, seed=0)  # 2 + 2 x 1 = 4 of the 6 classes
    assert [len(e.classes) for e in sc] == [2, 1, 1] and len(set(sc[-1].seen_classes)) == 4
    assert sc.num_classes == 6  # score vectors keep the dataset's width; 2 classes are never seen
    with pytest.raises(ConfigError, match="need more than the 6 classes"):
        build_scenario(ScenarioConfig(**{**config.__dict__, "sessions": 5}), tiny_dataset, seed=0)


def test_a_strategy_refuses_a_scenario_kind_it_does_not_support(tiny_dataset):
    runner = Runner(progress=False, datasets={"tiny": tiny_dataset})
    teen = strategy_from_dict({"name": "teen", "implementation": "teen", "backbone": "pixels"}, runner.registry)
    ci = ScenarioConfig(name="t", dataset="tiny", increment=2)
    for call in (lambda: runner.check(ci, teen, 0), lambda: runner.run(ci, teen, seed=0)):
        with pytest.raises(ConfigError) as err:
            call()
        assert "supports few-shot scenarios only" in str(err.value) and "nmc" in (err.value.expected or "")
    runner.check(ScenarioConfig(name="t", dataset="tiny", kind="few-shot", base_classes=2, ways=2, shots=3), teen, 0)


# --------------------------------------------------------------------------- item 4: the few-shot console table
def test_few_shot_console_table_shows_sessions_base_novel_hm_and_pd():
    from clproto.reports.build import markdown_table
    from clproto.reports.collect import summary_frame
    from test_reports import make_result

    A = [[0.9, None, None], [0.8, 0.5, None], [0.7, 0.4, 0.3]]
    # "keep" never learns a novel class (novel 0): class-IL forgetting would favour it; PD and HM do not
    results = [make_result("fs", "learn", 0, A, seen=[0.9, 0.7, 0.6], base=[0.9, 0.8, 0.7], novel=[None, 0.5, 0.4]),
               make_result("fs", "keep", 0, A, seen=[0.9, 0.8, 0.5], base=[0.9, 0.9, 0.9], novel=[None, 0.0, 0.0])]
    text = markdown_table(summary_frame(results))
    assert "| Strategy | Last session acc. ↑ | Avg. acc. ↑ | PD ↓ | Base ↑ | Novel ↑ | HM ↑ |" in text
    assert "Forgetting" not in text
    # learn: last 60, average (90+70+60)/3 = 73.33 (a tie with keep: both bold), PD 90-60 = 30, HM 2*.7*.4/1.1 = 50.91
    assert "| learn | **60.00** | **73.33** | **30.00** | 70.00 | **40.00** | **50.91** |" in text
    assert "| keep | 50.00 | **73.33** | 40.00 | **90.00** | 0.00 | 0.00 |" in text
    assert "| learn | 90.00 | 70.00 | 60.00 |" in text and "| keep | 90.00 | 80.00 | 50.00 |" in text
