"""Backbone specs: TorchScript files, torchvision architectures with local weights, preprocessing, errors."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clproto.errors import ConfigError
from clproto.features.backbone import IMAGENET_MEAN, IMAGENET_STD, load_backbone


class TinyNet(torch.nn.Module):
    """(N, 3, S, S) -> (N, 4): one conv, global average pooling."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))  # (N, 4)


class MapNet(torch.nn.Module):
    """A model whose output is a feature map, not N x D."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :2]  # (N, 2, S, S)


def _script(module: torch.nn.Module, path) -> None:
    torch.jit.save(torch.jit.script(module), str(path))


def _reference(net: torch.nn.Module, images: np.ndarray, size: int, mean=(0, 0, 0), std=(1, 1, 1)) -> np.ndarray:
    """The documented preprocessing written out by hand: [0,1], RGB, bilinear resize, mean/std."""
    x = torch.from_numpy(images.copy()).permute(0, 3, 1, 2).float() / 255.0  # (N, C, H, W)
    if x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)  # (N, 3, S, S)
    x = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        return net.eval()(x.float()).numpy()


def test_torchscript_backbone_matches_the_documented_preprocessing(tiny_dataset, tmp_path):
    _script(TinyNet(), tmp_path / "tiny_16_net.pt")
    bb = load_backbone("torchscript:tiny_16_net.pt?batch=5", models_root=tmp_path)  # size 16 from the name
    assert bb.dim == 4 and bb.preprocess.size == 16
    feats = bb.extract(tiny_dataset.train_x, progress=False)
    assert feats.shape == (len(tiny_dataset.train_x), 4) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, _reference(TinyNet(), tiny_dataset.train_x, 16), rtol=1e-5, atol=1e-6)
    # batching does not change the numbers; `out=` receives them in place
    out = np.zeros_like(feats)
    load_backbone("torchscript:tiny_16_net.pt?batch=64", models_root=tmp_path).extract(tiny_dataset.train_x, progress=False, out=out)
    np.testing.assert_allclose(out, feats, rtol=1e-5, atol=1e-6)


def test_greyscale_is_repeated_to_three_channels(tmp_path):
    from conftest import make_tiny_dataset

    grey = make_tiny_dataset(channels=1).train_x  # (N, 8, 8, 1)
    _script(TinyNet(), tmp_path / "net.pt")
    bb = load_backbone("torchscript:net.pt?size=12&norm=imagenet", models_root=tmp_path)
    np.testing.assert_allclose(bb.extract(grey, progress=False), bb.extract(np.repeat(grey, 3, axis=-1), progress=False))
    np.testing.assert_allclose(bb.extract(grey, progress=False),
                               _reference(TinyNet(), grey, 12, IMAGENET_MEAN, IMAGENET_STD), rtol=1e-5, atol=1e-6)


def test_identity_hashes_weight_content_and_preprocessing_not_path(tmp_path):
    _script(TinyNet(0), tmp_path / "a_32_.pt")
    (tmp_path / "sub").mkdir()
    shutil.copy(tmp_path / "a_32_.pt", tmp_path / "sub" / "copy_32_.pt")
    a = load_backbone("torchscript:a_32_.pt", models_root=tmp_path)
    copy = load_backbone(f"torchscript:{tmp_path / 'sub' / 'copy_32_.pt'}", models_root="/nonexistent")  # absolute path
    assert a.identity == copy.identity
    assert load_backbone("torchscript:a_32_.pt?size=16", models_root=tmp_path).identity != a.identity
    assert load_backbone("torchscript:a_32_.pt?norm=imagenet", models_root=tmp_path).identity != a.identity
    _script(TinyNet(1), tmp_path / "a_32_.pt")  # same path, other weights
    assert load_backbone("torchscript:a_32_.pt", models_root=tmp_path).identity != a.identity


def test_torchvision_architecture_with_local_weights(tiny_dataset, tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=1000)
    torch.save({"state_dict": net.state_dict()}, tmp_path / "mnv3.pth")  # a wrapped checkpoint is accepted
    bb = load_backbone("torchvision:mobilenet_v3_small@mnv3.pth?size=32", models_root=tmp_path)
    # the weights enum gives the preprocessing: ImageNet mean/std; the spec's ?size overrides 224
    assert bb.preprocess.size == 32 and bb.preprocess.mean == IMAGENET_MEAN and bb.preprocess.std == IMAGENET_STD
    net.classifier[3] = torch.nn.Identity()  # penultimate features: the last linear layer is dropped
    images = tiny_dataset.test_x[:5]
    np.testing.assert_allclose(bb.extract(images, progress=False),
                               _reference(net, images, 32, IMAGENET_MEAN, IMAGENET_STD), rtol=1e-4, atol=1e-5)
    assert bb.dim == 1024


def test_weights_that_do_not_match_the_architecture(tmp_path):
    import torchvision

    torch.save(torchvision.models.get_model("mobilenet_v3_small", weights=None).state_dict(), tmp_path / "w.pth")
    with pytest.raises(ConfigError, match="do not match architecture resnet18"):
        load_backbone("torchvision:resnet18@w.pth", models_root=tmp_path, where="strategies/x.toml")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ConfigError, match="no state dict"):
        load_backbone("torchvision:resnet18@list.pth", models_root=tmp_path)


def test_output_that_is_not_n_by_d_is_refused_at_load(tmp_path):
    _script(MapNet(), tmp_path / "map_32_.pt")
    with pytest.raises(ConfigError, match=r"output for 2 images is \(2, 2, 32, 32\)") as err:
        load_backbone("torchscript:map_32_.pt", models_root=tmp_path, where="strategies/map.toml")
    assert "strategies/map.toml" in str(err.value)


@pytest.mark.parametrize("spec, message", [
    ("torchscript:absent.pt", "does not exist"),
    ("torchscript:net.pt", "input size"),  # no size in the name and no ?size=
    ("torchscript:net.pt?size=0", "positive integer"),
    ("torchscript:net.pt?colour=1", "unknown backbone option"),
    ("torchscript:garbage_32_.pt", "not a loadable TorchScript"),
    ("torchvision:no_such_net", "unknown torchvision architecture"),
    ("torchvision:resnet18:IMAGENET9K", "no weights"),
    ("resnet18", "unknown backbone"),
    ("", "non-empty"),
])
def test_bad_specs_are_config_errors(tmp_path, spec, message):
    _script(TinyNet(), tmp_path / "net.pt")
    (tmp_path / "garbage_32_.pt").write_bytes(b"not a model")
    with pytest.raises(ConfigError, match=message):
        load_backbone(spec, models_root=tmp_path)


def test_timm_missing_package_or_unknown_model_is_a_config_error(tmp_path):
    try:
        import timm  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="pip install timm"):
            load_backbone("timm:resnet18", models_root=tmp_path)
    else:
        with pytest.raises(ConfigError, match="unknown timm model"):
            load_backbone("timm:no_such_model_anywhere", models_root=tmp_path)


def test_timm_model_with_a_local_checkpoint(tiny_dataset, tmp_path):
    timm = pytest.importorskip("timm")  # optional extra: pip install 'clproto[timm]'
    torch.manual_seed(0)
    net = timm.create_model("resnet10t", pretrained=False, num_classes=1000)
    torch.save(net.state_dict(), tmp_path / "r10t.pth")  # with its classifier head, as checkpoints come
    bb = load_backbone("timm:resnet10t@r10t.pth?size=32", models_root=tmp_path)
    net.reset_classifier(0)  # timm's pooled penultimate features
    images = tiny_dataset.train_x[:4]
    np.testing.assert_allclose(bb.extract(images, progress=False),
                               _reference(net, images, 32, IMAGENET_MEAN, IMAGENET_STD), rtol=1e-4, atol=1e-5)
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "wrong.pth")
    with pytest.raises(ConfigError, match="cannot build timm model resnet10t"):
        load_backbone("timm:resnet10t@wrong.pth", models_root=tmp_path)
