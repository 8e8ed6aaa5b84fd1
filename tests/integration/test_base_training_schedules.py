"""What the reproduction scripts needed from clproto: base-training schedules as TEEN's scripts (per-epoch cosine,
MultiStepLR), the ImageNet ResNet-18, list values in the base-trained shorthand, timm names with a pretrained tag,
and the ImageNet ResNet-18 exported as the TorchScript feature extractor that base training fine-tunes."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from clproto.errors import ConfigError
from clproto.features.backbone import load_backbone
from clproto.features.backbone.tables import to_table
from clproto.features.backbone.shorthand import parse_backbone, shorthand
from clproto.nets import build_network
from clproto.training.base_session import BaseTrainingConfig, config_identity, train_base_session



def _history_lrs(tiny_dataset, **fields) -> list[float]:
    cfg = BaseTrainingConfig(architecture="convnet-small", epochs=4, batch_size=36, lr=0.1, image_size=0,
                             val_fraction=0.0, **fields)
    tb = train_base_session(tiny_dataset.train_x, tiny_dataset.train_y, config=cfg)
    return [h["lr"] for h in tb.history]


def test_per_epoch_cosine_and_milestone_schedules_set_each_epochs_rate(tiny_dataset):
    """"cosine": lr · ½(1 + cos(π e / E)) at epoch e, as torch's CosineAnnealingLR(T_max = E) stepped per epoch (TEEN's
    CIFAR / miniImageNet scripts); "step": lr · γ^(milestones passed), as MultiStepLR (TEEN's CUB script)."""
    cosine = _history_lrs(tiny_dataset, schedule="cosine")
    assert cosine == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * e / 4)) for e in range(4)])
    step = _history_lrs(tiny_dataset, schedule="step", milestones=[1, 3], gamma=0.25)
    assert step == pytest.approx([0.1, 0.025, 0.025, 0.1 * 0.25 ** 2])
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # torch's own schedulers, for reference
    multi = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 3], gamma=0.25)
    seen = []
    for _ in range(4):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        multi.step()
    assert step == pytest.approx(seen)


def test_the_default_schedule_keeps_identities_and_numbers(tiny_dataset):
    """Fields at their defaults are left out of identities (cache keys, recorded tables): nothing recorded before
    changes; and the default still decays after every step."""
    cfg = BaseTrainingConfig(epochs=3)
    added = {f.name for f in dataclasses.fields(cfg) if f.metadata.get("omit_when_default")}
    assert {"schedule", "milestones", "gamma"} <= added
    assert set(config_identity(cfg)) == {f.name for f in dataclasses.fields(cfg)} - added
    assert set(to_table(cfg)) == {"kind"} | set(config_identity(cfg))
    step = BaseTrainingConfig(schedule="step", milestones=[2], gamma=0.5)
    assert config_identity(step)["milestones"] == (2,) and to_table(step)["milestones"] == [2]
    per_step = _history_lrs(tiny_dataset)  # epoch-start rates of torch's per-step cosine: below the per-epoch ones
    assert per_step[0] == 0.1 and all(a > b for a, b in zip(per_step, per_step[1:]))


@pytest.mark.parametrize("fields, message", [
    ({"schedule": "linear"}, "unknown schedule"),
    ({"milestones": [10]}, 'apply to schedule = "step" only'),
    ({"schedule": "step", "milestones": [0]}, "positive epoch numbers"),
    ({"schedule": "step", "gamma": 1.5}, r"must lie in \(0, 1\]"),
])
def test_bad_schedules_are_config_errors(fields, message):
    with pytest.raises(ConfigError, match=message):
        BaseTrainingConfig(**fields)


def test_list_values_round_trip_through_the_base_trained_shorthand():
    text = 'base-trained:resnet18-imagenet,epochs=400,schedule="step",milestones=[50, 100, 150],gamma=0.25'
    table = parse_backbone(text)
    assert table.milestones == (50, 100, 150) and table.gamma == 0.25 and table.epochs == 400
    assert shorthand(table) == 'base-trained:resnet18-imagenet,epochs=400,schedule="step",milestones=[50,100,150],gamma=0.25'
    assert parse_backbone(shorthand(table)) == table
    hash(table)  # tables key the feature store


def test_the_imagenet_resnet18_has_torchvisions_layout():
    """7×7 stride-2 stem and max-pool before [2, 2, 2, 2] blocks: torchvision's resnet18 without its classifier,
    same parameter count, same 32× reduction (84 px -> 3 × 3 before pooling)."""
    import torchvision

    net = build_network("resnet18-imagenet")
    reference = torchvision.models.resnet18(weights=None)
    fc = sum(p.numel() for p in reference.fc.parameters())
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for p in reference.parameters()) - fc
    assert net.stem[0].kernel_size == (7, 7) and net.stem[0].stride == (2, 2)
    trunk = torch.nn.Sequential(*list(reference.children())[:-2]).eval()
    x = torch.rand(2, 3, 84, 84)
    assert net.stem(x).shape == trunk[:4](x).shape
    assert net.eval()(x).shape == (2, 512)


def test_a_timm_model_name_with_a_pretrained_tag_is_accepted(tmp_path, tiny_dataset):
    timm = pytest.importorskip("timm")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = timm.create_model("test_vit.r160_in1k", pretrained=False)
    torch.save(net.state_dict(), tmp_path / "vit.pth")
    bb = load_backbone("timm:test_vit.r160_in1k@vit.pth?norm=none", models_root=tmp_path)
    net.reset_classifier(0)
    images = tiny_dataset.train_x[:3]
    x = torch.nn.functional.interpolate(torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255, size=(160, 160),
                                        mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        want = net.eval()(x).numpy()
    np.testing.assert_allclose(bb.extract(images, progress=False), want, rtol=1e-4, atol=1e-4)
