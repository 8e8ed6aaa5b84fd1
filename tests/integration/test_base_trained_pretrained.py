"""Fine-tuning a pretrained TorchScript network as a base-trained backbone (architecture = "torchscript:PATH")."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clproto.config import load_scenario, load_strategy, run_hash, strategy_from_dict
from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.features.backbone import parse_backbone, shorthand, to_table
from clproto.features.base_trained import checkpoint_path, load_or_train, training_key
from clproto.runner import resolved_config
from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import build_scenario
from clproto.strategies import REGISTRY
from clproto.training.base_session import BaseTrainingConfig, TrainedBase, encode, train_base_session
from conftest import make_tiny_dataset

ROOT = Path(__file__).resolve().parents[2]
QUIET = RunContext(progress=False)
TINY = "base-trained:torchscript:net.pt,epochs=1,batch_size=16,lr=0.05,image_size=0,crop_padding=0"


@pytest.fixture
def models(tmp_path) -> Path:
    """A models root holding ``net.pt``: a tiny scripted feature extractor (N, 3, S, S) -> (N, 8)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    root = tmp_path / "models"
    root.mkdir()
    torch.jit.save(torch.jit.script(net), str(root / "net.pt"))
    return root


def _scenario(dataset):
    cfg = ScenarioConfig(name="fs", dataset="tiny", kind="few-shot", base_classes=4, ways=2, shots=3)
    return build_scenario(cfg, dataset, seed=0)


def _file_weights(models: Path) -> dict:
    return {k: v.clone() for k, v in torch.jit.load(str(models / "net.pt")).state_dict().items()}


# --------------------------------------------------------------------------- training, caching, reloading
def test_fine_tuned_once_cached_then_reloaded_bit_identically(tiny_dataset, models, tmp_path):
    sc = _scenario(tiny_dataset)
    spec = parse_backbone(TINY)
    first = load_or_train(sc, spec, cache_dir=tmp_path / "cache", models_root=models, progress=False)
    assert first.computed and "trained in" in first.note
    trained = first.backbone.trained
    before = _file_weights(models)
    assert set(trained.state_dict) == {f"module.{k}" for k in before}  # the scripted network's own parameters
    assert any(not torch.equal(trained.state_dict[f"module.{k}"], v) for k, v in before.items())  # it was trained
    assert trained.mean == [0.0] * 3 and trained.std == [1.0] * 3  # fed x / 255: the model's own input
    assert trained.init_hash  # the file fine-tuned is part of the key
    (ckpt,) = (tmp_path / "cache" / "base-trained").glob("*.pt")
    assert ckpt == checkpoint_path(sc, spec, cache_dir=tmp_path / "cache", models_root=models)
    assert ckpt.name.startswith("torchscript-net-")
    assert json.loads(ckpt.with_suffix(".json").read_text())["init_hash"] == trained.init_hash
    stored = torch.load(ckpt, map_location="cpu", weights_only=True)  # a state dict: no code in the cache
    assert all(isinstance(v, torch.Tensor) for v in stored["state_dict"].values())

    again = load_or_train(sc, spec, cache_dir=tmp_path / "cache", models_root=models, progress=False)
    assert not again.computed and "loaded from the cache" in again.note
    assert again.backbone.identity == first.backbone.identity
    for k, v in trained.state_dict.items():
        assert torch.equal(again.backbone.trained.state_dict[k], v), k
    x = tiny_dataset.train_x
    np.testing.assert_array_equal(first.backbone.extract(x, progress=False), again.backbone.extract(x, progress=False))


def test_a_damaged_cache_entry_is_moved_aside_and_trained_again(tiny_dataset, models, tmp_path):
    sc = _scenario(tiny_dataset)
    spec = parse_backbone(TINY)
    first = load_or_train(sc, spec, cache_dir=tmp_path, models_root=models, progress=False)
    ckpt = checkpoint_path(sc, spec, cache_dir=tmp_path, models_root=models)
    for damage in (lambda: ckpt.write_bytes(ckpt.read_bytes()[:100]),  # truncated
                   lambda: torch.save({**torch.load(ckpt, weights_only=True),  # readable, weights of another network
                                       "state_dict": {"w": torch.zeros(3)}}, ckpt)):
        damage()
        healed = load_or_train(sc, spec, cache_dir=tmp_path, models_root=models, progress=False)
        assert healed.computed and healed.backbone.identity == first.backbone.identity  # retrained, deterministically
    assert len(list((tmp_path / "base-trained").glob("*.corrupt-*"))) >= 1
    assert not load_or_train(sc, spec, cache_dir=tmp_path, models_root=models, progress=False).computed


def test_the_file_content_is_part_of_the_key(tiny_dataset, models, tmp_path):
    sc = _scenario(tiny_dataset)
    spec = parse_backbone(TINY)
    key = checkpoint_path(sc, spec, cache_dir=tmp_path, models_root=models)
    first = load_or_train(sc, spec, cache_dir=tmp_path, models_root=models, progress=False)
    torch.manual_seed(1)  # another initialisation under the same file name
    torch.jit.save(torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.AdaptiveAvgPool2d(1),
                                                        torch.nn.Flatten())), str(models / "net.pt"))
    assert checkpoint_path(sc, spec, cache_dir=tmp_path, models_root=models) != key
    with pytest.raises(ConfigError, match="not the file these weights were fine-tuned from"):
        first.backbone.trained.network(models_root=models)
    other = load_or_train(sc, spec, cache_dir=tmp_path, models_root=models, progress=False)
    assert other.computed and other.backbone.identity != first.backbone.identity


# --------------------------------------------------------------------------- what the network sees and learns
def test_features_are_the_scripted_network_on_x_over_255(models):
    """An independent forward pass: the file's module on uint8 images / 255, channels first."""
    ds = make_tiny_dataset(size=8)
    module = torch.jit.load(str(models / "net.pt"))
    tb = TrainedBase(config=BaseTrainingConfig(architecture="torchscript:net.pt", image_size=0),
                     state_dict={f"module.{k}": v for k, v in module.state_dict().items()}, in_channels=3,
                     mean=[0.0] * 3, std=[1.0] * 3, classes=[0, 1])
    got = encode(tb, ds.test_x, progress=False, models_root=models)  # (N, 8)
    with torch.no_grad():
        want = module(torch.from_numpy(ds.test_x).permute(0, 3, 1, 2).float() / 255.0).numpy()  # (N, 8)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_network_lr_sets_the_network_rate_and_equal_rates_match_one_group(models):
    ds = make_tiny_dataset(num_classes=3, train_per_class=10)
    common = dict(architecture="torchscript:net.pt", epochs=1, batch_size=10, lr=0.05, image_size=0, val_fraction=0.0)

    def train(**kw):
        return train_base_session(ds.train_x, ds.train_y, config=BaseTrainingConfig(**common, **kw), context=QUIET,
                                  models_root=models).state_dict

    one_group = train()
    same_rate = train(network_lr=0.05)
    for k, v in one_group.items():
        assert torch.equal(same_rate[k], v), k  # SGD is per parameter: two groups at one rate change nothing
    still = train(network_lr=1e-12)
    before = _file_weights(models)
    for k, v in before.items():
        torch.testing.assert_close(still[f"module.{k}"], v, rtol=0, atol=1e-9)  # the network barely moves
    assert any(not torch.equal(one_group[f"module.{k}"], v) for k, v in before.items())


def test_train_from_keeps_the_layers_before_it_frozen(tiny_dataset, models, tmp_path):
    ds = make_tiny_dataset(num_classes=3, train_per_class=10)
    cfg = BaseTrainingConfig(architecture="torchscript:net.pt", epochs=1, batch_size=10, lr=0.05, image_size=0,
                             train_from="2")  # the Sequential's second conv: the first one stays as in the file
    state = train_base_session(ds.train_x, ds.train_y, config=cfg, context=QUIET, models_root=models).state_dict
    before = _file_weights(models)
    assert torch.equal(state["module.0.weight"], before["0.weight"]) and torch.equal(state["module.0.bias"], before["0.bias"])
    assert not torch.equal(state["module.2.weight"], before["2.weight"])
    with pytest.raises(ConfigError, match="no parameter of the network has this name prefix") as err:
        load_or_train(_scenario(tiny_dataset), parse_backbone(TINY + ',train_from="blocks.6"'), cache_dir=tmp_path,
                      models_root=models, progress=False, where="t.toml")
    assert err.value.field == "backbone.train_from" and "0.weight" in str(err.value)


# --------------------------------------------------------------------------- definitions and bad input
def test_table_and_shorthand_read_the_same_and_round_trip():
    table = {"kind": "base-trained", "architecture": "torchscript:net.pt", "epochs": 2, "network_lr": 0.01}
    short = parse_backbone("base-trained:torchscript:net.pt,epochs=2,network_lr=0.01")
    assert parse_backbone(table) == short and parse_backbone(shorthand(short)) == short
    assert to_table(short)["network_lr"] == 0.01 and parse_backbone(to_table(short)) == short


def test_existing_definitions_keep_their_identities(tiny_dataset):
    """network_lr was added after base-trained backbones were cached: values measured before it existed."""
    cfg = BaseTrainingConfig(architecture="resnet20", epochs=8, image_size=32)
    assert training_key(tiny_dataset, np.arange(10), cfg) == "18ec250e48f820db4d6899f66d750a85"
    table = {"kind": "base-trained", "architecture": "resnet20", "epochs": 8, "image_size": 32}
    assert not {"network_lr", "train_from"} & set(to_table(parse_backbone(table)))
    strategy = strategy_from_dict({"name": "t", "implementation": "teen", "backbone": table}, REGISTRY)
    assert run_hash(resolved_config(load_scenario(ROOT / "scenarios" / "fscil-digits.toml"), strategy, 0)) \
        == "62d24668277fc8f3"
    teen = load_strategy(ROOT / "strategies" / "teen-resnet20.toml", REGISTRY)
    assert run_hash(resolved_config(load_scenario(ROOT / "scenarios" / "fscil-tinyimagenet100-fixed-order.toml"),
                                    teen, 0)) == "57b5022c2edc571d"


@pytest.mark.parametrize("table, field", [
    ({"architecture": "torchscript:"}, "backbone.architecture"),
    ({"architecture": "mobilenet"}, "backbone.architecture"),
    ({"architecture": "torchscript:net.pt", "network_lr": 0}, "backbone.network_lr"),
    ({"architecture": "torchscript:net.pt", "network_lr": "small"}, "backbone.network_lr"),
])
def test_bad_fields_name_the_file_and_field(table, field):
    with pytest.raises(ConfigError) as err:
        strategy_from_dict({"name": "t", "implementation": "teen", "backbone": {"kind": "base-trained", **table}},
                           REGISTRY, where="t.toml")
    assert err.value.field == field and "t.toml" in str(err.value)


def _write(path: Path, payload) -> None:
    if isinstance(payload, bytes):
        path.write_bytes(payload)
    else:
        torch.save(payload, path)


@pytest.mark.parametrize("name, payload, message", [
    ("missing.pt", None, "does not exist"),
    ("weights.pt", {"conv.weight": torch.zeros(8, 3, 3, 3)}, "not a loadable TorchScript file"),  # a state dict
    ("text.pt", b"not a model", "not a loadable TorchScript file"),
])
def test_a_missing_or_non_torchscript_file_is_a_config_error(tiny_dataset, models, tmp_path, name, payload, message):
    if payload is not None:
        _write(models / name, payload)
    spec = parse_backbone(f"base-trained:torchscript:{name},epochs=1,image_size=0")
    with pytest.raises(ConfigError, match=message) as err:
        load_or_train(_scenario(tiny_dataset), spec, cache_dir=tmp_path, models_root=models, progress=False,
                      where="t.toml")
    assert err.value.field == "backbone.architecture" and "t.toml" in str(err.value) and name in str(err.value)
    assert not (tmp_path / "base-trained").exists()  # nothing trained, nothing cached


def test_a_network_that_does_not_return_features_is_a_config_error(tiny_dataset, models, tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Conv2d(3, 4, 3)), str(models / "maps.pt"))  # (N, 4, H, W): no pooling
    spec = parse_backbone("base-trained:torchscript:maps.pt,epochs=1,image_size=0")
    with pytest.raises(ConfigError, match=r"returns \(2, 4, 6, 6\)"):
        load_or_train(_scenario(tiny_dataset), spec, cache_dir=tmp_path, models_root=models, progress=False)


def test_clproto_run_fine_tunes_from_the_models_root(tmp_path, models):
    from clproto.cli import main

    strategy = tmp_path / "t.toml"
    strategy.write_text('[strategy]\nname = "t"\nimplementation = "teen"\n[strategy.params]\nalpha = 0.0\n'
                        '[strategy.backbone]\nkind = "base-trained"\narchitecture = "torchscript:net.pt"\nepochs = 1\n'
                        'image_size = 0\ncrop_padding = 0\nflip = false\n')
    out = tmp_path / "out"
    code = main(["run", str(ROOT / "scenarios" / "fscil-digits.toml"), str(strategy), "--seeds", "0", "--out", str(out),
                 "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--models-root", str(models),
                 "--set", "scenario.train_per_class=8", "--set", "scenario.test_per_class=4"])
    assert code == 0
    (results,) = out.glob("*/*/seed0/results.json")
    result = json.loads(results.read_text())
    assert result["config"]["strategy"]["backbone"]["architecture"] == "torchscript:net.pt"
    assert not {"network_lr", "train_from"} & set(result["config"]["strategy"]["backbone"])  # at their defaults
    assert any("base-trained backbone trained in" in n for n in result["notes"])


# --------------------------------------------------------------------------- the committed definitions
def test_the_fine_tuned_mobilenet_definitions_share_one_backbone_and_the_sweep_pairs_them():
    from clproto.sweep import expand_grid, load_sweep

    teen = load_strategy(ROOT / "strategies" / "teen-mobilenet-ft.toml", REGISTRY)
    proto = load_strategy(ROOT / "strategies" / "protonet-mobilenet-ft.toml", REGISTRY)
    assert teen.backbone == proto.backbone  # one trained network, one feature cache entry, for both
    assert teen.backbone.architecture == "torchscript:mobilenet_v1_0.5_160_imagenet.pt"
    assert (teen.params.alpha, teen.params.tau) == ("auto", "auto") and proto.params.alpha == 0.0
    path = ROOT / "sweeps" / "fscil-mobilenet-ft.toml"
    sweep, grids = load_sweep(path)
    specs = expand_grid(sweep, grids, registry=REGISTRY, base_dir=path.parent, where=str(path))
    names = {s.strategy.name for s in specs}
    assert names == {"teen-mobilenet-ft", "protonet-mobilenet-ft", "teen-mobilenet-frozen", "protonet-mobilenet-frozen"}
    assert len(specs) == 20 and {s.seed for s in specs} == {0, 1, 2, 3, 4}
    frozen = [s for s in specs if s.strategy.name.endswith("-frozen")]
    assert {s.config["strategy"]["backbone"] for s in frozen} == {"torchscript:mobilenet_v1_0.5_160_imagenet.pt"}


def test_weights_trained_at_another_precision_have_their_own_cache_entry(tiny_dataset, tmp_path):
    """Base training runs on the run's device and precision: bf16 weights are never served to a CPU/fp32 run,
    and the key of a CPU/fp32 training is the one it had before devices existed."""
    cfg = BaseTrainingConfig(architecture="resnet20", epochs=8, image_size=32)
    sc = build_scenario(ScenarioConfig(name="fs", dataset="tiny", kind="few-shot", base_classes=4, ways=2, shots=3),
                        tiny_dataset, seed=0)
    default = checkpoint_path(sc, cfg, cache_dir=tmp_path)
    assert checkpoint_path(sc, cfg, cache_dir=tmp_path, run=RunContext(device="cpu", precision="fp32")) == default
    assert checkpoint_path(sc, cfg, cache_dir=tmp_path, run=RunContext(device="auto")) == default  # auto = cpu here
    bf16 = checkpoint_path(sc, cfg, cache_dir=tmp_path, run=RunContext(precision="bf16"))
    assert bf16 != default and bf16.parent == default.parent
    assert training_key(tiny_dataset, np.arange(10), cfg, compute=None) == "18ec250e48f820db4d6899f66d750a85"
