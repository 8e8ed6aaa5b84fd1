"""Base-session training (cosine classifier, SGD Nesterov, cosine LR, crop + flip, validation-selected checkpoint)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.training.base_session import (BaseTrainingConfig, encode, resize_images, train_base_session,
                                           validation_split)
from clproto.training.inputs import augment
from conftest import make_tiny_dataset

QUIET = RunContext(progress=False)


@pytest.fixture(scope="module")
def trained():
    ds = make_tiny_dataset(num_classes=4, train_per_class=40, test_per_class=10, size=8)
    cfg = BaseTrainingConfig(epochs=5, batch_size=32, lr=0.05, image_size=0, val_fraction=0.25, seed=3)
    rng_before = torch.get_rng_state()
    tb = train_base_session(ds.train_x, ds.train_y, config=cfg, context=QUIET)
    assert torch.equal(torch.get_rng_state(), rng_before)  # the caller's global RNG is left alone
    return ds, cfg, tb


def test_training_lowers_loss_and_beats_chance(trained):
    ds, cfg, tb = trained
    losses = [h["loss"] for h in tb.history]
    assert len(losses) == cfg.epochs and losses[-1] < losses[0]
    assert tb.best_val_accuracy == max(h["val_acc"] for h in tb.history)
    assert tb.history[tb.best_epoch]["val_acc"] == tb.best_val_accuracy
    # the frozen network's test features, classified by nearest class mean (cosine), beat chance (1/4) clearly
    train_f = torch.from_numpy(encode(tb, ds.train_x, progress=False))  # (160, 64)
    test_f = torch.from_numpy(encode(tb, ds.test_x, progress=False))  # (40, 64)
    assert train_f.shape == (160, 64)
    means = torch.stack([train_f[torch.from_numpy(ds.train_y == c)].mean(0) for c in range(4)])  # (4, 64)
    pred = (torch.nn.functional.normalize(test_f, dim=1) @ torch.nn.functional.normalize(means, dim=1).T).argmax(1)
    assert (pred.numpy() == ds.test_y).mean() > 0.5


def test_training_is_deterministic(trained):
    ds, cfg, tb = trained
    again = train_base_session(ds.train_x, ds.train_y, config=cfg, context=QUIET)
    assert again.history == [{**h, "seconds": a["seconds"]} for h, a in zip(tb.history, again.history)]
    for k, v in tb.state_dict.items():
        assert torch.equal(v, again.state_dict[k]), k


def test_validation_split_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(3), [10, 20, 1])
    tr, va = validation_split(labels, 0.1, np.random.default_rng(0))
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    assert np.bincount(labels[va], minlength=3).tolist() == [1, 2, 0]  # a single-sample class stays in training


def test_augment_and_resize_shapes():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 255, (5, 8, 8, 3), dtype=torch.uint8)
    y = augment(x, padding=2, flip=True, generator=g)
    assert y.shape == x.shape and y.dtype == torch.uint8
    same = augment(x, padding=0, flip=False, generator=g)
    assert torch.equal(same, x)
    big = resize_images(np.zeros((3, 64, 64, 3), np.uint8) + 7, 32)
    assert big.shape == (3, 32, 32, 3) and int(big.max()) == 7


@pytest.mark.parametrize("field,value", [("epochs", 0), ("lr", -0.1), ("val_fraction", 1.0), ("architecture", "vgg"),
                                         ("image_size", -1)])
def test_bad_config_is_config_error(field, value):
    with pytest.raises(ConfigError, match=field):
        BaseTrainingConfig(**{field: value})


def test_empty_base_session_is_config_error():
    with pytest.raises(ConfigError, match="no classes"):
        train_base_session(np.zeros((0, 8, 8, 3), np.uint8), np.zeros(0, np.int64), context=QUIET)


def test_a_crafted_base_trained_file_runs_no_code_and_is_set_aside(tmp_path):
    """A cached backbone file is loaded weights-only: a pickled os.system never runs; the file is moved aside."""
    import os

    from clproto.features.base_trained import _load

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {tmp_path / 'PWNED'}",)

    path = tmp_path / "base-trained.pt"
    torch.save({"config": {}, "state_dict": Payload()}, path)
    assert _load(path) is None  # treated as corrupt: the caller trains again
    assert not (tmp_path / "PWNED").exists()
    assert not path.exists() and list(tmp_path.glob("base-trained.pt.corrupt-*"))


def test_diverged_base_training_is_an_error_naming_the_backbone():
    """The shared loop's divergence check covers base training too (it used to carry on with NaN weights)."""
    ds = make_tiny_dataset(num_classes=2, train_per_class=10, size=8)
    cfg = BaseTrainingConfig(epochs=3, batch_size=8, lr=1e38, image_size=0)
    with pytest.raises(ConfigError, match=r"x\.toml, field 'backbone': base training diverged: the loss is nan"):
        train_base_session(ds.train_x, ds.train_y, config=cfg, context=QUIET, where="x.toml")


def test_base_training_reproduces_the_recorded_history():
    """Base-session training through the shared loop: the history recorded by its own loop before (main 094bc83)."""
    ds = make_tiny_dataset(num_classes=4, train_per_class=40, test_per_class=10, size=8)
    cfg = BaseTrainingConfig(epochs=5, batch_size=32, lr=0.05, image_size=0, val_fraction=0.25, seed=3)
    before = torch.get_rng_state()
    tb = train_base_session(ds.train_x, ds.train_y, config=cfg, context=QUIET)
    encode(tb, ds.test_x[:4], progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    recorded = [(6.761284383138021, 0.25, 0.25833333333333336, 0.05),
                (7.133967018127441, 0.225, 0.25, 0.0452254248593737),
                (5.276478815078735, 0.25, 0.20833333333333334, 0.03272542485937369),
                (4.320211871465047, 0.475, 0.23333333333333334, 0.01727457514062632),
                (3.2803634802500405, 0.225, 0.20833333333333334, 0.004774575140626317)]
    got = [(h["loss"], h["val_acc"], h["train_acc"], h["lr"]) for h in tb.history]
    assert [g[1:] for g in got] == [r[1:] for r in recorded]  # accuracies and learning rates, exactly
    assert [g[0] for g in got] == pytest.approx([r[0] for r in recorded], rel=1e-5)
    assert tb.best_epoch == 3


def test_pixel_statistics_are_exact_in_any_chunking():
    from clproto.data.rows import ImageRows
    from clproto.training.base_session import pixel_statistics

    # hand-computed: channel 0 holds 0, 255, 0, 255 -> mean 0.5, sample std sqrt(4 * 0.25 / 3) = 0.57735...;
    # channel 1 holds 51 everywhere -> mean 0.2, std 0, raised to the 1e-3 floor
    x = np.zeros((2, 1, 2, 2), np.uint8)
    x[0, 0, 1, 0] = x[1, 0, 1, 0] = 255
    x[..., 1] = 51
    mean, std = pixel_statistics(ImageRows(x, np.arange(2)), batch=1)
    assert mean.tolist() == pytest.approx([0.5, 0.2], abs=1e-7)
    assert std.tolist() == pytest.approx([(1 / 3) ** 0.5, 1e-3], abs=1e-7)
    # on the fixture's images: the double-precision formula base training used before, to the last float32 bit
    ds = make_tiny_dataset()
    rows = ImageRows(ds.train_x, np.random.default_rng(0).permutation(len(ds.train_x))[:50], 12)
    pixels = rows.materialise().reshape(-1, ds.train_x.shape[-1]).double() / 255.0
    expected = pixels.mean(0).float(), pixels.std(0).float().clamp_min(1e-3)
    for batch in (1, 7, 2048):
        got = pixel_statistics(rows, batch=batch)
        assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])


def test_resizing_on_read_gives_the_pixels_of_resizing_the_whole_set():
    from clproto.data.rows import ImageRows

    ds = make_tiny_dataset()
    order = np.random.default_rng(1).permutation(len(ds.train_x))
    whole = resize_images(ds.train_x, 12)  # (N, 12, 12, C)
    rows = ImageRows(ds.train_x, order, 12)
    assert rows.shape == (len(order), 12, 12, ds.train_x.shape[-1])
    assert torch.equal(rows.read(np.arange(5, 17)), whole[order[5:17]])
    assert torch.equal(torch.cat(list(rows.chunks(7))), whole[order])
