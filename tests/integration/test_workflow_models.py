"""log.csv, TensorBoard / W&B mirrors, kept models (--keep-model) and `clproto evaluate`."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from clproto.cli import main
from clproto.config import load_scenario, load_strategy, parse_override
from clproto.kept_models import load_model
from clproto.loggers import COLUMNS, LoggerSettings, read_log
from clproto.rescore import score_scenario
from clproto.runner import Runner, run_dir
from clproto.strategies import REGISTRY
from clproto.strategies.nmc import NMC

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ROOT / "clproto" / "defaults"
SCENARIO = str(DEFAULTS / "split-digits.toml")
NMC_PIXELS = str(DEFAULTS / "strategies" / "nmc-pixels.toml")
FINETUNE = str(DEFAULTS / "strategies" / "finetune-digits.toml")
SMALL = ["scenario.train_per_class=10", "scenario.test_per_class=10", "strategy.params.epochs=1"]
SC_NAME = "split-digits@train_per_class=10,test_per_class=10"
FT_NAME = "finetune-digits@epochs=1"


def _sets(items):
    return [a for s in items for a in ("--set", s)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One CLI run of nmc-pixels and finetune-digits (epochs=1) keeping every experience's model."""
    out = tmp_path_factory.mktemp("runs")
    code = main(["run", SCENARIO, NMC_PIXELS, FINETUNE, "--seeds", "0", "--out", str(out), "--no-progress",
                 "--keep-model", "every", "--cache-dir", str(out / "cache"), *_sets(SMALL)])
    assert code == 0
    return out


def _folder(out, strategy):
    return run_dir(out, SC_NAME, strategy, 0)


def _results(folder):
    return json.loads((folder / "results.json").read_text())


# --------------------------------------------------------------------------- log.csv
@pytest.mark.parametrize("strategy", ["nmc-pixels", FT_NAME])
def test_log_csv_repeats_the_results_and_has_one_loss_row_per_trained_epoch(runs, strategy):
    folder = _folder(runs, strategy)
    text = (folder / "log.csv").read_text()
    assert text.splitlines()[0] == ",".join(COLUMNS)
    rows = read_log(folder / "log.csv")
    r = _results(folder)
    T = len(r["accuracy_matrix"])
    seen = [x["value"] for x in rows if x["event"] == "accuracy" and x["key"] == "seen"]
    assert seen == r["seen_accuracy"]
    for t in range(T):
        for j in range(T):
            got = [x["value"] for x in rows if x["event"] == "accuracy" and x["experience"] == t and x["key"] == f"exp{j}"]
            assert got == ([r["accuracy_matrix"][t][j]] if j <= t else [])
    fit = [x["value"] for x in rows if x["event"] == "timing" and x["key"] == "fit_s"]
    assert fit == r["timings"]["fit_s"]
    total = [x["value"] for x in rows if x["event"] == "timing" and x["key"] == "total_s"]
    assert total == [r["timings"]["total_s"]] and all(x["experience"] is None for x in rows if x["key"] == "total_s")
    losses = [(x["experience"], x["epoch"]) for x in rows if x["event"] == "loss"]
    assert losses == ([(t, 0) for t in range(T)] if strategy == FT_NAME else [])


def _small(name):
    overrides = [parse_override(s) for s in SMALL]
    scenario = load_scenario(SCENARIO, overrides=overrides)
    strategy = load_strategy(DEFAULTS / "strategies" / f"{name}.toml", REGISTRY, overrides=overrides)
    return scenario, strategy


def test_loss_rows_are_the_sample_weighted_mean_of_the_epochs_step_losses(tmp_path, monkeypatch):
    steps = []  # (experience, epoch, loss, batch size) of every step, recorded beside the runner's listener

    def record(event):  # a listener wanting step events (the runner's own wants epochs only)
        if event.kind == "step":
            steps.append((event.experience, event.epoch, event.loss, len(event.targets)))
    scenario, strategy = _small("finetune-digits")
    scenario = dataclasses.replace(scenario, increment=5)  # 2 experiences
    strategy = load_strategy(FINETUNE, REGISTRY, overrides=[parse_override("strategy.params.epochs=2"),
                                                             parse_override("strategy.params.batch_size=7")])
    Runner(progress=False, listeners=(record,)).run(scenario, strategy, seed=1, out_dir=tmp_path)
    rows = [x for x in read_log(run_dir(tmp_path, scenario.name, strategy.name, 1) / "log.csv") if x["event"] == "loss"]
    assert [(x["experience"], x["epoch"]) for x in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    for x in rows:
        mine = [(loss, n) for e, ep, loss, n in steps if (e, ep) == (x["experience"], x["epoch"])]
        assert len(mine) > 1  # several steps of 7 samples
        expected = sum(loss * n for loss, n in mine) / sum(n for _, n in mine)
        assert x["value"] == pytest.approx(expected, rel=1e-12)


class Interrupt(Exception):
    pass


def test_a_crashed_run_leaves_no_log_and_its_resumed_log_is_complete(tmp_path, monkeypatch):
    scenario, strategy = _small("finetune-digits")
    whole = read_log(_run_logged(Runner(progress=False), scenario, strategy, tmp_path / "whole"))
    cls = REGISTRY.get("finetune").cls
    fit = cls.fit_experience

    def fit_then_stop(self, experience):
        if experience.index == 3:
            raise Interrupt
        fit(self, experience)

    monkeypatch.setattr(cls, "fit_experience", fit_then_stop)
    with pytest.raises(Interrupt):
        Runner(progress=False).run(scenario, strategy, seed=0, out_dir=tmp_path / "cut")
    folder = run_dir(tmp_path / "cut", scenario.name, strategy.name, 0)
    assert (folder / "checkpoint.pt").exists() and not (folder / "log.csv").exists()
    assert not list(folder.glob(".*.tmp"))
    monkeypatch.setattr(cls, "fit_experience", fit)
    resumed = read_log(_run_logged(Runner(progress=False), scenario, strategy, tmp_path / "cut"))

    def untimed(rows):
        return [(x["event"], x["experience"], x["epoch"], x["key"], x["value"]) for x in rows if x["event"] != "timing"]

    assert untimed(resumed) == untimed(whole)  # losses and accuracies of experiences 0-2 came from the checkpoint


def _run_logged(runner, scenario, strategy, out):
    runner.run(scenario, strategy, seed=0, out_dir=out)
    return run_dir(out, scenario.name, strategy.name, 0) / "log.csv"


# --------------------------------------------------------------------------- TensorBoard and W&B
def test_tensorboard_logger_writes_the_same_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    code = main(["run", SCENARIO, FINETUNE, "--seeds", "0", "--out", str(tmp_path), "--no-progress",
                 "--logger", "tensorboard", *_sets(SMALL)])
    assert code == 0
    folder = run_dir(tmp_path, SC_NAME, FT_NAME, 0)
    acc = EventAccumulator(str(folder / "tensorboard"))
    acc.Reload()
    rows = read_log(folder / "log.csv")
    loss = [e.value for e in acc.Scalars("loss/train_loss")]
    assert loss == pytest.approx([x["value"] for x in rows if x["event"] == "loss"], rel=1e-6)
    seen = acc.Scalars("accuracy/seen")
    assert [s.step for s in seen] == list(range(5))
    assert [s.value for s in seen] == pytest.approx(_results(folder)["seen_accuracy"], rel=1e-6)


class FakeWandb(types.ModuleType):
    """Records wandb.init / run.log / run.finish as the real package would receive them."""

    def __init__(self):
        super().__init__("wandb")
        self.inits, self.logs, self.finished = [], [], []

    def init(self, **kwargs):
        self.inits.append(kwargs)
        fake = self

        class Run:
            def log(self, data):
                fake.logs.append(data)

            def finish(self, exit_code=None):
                fake.finished.append(exit_code)

        return Run()


def test_wandb_logger_calls_init_log_finish(tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    code = main(["run", SCENARIO, NMC_PIXELS, "--seeds", "0", "1", "--out", str(tmp_path), "--no-progress",
                 "--logger", "wandb", "--wandb-offline", "--wandb-project", "proj", *_sets(SMALL[:2])])
    assert code == 0
    assert len(fake.inits) == 2 and fake.finished == [0, 0]
    init = fake.inits[0]
    folder = run_dir(tmp_path, SC_NAME, "nmc-pixels", 0)
    assert init["project"] == "proj" and init["mode"] == "offline" and init["dir"] == str(folder)
    assert init["name"] == f"{SC_NAME}/nmc-pixels/seed0"
    assert init["config"]["seed"] == 0 and init["config"]["strategy"]["name"] == "nmc-pixels"
    seen = [d["accuracy/seen"] for d in fake.logs[:len(fake.logs) // 2] if "accuracy/seen" in d]
    assert seen == _results(folder)["seen_accuracy"]


def test_wandb_offline_for_real(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb-home"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    code = main(["run", SCENARIO, NMC_PIXELS, "--seeds", "0", "--out", str(tmp_path), "--no-progress",
                 "--logger", "wandb", "--wandb-offline", *_sets(SMALL[:2])])
    assert code == 0
    runs = list((run_dir(tmp_path, SC_NAME, "nmc-pixels", 0) / "wandb").glob("offline-run-*/*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


@pytest.mark.parametrize("logger,module", [("tensorboard", "torch.utils.tensorboard"), ("wandb", "wandb")])
def test_a_missing_logger_package_is_exit_2_naming_it(logger, module, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    code = main(["run", SCENARIO, NMC_PIXELS, "--seeds", "0", "--out", str(tmp_path / "o"), "--no-progress",
                 "--logger", logger])
    assert code == 2
    err = capsys.readouterr().err
    assert f"'{logger}' package" in err and f"clproto[{logger}]" in err
    assert not (tmp_path / "o").exists()


def test_logger_option_mistakes_are_exit_2(tmp_path, capsys):
    assert main(["run", SCENARIO, NMC_PIXELS, "--out", str(tmp_path), "--wandb-offline"]) == 2
    assert "--wandb-offline" in capsys.readouterr().err
    with pytest.raises(Exception):
        LoggerSettings(loggers=("mlflow",))
    assert main(["sweep", "--scenario", SCENARIO, "--strategy", NMC_PIXELS, "--out", str(tmp_path),
                 "--backend", "ray", "--keep-model", "last"]) == 2
    assert "Ray backend" in capsys.readouterr().err


# --------------------------------------------------------------------------- kept models
def test_keep_model_every_writes_weights_only_files_per_experience(runs):
    for strategy in ("nmc-pixels", FT_NAME):
        folder = _folder(runs, strategy)
        files = sorted(p.name for p in folder.glob("model*.pt"))
        assert files == [f"model-exp{k}.pt" for k in range(5)]
        payload = load_model(folder / "model-exp1.pt")  # torch.load(weights_only=True) inside
        r = _results(folder)
        assert payload["experience"] == 1 and payload["config_hash"] == r["config_hash"]
        assert sorted(payload["classes_seen"]) == sorted(sum(r["experience_classes"][:2], []))
        torch.load(folder / "model-exp4.pt", weights_only=True)  # loadable by anyone, no code


def test_keep_model_last_and_a_sweep_carries_it(tmp_path):
    code = main(["sweep", "--scenario", SCENARIO, "--strategy", NMC_PIXELS, "--seeds", "0", "--jobs", "1",
                 "--out", str(tmp_path), "--no-progress", "--keep-model", "last", *_sets(SMALL[:2])])
    assert code == 0
    folder = run_dir(tmp_path, SC_NAME, "nmc-pixels", 0)
    assert sorted(p.name for p in folder.glob("model*.pt")) == ["model.pt"]
    assert (folder / "log.csv").exists()


def test_nmc_state_round_trips():
    x, y = torch.randn(30, 5), torch.arange(30) % 3
    a = NMC(num_classes=4)
    a.partial_fit(x, y)
    b = NMC(num_classes=4)
    b.load_state_dict(a.state_dict())
    q = torch.randn(7, 5)
    assert torch.equal(a.predict_scores(q), b.predict_scores(q))
    with pytest.raises(ValueError):
        NMC(num_classes=5).load_state_dict(a.state_dict())


@pytest.mark.parametrize("strategy", ["nmc-pixels", FT_NAME])
def test_evaluate_on_the_runs_own_scenario_reproduces_its_final_row(runs, strategy, capsys):
    folder = _folder(runs, strategy)
    code = main(["evaluate", str(folder), "--scenario", SCENARIO, *_sets(SMALL[:2]), "--no-progress",
                 "--cache-dir", str(runs / "cache")])
    assert code == 0
    printed = capsys.readouterr().out
    assert "unseen classes score -inf" in printed
    out = json.loads((folder / f"evaluate-{SC_NAME}.json").read_text())
    r = _results(folder)
    assert out["model_file"] == "model-exp4.pt"  # no model.pt: the last experience's
    got = out["seeds"]["0"]
    assert [e["accuracy"] for e in got["experiences"]] == pytest.approx(r["accuracy_matrix"][-1], abs=1e-12)
    assert got["accuracy"] == pytest.approx(r["seen_accuracy"][-1], abs=1e-12)


def test_evaluate_an_earlier_model_scores_classes_it_never_saw_as_errors(runs):
    folder = _folder(runs, "nmc-pixels")
    assert main(["evaluate", str(folder), "--scenario", SCENARIO, *_sets(SMALL[:2]), "--model", "model-exp1.pt",
                 "--no-progress", "--cache-dir", str(runs / "cache")]) == 0
    got = json.loads((folder / f"evaluate-{SC_NAME}.json").read_text())["seeds"]["0"]
    r = _results(folder)
    for e in got["experiences"]:
        if e["experience"] <= 1:
            assert e["unseen_classes"] == [] and e["accuracy"] == pytest.approx(r["accuracy_matrix"][1][e["experience"]])
        else:
            assert e["unseen_classes"] == sorted(e["classes"]) and e["accuracy"] == 0.0
    assert got["accuracy_seen_classes"] == pytest.approx(r["seen_accuracy"][1])
    assert got["accuracy"] == pytest.approx(r["seen_accuracy"][1] * 2 / 5)  # 2 of 5 equal-sized experiences


def test_evaluate_on_another_scenario_and_seeds(runs, tmp_path):
    other = tmp_path / "halves.toml"
    other.write_text('[scenario]\nname = "halves"\ndataset = "digits"\nclass_order = "listed"\nincrement = 5\n'
                     'test_per_class = 8\n')
    folder = _folder(runs, "nmc-pixels")
    assert main(["evaluate", str(folder), "--scenario", str(other), "--seeds", "3", "4", "--no-progress",
                 "--cache-dir", str(runs / "cache")]) == 0
    out = json.loads((folder / "evaluate-halves.json").read_text())
    assert set(out["seeds"]) == {"3", "4"}
    # an independent check: the kept NMC scored by hand on the same scenario
    runner = Runner(progress=False, cache_dir=str(runs / "cache"))
    sc = runner.scenario(load_scenario(other), seed=3)
    model = NMC(num_classes=10)
    model.load_state_dict(load_model(folder / "model-exp4.pt")["strategy"])
    x = torch.from_numpy(sc.dataset.test_x[sc[0].test_indices]).float()
    y = torch.from_numpy(sc.dataset.test_y[sc[0].test_indices])
    f = torch.nn.functional.normalize(x.reshape(len(x), -1).double(), dim=1)
    means = model.sums / model.counts[:, None]
    pred = torch.cdist(f, means).argmin(dim=1)
    assert out["seeds"]["3"]["experiences"][0]["accuracy"] == pytest.approx(float((pred == y).double().mean()))
    assert score_scenario(model, sc, list(range(10)))["accuracy"] == pytest.approx(out["seeds"]["3"]["accuracy"])


def test_evaluate_bad_inputs_are_exit_2(runs, tmp_path, capsys):
    other = tmp_path / "mnist.toml"
    other.write_text('[scenario]\ndataset = "MNIST"\nincrement = 2\n')
    folder = _folder(runs, "nmc-pixels")
    assert main(["evaluate", str(folder), "--scenario", str(other)]) == 2
    assert "another dataset" in capsys.readouterr().err

    bare = tmp_path / "bare"
    assert main(["run", SCENARIO, NMC_PIXELS, "--seeds", "0", "--out", str(bare), "--no-progress",
                 *_sets(SMALL[:2])]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run_dir(bare, SC_NAME, "nmc-pixels", 0)), "--scenario", SCENARIO]) == 2
    assert "--keep-model" in capsys.readouterr().err

    assert main(["evaluate", str(tmp_path / "nowhere"), "--scenario", SCENARIO]) == 2
    assert "no such run folder" in capsys.readouterr().err
    assert main(["evaluate", str(folder), "--scenario", SCENARIO, "--model", "model-exp9.pt"]) == 2
    assert "model-exp0.pt" in capsys.readouterr().err  # lists what is kept


class Pwned:
    def __reduce__(self):
        return (os.system, (f"touch {Path(os.environ.get('PWN_DIR', '/tmp'))}/PWNED",))


def test_evaluate_refuses_damaged_and_crafted_model_files_without_running_them(runs, tmp_path, monkeypatch, capsys):
    src = _folder(runs, "nmc-pixels")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text((src / "config.json").read_text())
    data = (src / "model-exp4.pt").read_bytes()
    (folder / "model.pt").write_bytes(data[: len(data) // 2])  # truncated
    assert main(["evaluate", str(folder), "--scenario", SCENARIO]) == 2
    assert "damaged or not a clproto model file" in capsys.readouterr().err

    monkeypatch.setenv("PWN_DIR", str(tmp_path))
    torch.save({"format": "clproto-model", "strategy": Pwned()}, folder / "model.pt")
    assert main(["evaluate", str(folder), "--scenario", SCENARIO]) == 2
    assert "nothing in it was run" in capsys.readouterr().err
    assert not (tmp_path / "PWNED").exists()

    torch.save({"weights": torch.zeros(3)}, folder / "model.pt")  # loads, but is no clproto model
    assert main(["evaluate", str(folder), "--scenario", SCENARIO]) == 2
    assert "not a clproto model file" in capsys.readouterr().err


def test_a_backend_whose_workers_return_results_gets_log_csv_written_by_the_driver(tmp_path):
    from clproto.sweep.backends import InProcessBackend
    from clproto.sweep.driver import run_sweep
    from clproto.sweep.grid import GridConfig, SweepConfig, expand_grid
    from clproto.sweep.tasks import worker_settings

    class Remote(InProcessBackend):  # as Ray's: the worker runs without a folder and returns its data
        shares_files = False

    specs = expand_grid(SweepConfig(), [GridConfig(scenarios=[SCENARIO], strategies=[NMC_PIXELS])], registry=REGISTRY,
                        extra_overrides=SMALL[:2], seeds=[0])
    summary = run_sweep(specs, out=tmp_path, backend=Remote(threads=1), settings=worker_settings(), progress=False,
                        summary_name=None, announce=False, log=lambda s: None)
    assert summary.done and not summary.failed
    folder = run_dir(tmp_path, SC_NAME, "nmc-pixels", 0)
    rows = read_log(folder / "log.csv")
    assert [x["value"] for x in rows if x["key"] == "seen"] == _results(folder)["seen_accuracy"]
