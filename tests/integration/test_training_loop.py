"""The shared training loop: augmentation, schedules, batching, optimiser groups, determinism, divergence."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.training.loop import (
    DivergedError,
    Normalization,
    TrainingConfig,
    TrainingLoop,
    augment,
    batch_count,
    batches,
    build_optimizer,
    lr_factor,
    to_input,
)

QUIET = RunContext(progress=False)


def _images(n: int = 5, h: int = 4, w: int = 6, c: int = 3) -> torch.Tensor:
    return torch.arange(n * h * w * c, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(n, h, w, c)


def test_augment_without_crop_or_flip_is_identity():
    x = _images()
    assert torch.equal(augment(x, padding=0, flip=False, generator=torch.Generator().manual_seed(0)), x)


def test_flip_mirrors_some_samples_and_keeps_the_others():
    x = _images(n=32)
    out = augment(x, padding=0, flip=True, generator=torch.Generator().manual_seed(1))
    same = [bool(torch.equal(out[i], x[i])) for i in range(32)]
    mirrored = [bool(torch.equal(out[i], x[i].flip(1))) for i in range(32)]
    assert all(s or m for s, m in zip(same, mirrored))
    assert 0 < sum(mirrored) < 32


def test_crop_is_a_window_of_the_zero_padded_image():
    x = _images(n=16, h=4, w=6)
    p = 2
    out = augment(x, padding=p, flip=False, generator=torch.Generator().manual_seed(2))
    assert out.shape == x.shape and out.dtype == torch.uint8
    padded = torch.zeros(16, 4 + 2 * p, 6 + 2 * p, 3, dtype=torch.uint8)
    padded[:, p:p + 4, p:p + 6] = x
    offsets = set()
    for i in range(16):
        hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
                if torch.equal(out[i], padded[i, dy:dy + 4, dx:dx + 6])]
        assert hits, f"sample {i} is not a crop of its padded image"
        offsets.add(hits[0])
    assert len(offsets) > 1  # offsets differ between samples


def test_augment_is_deterministic_in_the_generator_seed():
    x = _images(n=8)
    a = augment(x, padding=2, flip=True, generator=torch.Generator().manual_seed(5))
    b = augment(x, padding=2, flip=True, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_to_input_is_nchw_float_with_fixed_scaling():
    x = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)  # (1, 1, 1, 2): one pixel, two channels
    out = to_input(x)
    assert out.shape == (1, 2, 1, 1) and out.dtype == torch.float32
    assert out.flatten().tolist() == pytest.approx([-2.0, 2.0])  # (0 - 0.5) / 0.25 and (1 - 0.5) / 0.25


def test_to_input_with_a_per_channel_normalization():
    x = torch.tensor([[[[51, 102, 255]]]], dtype=torch.uint8)  # (1, 1, 1, 3): 0.2, 0.4, 1.0 after / 255
    out = to_input(x, Normalization(mean=(0.2, 0.5, 0.0), std=(0.1, 0.2, 0.5)))
    assert out.flatten().tolist() == pytest.approx([0.0, -0.5, 2.0])
    assert out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("mean,std", [((), ()), ((0.5, 0.5), (0.25,)), ((0.5,), (0.0,))])
def test_bad_normalization_is_a_config_error(mean, std):
    with pytest.raises(ConfigError, match="normalization"):
        Normalization(mean=mean, std=std)


def test_lr_schedules():
    cos = TrainingConfig(epochs=4, schedule="cosine")
    assert [lr_factor(cos, e) for e in range(4)] == pytest.approx([1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5,
                                                                   (1 + math.cos(3 * math.pi / 4)) / 2])
    step = TrainingConfig(epochs=6, schedule="step", milestones=[2, 4], gamma=0.5)
    assert [lr_factor(step, e) for e in range(6)] == pytest.approx([1, 1, 0.5, 0.5, 0.25, 0.25])
    assert lr_factor(TrainingConfig(schedule="constant", epochs=3), 2) == 1.0


def test_batches_cover_every_sample_once_and_never_leave_a_single_sample():
    parts = batches(9, 4, torch.Generator().manual_seed(0))  # 4 + 4 + 1 -> 4 + 5
    assert [len(p) for p in parts] == [4, 5]
    assert sorted(torch.cat(parts).tolist()) == list(range(9))
    assert [len(p) for p in batches(8, 4, torch.Generator().manual_seed(0))] == [4, 4]


def test_a_lone_last_batch_can_stay_alone():
    parts = batches(9, 4, torch.Generator().manual_seed(0), merge_lone=False)
    assert [len(p) for p in parts] == [4, 4, 1]
    assert torch.equal(torch.cat(parts), torch.cat(batches(9, 4, torch.Generator().manual_seed(0))))  # same shuffle
    assert [batch_count(n, 4, merge_lone=m) for n in (8, 9, 10) for m in (True, False)] == [2, 2, 2, 3, 3, 3]
    assert batch_count(1, 4) == 1


def test_cosine_steps_follows_torchs_cosine_annealing_over_every_step(monkeypatch):
    """schedule = "cosine-steps" (base-session training): the rate of torch's CosineAnnealingLR, stepped per batch."""
    net = nn.Linear(3, 2)
    rates = []
    original = torch.optim.SGD.step

    def spy(self, *args, **kwargs):  # the rate each optimiser step uses
        rates.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    cfg = TrainingConfig(epochs=2, batch_size=4, lr=0.1, schedule="cosine-steps", crop_padding=0, flip=False)
    TrainingLoop(config=cfg, seed=0, context=QUIET).run(
        modules=[net], groups=[{"params": list(net.parameters())}], x=_images(n=10, h=1, w=3, c=1),
        y=torch.arange(10) % 2, loss_fn=lambda v, yb: nn.functional.cross_entropy(net(v[0].flatten(1)), yb))
    total = 2 * 3  # 2 epochs of ceil(10 / 4) = 3 batches
    assert rates == pytest.approx([0.1 * (1 + math.cos(math.pi * t / total)) / 2 for t in range(total)])


def test_nesterov_optimizer_needs_momentum():
    a = nn.Parameter(torch.zeros(2))
    sgd = build_optimizer(TrainingConfig(optimizer="nesterov", momentum=0.9), [{"params": [a]}])
    assert sgd.param_groups[0]["nesterov"] is True
    assert build_optimizer(TrainingConfig(), [{"params": [a]}]).param_groups[0]["nesterov"] is False
    with pytest.raises(ConfigError, match="momentum"):
        TrainingConfig(optimizer="nesterov", momentum=0.0)


def test_optimizer_groups_override_and_the_callers_groups_are_not_mutated():
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    groups = [{"params": [a]}, {"params": [b], "lr": 0.5, "momentum": 0.0, "weight_decay": 0.0}]
    sgd = build_optimizer(TrainingConfig(lr=0.1, momentum=0.9), groups)
    assert isinstance(sgd, torch.optim.SGD)
    assert [g["lr"] for g in sgd.param_groups] == [0.1, 0.5]
    assert [g["momentum"] for g in sgd.param_groups] == [0.9, 0.0]
    adam = build_optimizer(TrainingConfig(optimizer="adam", lr=0.01), groups)
    assert isinstance(adam, torch.optim.Adam) and [g["lr"] for g in adam.param_groups] == [0.01, 0.5]
    assert "momentum" in groups[1]  # the caller's dict is untouched


def _train(seed: int, epochs: int = 3, **kw) -> tuple[nn.Module, list[float], TrainingLoop]:
    x = _images(n=20, h=4, w=4, c=3)
    y = torch.arange(20) % 2
    with torch.random.fork_rng():
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.Linear(48, 2))
    cfg = TrainingConfig(epochs=epochs, batch_size=6, lr=0.01, crop_padding=1, **kw)
    loop = TrainingLoop(config=cfg, seed=seed, context=QUIET)
    losses = loop.run(modules=[net], groups=[{"params": list(net.parameters())}], x=x, y=y, views=2,
                      loss_fn=lambda v, yb: nn.functional.cross_entropy(net(torch.cat(v)), yb.repeat(2)))
    return net, losses, loop


def test_training_is_deterministic_in_the_seed_and_learns():
    net_a, losses_a, _ = _train(seed=3)
    net_b, losses_b, _ = _train(seed=3)
    net_c, _, _ = _train(seed=4)
    assert losses_a == losses_b
    assert all(torch.equal(p, q) for p, q in zip(net_a.parameters(), net_b.parameters()))
    assert not all(torch.equal(p, q) for p, q in zip(net_a.parameters(), net_c.parameters()))
    assert len(losses_a) == 3 and losses_a[-1] < losses_a[0]
    assert not net_a.training  # modules are left in eval mode


def test_generator_state_round_trip_continues_the_same_stream():
    _, _, loop = _train(seed=1, epochs=1)
    state = loop.state_dict()
    other = TrainingLoop(config=loop.config, seed=99, context=QUIET)
    other.load_state_dict(state)
    assert torch.equal(torch.randperm(50, generator=loop.generator), torch.randperm(50, generator=other.generator))


def test_the_loop_respects_the_thread_setting():
    before = torch.get_num_threads()
    _train(seed=0, epochs=1)
    assert torch.get_num_threads() == before


def test_nan_loss_stops_with_experience_epoch_and_step():
    net = nn.Linear(2, 1)
    calls = []

    def loss_fn(views, yb):
        calls.append(1)
        out = net(views[0].flatten(1)[:, :2]).mean()
        return out * float("nan") if len(calls) == 4 else out

    loop = TrainingLoop(config=TrainingConfig(epochs=3, batch_size=2, crop_padding=0, flip=False), seed=0, context=QUIET)
    with pytest.raises(DivergedError, match=r"experience 7, epoch 1, step 3") as info:
        loop.run(modules=[net], groups=[{"params": list(net.parameters())}], x=_images(n=6, h=1, w=2, c=1),
                 y=torch.zeros(6, dtype=torch.long), loss_fn=loss_fn, experience=7)
    assert isinstance(info.value, ConfigError) and "lr" in str(info.value)


@pytest.mark.parametrize("field, value", [("epochs", 0), ("batch_size", 0), ("optimizer", "rmsprop"),
                                          ("schedule", "linear"), ("lr", 0.0), ("momentum", -0.1),
                                          ("architecture", "vgg"), ("milestones", [0]), ("gamma", 2.0)])
def test_bad_training_config_is_a_config_error_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        TrainingConfig(**{field: value})
