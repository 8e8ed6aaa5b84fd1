"""The embedded digits source and data-root resolution."""

import numpy as np
import pytest

from clproto.data import data_root, load_dataset
from clproto.errors import ConfigError


def test_digits_is_embedded_stratified_and_fixed():
    a, b = load_dataset("digits"), load_dataset("digits")
    assert a.train_x.dtype == np.uint8 and a.train_x.shape[1:] == (8, 8, 1)
    assert len(a.train_y) + len(a.test_y) == 1797 and a.num_classes == 10
    assert np.array_equal(a.test_y, b.test_y) and a.identity == b.identity
    frac = np.bincount(a.test_y) / np.bincount(np.concatenate([a.train_y, a.test_y]))
    assert np.allclose(frac, 0.3, atol=0.02)  # stratified 70/30


def test_data_root_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("CLPROTO_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(tmp_path / "flag") == tmp_path / "flag"
    monkeypatch.delenv("CLPROTO_DATA")
    assert data_root().name == "data" and "clproto" in str(data_root())


def test_unknown_dataset_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("imagenet-42")
    with pytest.raises(ConfigError, match="does not exist"):
        load_dataset("imagefolder:nope.zip", data_root=tmp_path)


def test_dataset_repr_shows_shapes_not_arrays(tiny_dataset):
    text = repr(tiny_dataset)
    assert text == "Dataset('tiny', train_x=72x8x8x3 uint8, test_x=36x8x8x3 uint8, classes=6, identity='tiny-0-6')"
    assert len(repr(tiny_dataset.with_inputs(np.zeros((72, 10**6), np.uint8), tiny_dataset.test_x))) < 200


@pytest.mark.parametrize("field", ["train_per_class", "test_per_class", "increment", "shots"])
def test_negative_counts_are_refused_when_a_scenario_is_defined(field):
    from clproto.config import scenario_from_dict

    with pytest.raises(ConfigError) as err:
        scenario_from_dict({"name": "x", "dataset": "digits", field: -1}, where="x.toml")
    assert str(err.value).startswith(f"x.toml, field '{field}': must be a non-negative integer (got -1)")
