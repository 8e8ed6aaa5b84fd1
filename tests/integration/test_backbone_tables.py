"""Backbones as typed tables: shorthand <-> table, bad tables, --set strategy.backbone.FIELD, run identities,
the typed Extraction and the runner's one feature store (base-trained backbones included)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from clproto.cli import main
from clproto.config import (check_overrides_used, load_scenario, load_strategy, named_strategy, parse_override,
                            run_hash, strategy_from_dict)
from clproto.errors import ConfigError
from clproto.features.backbone import (KINDS, CheckpointTable, Extraction, TorchScriptTable, kind_of,
                                       load_backbone, parse_backbone, shorthand, to_table)
from clproto.features.backbone.kinds import PixelsTable, TimmTable, TorchvisionTable
from clproto.runner import Runner, resolved_config
from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import build_scenario
from clproto.strategies import REGISTRY
from clproto.training.base_session import BaseTrainingConfig

ROOT = Path(__file__).resolve().parents[2]

SHORTHANDS = {
    "pixels": PixelsTable(),
    "torchscript:m_160_.pt": TorchScriptTable(path="m_160_.pt"),
    "torchscript:m.pt?size=native&norm=imagenet&batch=5": TorchScriptTable(path="m.pt", size="native",
                                                                               norm="imagenet", batch=5),
    "torchvision:resnet18": TorchvisionTable(architecture="resnet18"),
    "torchvision:resnet18:IMAGENET1K_V1?size=32": TorchvisionTable(architecture="resnet18",
                                                                      weights="IMAGENET1K_V1", size=32),
    "torchvision:resnet18@w.pth?norm=none": CheckpointTable(library="torchvision", architecture="resnet18",
                                                               path="w.pth", norm="none"),
    "timm:resnet10t": TimmTable(architecture="resnet10t"),
    "timm:resnet10t@r.pth": CheckpointTable(library="timm", architecture="resnet10t", path="r.pth"),
    "base-trained:resnet20, epochs = 3,flip=false,lr=0.05": BaseTrainingConfig(architecture="resnet20", epochs=3,
                                                                              flip=False, lr=0.05),
}


@pytest.mark.parametrize("text", sorted(SHORTHANDS))
def test_each_shorthand_is_its_table_and_back(text):
    spec = parse_backbone(text)
    assert spec == SHORTHANDS[text]
    assert parse_backbone(to_table(spec)) == spec  # the table form reads back to the same dataclass
    assert parse_backbone(shorthand(spec)) == spec  # and so does the label


def test_the_registry_says_which_kinds_need_the_scenario():
    assert sorted(KINDS) == ["base-trained", "checkpoint", "pixels", "timm", "torchscript", "torchvision"]
    assert [k for k, kind in KINDS.items() if kind.needs_scenario] == ["base-trained"]
    assert kind_of(BaseTrainingConfig()).name == "base-trained"


def _strategy_file(tmp_path: Path, body: str, name: str = "st.toml") -> Path:
    path = tmp_path / name
    path.write_text('[strategy]\nname = "t"\nimplementation = "teen"\n' + body)
    return path


BAD_TABLES = {  # table body -> (field the error names, text it must contain)
    'kind = "vgg"': ("backbone.kind", "one of pixels, torchscript, torchvision, timm, checkpoint, base-trained"),
    'path = "m.pt"': ("backbone.kind", "a backbone table needs a kind"),
    'kind = "torchscript"\npath = "m.pt"\nepochs = 3': ("backbone.epochs", "one of kind, path, size, norm, batch"),
    'kind = "torchscript"\npath = "m.pt"\nsize = 1.5': ("backbone.size", "wrong type"),
    'kind = "torchscript"\npath = "m.pt"\nsize = "big"': ("backbone.size", "native"),
    'kind = "torchscript"\npath = "m.pt"\nnorm = "l2"': ("backbone.norm", "none or imagenet"),
    'kind = "torchscript"': ("backbone.path", "required field is missing"),
    'kind = "base-trained"\nepochs = "many"': ("backbone.epochs", "wrong type"),
    'kind = "base-trained"\narchitecture = "vgg99"': ("backbone.architecture", "unknown architecture"),
    'kind = "checkpoint"\nlibrary = "keras"\narchitecture = "x"\npath = "w.pt"': ("backbone.library", "torchvision or timm"),
}


@pytest.mark.parametrize("body", sorted(BAD_TABLES))
def test_a_bad_table_is_a_config_error_naming_file_and_field(tmp_path, body):
    path = _strategy_file(tmp_path, "[strategy.backbone]\n" + body + "\n")
    field, text = BAD_TABLES[body]
    with pytest.raises(ConfigError) as err:
        load_strategy(path, REGISTRY)
    assert err.value.field == field and text in str(err.value) and str(path) in str(err.value)


@pytest.mark.parametrize("text,field", [("vgg99", "backbone"), ("torchscript:m.pt?dpi=3", "backbone"),
                                        ("torchscript:m.pt?batch=-3", "backbone.batch"), (7, "backbone"),
                                        ("base-trained:resnet20,epochs", "backbone")])
def test_a_bad_shorthand_is_a_config_error(tmp_path, text, field):
    with pytest.raises(ConfigError) as err:
        strategy_from_dict({"name": "t", "implementation": "teen", "backbone": text}, REGISTRY, where="t.toml")
    assert err.value.field == field and "t.toml" in str(err.value)


def test_a_table_and_its_shorthand_load_the_same_backbone(tiny_dataset, tmp_path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.jit.save(torch.jit.script(net), str(tmp_path / "net.pt"))
    table = load_backbone({"kind": "torchscript", "path": "net.pt", "size": 12, "batch": 5}, models_root=tmp_path)
    short = load_backbone("torchscript:net.pt?size=12&batch=5", models_root=tmp_path)
    assert table.identity == short.identity and table.batch_size == 5 and table.preprocess.size == 12
    np.testing.assert_array_equal(table.extract(tiny_dataset.train_x, progress=False),
                                  short.extract(tiny_dataset.train_x, progress=False))
    with pytest.raises(ConfigError, match="needs_scenario|built from a scenario"):
        load_backbone("base-trained:resnet20")


# --------------------------------------------------------------------------- identities and overrides
def test_a_shorthand_is_recorded_as_written_so_existing_run_identities_hold():
    """Hashes measured before backbones became tables (commit 094bc83; NMC, whose configuration did not change
    since — TEEN's did, on purpose: its alpha/tau grid fields), for a committed definition and a base-trained one."""
    scenario = load_scenario(ROOT / "scenarios" / "fscil-digits.toml")
    base_trained = "base-trained:resnet20,epochs=8,batch_size=128,lr=0.1,image_size=32,seed=0"
    for strategy, written, before in [
            (strategy_from_dict({"name": "nmc-rn20", "implementation": "nmc", "backbone": base_trained}, REGISTRY),
             base_trained, "9d48b3a4ca24ce9e"),
            (load_strategy(ROOT / "strategies" / "nmc.toml", REGISTRY), "torchscript:mobilenet_v1_0.5_160_imagenet.pt",
             "aa33cb3071781e41")]:
        config = resolved_config(scenario, strategy, 0)
        assert config["strategy"]["backbone"] == written
        assert run_hash(config) == before


def test_set_a_backbone_field_parses_the_shorthand_and_names_the_run():
    path = ROOT / "strategies" / "teen-resnet20.toml"
    plain = load_strategy(path, REGISTRY)
    st = named_strategy(path, [parse_override("strategy.backbone.epochs=24")], REGISTRY)
    assert st.backbone == dataclasses.replace(plain.backbone, epochs=24)
    assert st.name == "teen-resnet20@epochs=24"
    recorded = st.to_dict()["backbone"]  # now a table: recorded with every field
    assert recorded["kind"] == "base-trained" and recorded["epochs"] == 24 and recorded["batch_size"] == 128
    assert st.backbone_label == "base-trained:resnet20,epochs=24"


def test_a_strategy_wide_backbone_field_applies_where_the_kind_has_it():
    nmc = ROOT / "strategies" / "nmc-pixels.toml"
    teen = ROOT / "strategies" / "teen-resnet20.toml"
    overrides = [parse_override("strategy.backbone.epochs=2")]
    strategies = [named_strategy(p, overrides, REGISTRY) for p in (nmc, teen)]
    assert strategies[0].backbone == PixelsTable() and strategies[0].name == "nmc-pixels"  # pixels has no epochs
    assert strategies[1].backbone.epochs == 2
    check_overrides_used(overrides, [s.name for s in strategies], REGISTRY, strategies)
    nobody = [parse_override("strategy.backbone.depth=3")]
    plain = [named_strategy(p, nobody, REGISTRY) for p in (nmc, teen)]
    with pytest.raises(ConfigError, match="no strategy's backbone has this field"):
        check_overrides_used(nobody, [s.name for s in plain], REGISTRY, plain)
    with pytest.raises(ConfigError, match="backbone.depth"):  # aimed at one strategy: its kind must have the field
        named_strategy(teen, [parse_override("teen-resnet20.backbone.depth=3")], REGISTRY)


# --------------------------------------------------------------------------- one feature store
FSCIL = ScenarioConfig(name="fs", dataset="tiny", kind="few-shot", base_classes=4, ways=1, shots=3, sessions=2,
                       class_order="listed")
TINY_NET = {"kind": "base-trained", "architecture": "convnet-small", "epochs": 1, "image_size": 0, "batch_size": 16}


def _runner(dataset, cache: Path) -> Runner:
    runner = Runner(progress=False, cache_dir=str(cache))
    runner._datasets["tiny"] = dataset
    return runner


def test_base_trained_features_go_through_the_store_with_a_typed_result(tiny_dataset, tmp_path):
    runner = _runner(tiny_dataset, tmp_path)
    sc = build_scenario(FSCIL, tiny_dataset, seed=0)
    spec = parse_backbone(TINY_NET)
    first = runner.features(tiny_dataset, spec, scenario=sc)
    assert isinstance(first, Extraction) and not first.cache_hit and "trained in" in first.note
    assert first.features.train_x.shape[0] == len(tiny_dataset.train_x) and first.features.train_x.ndim == 2
    assert first.seconds > 0
    assert runner.features(tiny_dataset, dict(TINY_NET), scenario=sc) is first  # the table form: same entry
    with pytest.raises(ConfigError, match="needs a scenario"):
        runner.features(tiny_dataset, spec)
    again = _runner(tiny_dataset, tmp_path).features(tiny_dataset, spec, scenario=sc)  # a new process, warm disk
    assert again.cache_hit and "loaded from the cache" in again.note and "feature cache hit" in again.note
    np.testing.assert_array_equal(again.features.test_x, first.features.test_x)


def test_clproto_run_sets_a_base_trained_field_from_the_command_line(tmp_path):
    strategy = _strategy_file(tmp_path, "[strategy.backbone]\n" + "\n".join(
        f"{k} = {json.dumps(v)}" for k, v in {**TINY_NET, "epochs": 3}.items()) + "\n")
    out = tmp_path / "out"
    code = main(["run", str(ROOT / "scenarios" / "fscil-digits.toml"), str(strategy), "--seeds", "0", "--out", str(out),
                 "--no-progress", "--cache-dir", str(tmp_path / "cache"), "--set", "scenario.train_per_class=8",
                 "--set", "scenario.test_per_class=4", "--set", "strategy.backbone.epochs=1"])
    assert code == 0
    (results,) = out.glob("*/*/seed0/results.json")
    assert results.parent.parent.name == "t@epochs=1"
    result = json.loads(results.read_text())
    assert result["config"]["strategy"]["backbone"] == to_table(parse_backbone(TINY_NET))  # epochs = 1, every field
    assert any(n.startswith("backbone base-trained:convnet-small,epochs=1,") and "trained in" in n
               for n in result["notes"])
    assert result["timings"]["features_s"] > 0  # trained now: not a cache hit
