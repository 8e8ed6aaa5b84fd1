"""Issue 11 item 7: the dataset-kind registry behind load_dataset, and datasets injected into a Runner."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from clproto.config import strategy_from_dict
from clproto.data import DATASETS, Dataset, DatasetKind, DatasetKinds, load_dataset
from clproto.data.registry import parse_spec
from clproto.errors import ConfigError
from clproto.runner import Runner
from clproto.scenarios import ScenarioConfig


@dataclass(frozen=True)
class _Opts:
    n: int = 3  # samples per class
    scale: float = 1.0  # multiplies the pixels
    flip: bool = False  # reverse the class order
    tag: str = "x"  # free text


def _constant(req) -> Dataset:
    """A kind whose dataset records the request it was built from (to check what the registry passed)."""
    o = req.options
    y = np.repeat(np.arange(2), o.n)[::-1 if o.flip else 1].copy()
    x = np.full((len(y), 2, 2, 1), min(255, int(10 * o.scale)), np.uint8)
    return Dataset(f"const-{o.tag}", x, y, x, y, ("a", "b"), f"const-{req.path}-{o}")


def _kinds() -> DatasetKinds:
    kinds = DATASETS.copy()
    kinds.register(DatasetKind("const", _constant, "a test kind", path="required", options=_Opts))
    return kinds


def test_every_builtin_kind_is_registered_once_and_listed():
    names = [k.name for k in DATASETS]
    assert names == ["digits", "CIFAR10", "MNIST", "FashionMNIST", "CIFAR100", "imagefolder", "tinyimagenet",
                     "miniimagenet", "cub200", "imagenet-r", "imagenet-a"]
    from clproto.data import DATASET_KINDS

    assert DATASET_KINDS["cub200:PATH"].startswith("CUB-200-2011")
    assert DATASET_KINDS["cub200:PATH"].endswith("; options ?size=224&fit=crop")
    assert len(DATASET_KINDS) == len(names)


def test_registration_is_explicit_and_refuses_a_second_kind_of_the_same_name():
    kinds = _kinds()
    with pytest.raises(ValueError, match="already registered"):
        kinds.register(DatasetKind("CONST", _constant, "again"))  # names match without regard to case
    assert "const" not in DATASETS  # the copy, not the shared registry
    with pytest.raises(ValueError):
        DatasetKind("a:b", _constant, "bad name")
    with pytest.raises(TypeError):
        DatasetKind("opts", _constant, "options must be a dataclass", options=dict)
    assert kinds.summaries()["const:PATH"] == "a test kind; options ?n=3&scale=1.0&flip=False&tag=x"


def test_a_registered_kind_loads_with_typed_options(tmp_path):
    kinds = _kinds()
    (tmp_path / "here").mkdir()
    ds = load_dataset("const:here?n=2&scale=2.5&flip=yes&tag=t", data_root=tmp_path, kinds=kinds)
    assert ds.name == "const-t" and ds.train_y.tolist() == [1, 1, 0, 0] and int(ds.train_x[0, 0, 0, 0]) == 25
    assert ds.identity == f"const-{tmp_path / 'here'}-{_Opts(n=2, scale=2.5, flip=True, tag='t')}"
    assert parse_spec("CONST:x", kinds).options == _Opts()  # kind names match without regard to case


@pytest.mark.parametrize("spec, message", [
    ("nope", "unknown dataset kind"),
    ("const", "needs a path"),
    ("digits:x", "takes no path"),
    ("digits?n=1", "takes no options"),
    ("const:here?m=1", "unknown option 'm'"),
    ("const:here?n", "is not key=value"),
    ("const:here?n=1&n=2", "given twice"),
    ("const:here?n=two", "option 'n' must be int"),
    ("const:here?flip=maybe", "option 'flip' must be bool"),
    ("const:missing", "does not exist"),
    ("", "non-empty string"),
])
def test_bad_specs_name_the_definition_and_what_is_valid(tmp_path, spec, message):
    (tmp_path / "here").mkdir()
    with pytest.raises(ConfigError) as err:
        load_dataset(spec, data_root=tmp_path, kinds=_kinds(), where="s.toml")
    assert err.value.where == "s.toml" and err.value.field == "dataset" and message in str(err.value)
    if message == "unknown dataset kind":  # lists every valid kind, with how it is written
        assert "const:PATH[?n=3&scale=1.0&flip=False&tag=x]" in err.value.expected
        assert "cub200:PATH[?size=224&fit=crop]" in err.value.expected


# --------------------------------------------------------------------------- Runner(datasets=...)
def test_runner_uses_injected_datasets_by_their_spec(tiny_dataset):
    runner = Runner(progress=False, datasets={"tiny": tiny_dataset})
    assert runner.dataset("tiny") is tiny_dataset  # never loaded: "tiny" is no dataset kind
    assert runner.dataset("digits").name == "digits"  # any other spec is loaded as before
    strategy = strategy_from_dict({"name": "nmc-pixels", "implementation": "nmc", "backbone": "pixels"}, runner.registry)
    result = runner.run(ScenarioConfig(name="t", dataset="tiny", increment=2), strategy, seed=0)
    assert result.experience_classes and sorted(c for e in result.experience_classes for c in e) == list(range(6))


def test_runner_refuses_something_else_than_a_dataset(tiny_dataset):
    with pytest.raises(TypeError, match="must map a dataset string to a clproto Dataset"):
        Runner(datasets={"tiny": tiny_dataset.train_x})
