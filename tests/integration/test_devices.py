"""Devices and precision (clproto.devices): identity rule, what results record, training and scoring on the
context's device at its precision. This machine has no GPU: every path runs with device="cpu" (bf16/fp16
autocast on the CPU included); the CUDA-only lines are the ones guarded by ``device.type == "cuda"``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from clproto.config import run_hash, strategy_from_dict
from clproto.context import RunContext
from clproto.devices import compute_identity, compute_record, context_identity, fork_rng, place, prepare_run, rng_devices
from clproto.errors import ConfigError
from clproto.evaluation.results import RunResult
from clproto.reports.pooling import pool
from clproto.runner import Runner, resolved_config
from clproto.scenarios.config import ScenarioConfig
from clproto.strategies import REGISTRY
from clproto.training import loop as loop_module
from clproto.training.base_session import BaseTrainingConfig, train_base_session
from clproto.training.loop import DivergedError, TrainingConfig, TrainingLoop, epochs_only

TINY = dict(architecture="convnet-small", batch_size=16, lr=0.05, crop_padding=1, flip=True, epochs=1)
SCENARIO = ScenarioConfig(name="tiny-ci", dataset="tiny", increment=2)


def _strategy(impl: str, **params):
    return strategy_from_dict({"name": impl, "implementation": impl, "params": {**TINY, **params}}, REGISTRY)


def _runner(dataset, **kw) -> Runner:
    return Runner(progress=False, datasets={"tiny": dataset}, **kw)


# --------------------------------------------------------------------------- identity and record
def test_compute_identity_is_absent_for_cpu_fp32_and_names_the_device_type_otherwise():
    assert compute_identity("cpu", "fp32") is None
    assert compute_identity("cpu", "bf16") == {"device": "cpu", "precision": "bf16"}
    assert compute_identity("cuda:1", "fp32") == {"device": "cuda", "precision": "fp32"}
    assert compute_identity("cuda:0", "bf16") == compute_identity("cuda:3", "bf16")  # the index is not identity
    assert compute_identity("mps", "fp16") == {"device": "mps", "precision": "fp16"}
    with pytest.raises(ConfigError, match="resolve"):
        compute_identity("auto", "fp32")
    assert context_identity(RunContext(device="auto")) is None  # auto resolves to cpu on this machine


def test_resolved_config_keeps_cpu_identities_and_adds_other_compute():
    strategy = _strategy("finetune")
    plain = resolved_config(SCENARIO, strategy, 0)
    assert "compute" not in plain
    assert run_hash(resolved_config(SCENARIO, strategy, 0, compute=None)) == run_hash(plain)
    gpu = resolved_config(SCENARIO, strategy, 0, compute=compute_identity("cuda:0", "bf16"))
    assert gpu["compute"] == {"device": "cuda", "precision": "bf16"} and run_hash(gpu) != run_hash(plain)


def test_compile_is_left_out_of_the_identity_while_false():
    assert "compile" not in _strategy("prd").to_dict()["params"]
    assert _strategy("prd", compile=True).to_dict()["params"]["compile"] is True
    with pytest.raises(ConfigError, match="compile"):
        TrainingConfig(compile="yes")


def test_compute_record_names_device_precision_and_versions():
    record = compute_record(RunContext(device="cpu", precision="bf16"))
    assert record == {"device": "cpu", "device_name": "cpu", "precision": "bf16", "deterministic": False,
                      "torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": None}


def test_cuda_is_a_named_error_here_and_rng_forks_cover_only_cuda_devices():
    if torch.cuda.is_available():
        pytest.skip("this test describes a machine without CUDA")
    with pytest.raises(ConfigError, match="CUDA is not available"):
        Runner(device="cuda")
    assert rng_devices("cpu") == [] and rng_devices(torch.device("cpu")) == []
    torch.manual_seed(5)
    with fork_rng("cpu"):
        torch.rand(3)
    assert torch.equal(torch.rand(2), (torch.manual_seed(5), torch.rand(2))[1])  # the caller's stream untouched


def test_prepare_run_sets_nothing_on_the_cpu_and_needs_the_cublas_variable_on_cuda(monkeypatch):
    prepare_run(RunContext(device="cpu", deterministic=True))  # nothing to set, no error
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    fake = RunContext(device="cpu", deterministic=True)
    monkeypatch.setattr("clproto.devices.device_type", lambda device: "cuda")  # the CUDA branch, without CUDA
    with pytest.raises(ConfigError, match="CUBLAS_WORKSPACE_CONFIG"):
        prepare_run(fake)
    calls = []
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda flag: calls.append(flag))
    benchmark = torch.backends.cudnn.benchmark
    try:
        prepare_run(fake)
        assert calls == [True] and torch.backends.cudnn.benchmark is False
    finally:
        torch.backends.cudnn.benchmark = benchmark
        torch.backends.cudnn.deterministic = False


def test_place_moves_and_keeps_the_cpu_layout():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten())
    weight = net[0].weight
    assert place(net, "cpu") is net and net[0].weight is weight  # a no-op on the CPU: same numbers as before
    assert net[0].weight.is_contiguous()  # channels-last only on CUDA


# --------------------------------------------------------------------------- the loop
def _toy_loop(**kw) -> TrainingLoop:
    return TrainingLoop(config=TrainingConfig(architecture="convnet-small", epochs=1, batch_size=4, lr=0.1,
                                              crop_padding=0, flip=False), seed=0, **kw)


def _toy_data(n=16):
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 4, 4, 1), dtype=torch.uint8, generator=g), torch.arange(n) % 2


def test_a_late_read_still_names_the_step_where_the_loss_became_non_finite():
    loop = _toy_loop()
    loop.check_every = 3  # as on an accelerator: the loss is read every few steps
    lin = nn.Linear(16, 2)
    calls = []

    def loss_fn(views, y):
        calls.append(1)
        loss = nn.functional.cross_entropy(lin(views[0].flatten(1)), y)
        return loss * float("nan") if len(calls) == 2 else loss  # step 1 diverges

    x, y = _toy_data()
    with pytest.raises(DivergedError, match=r"epoch 0, step 1;.*noticed 1 step\(s\) later"):
        loop.run(modules=[lin], groups=[{"params": lin.parameters()}], x=x, y=y, loss_fn=loss_fn)
    assert len(calls) == 3  # read at the third step, not at every one


def test_reading_every_few_steps_gives_the_same_epoch_losses():
    def train(check_every, listener=None):
        torch.manual_seed(0)
        lin = nn.Linear(16, 2)
        loop = _toy_loop()
        loop.check_every = check_every
        if listener is not None:
            loop.listeners.append(listener)
        x, y = _toy_data(18)
        return loop.run(modules=[lin], groups=[{"params": lin.parameters()}], x=x, y=y,
                        loss_fn=lambda v, yb: nn.functional.cross_entropy(lin(v[0].flatten(1)), yb))

    events = []

    @epochs_only
    def listener(event):
        events.append(event)

    assert train(1) == train(3) == train(50, listener)
    assert {e.kind for e in events} == {"epoch_start", "epoch_end"}  # an epoch-only listener gets no step events


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_the_loop_runs_under_autocast_and_fp16_uses_a_grad_scaler(precision, monkeypatch):
    made = []
    real = torch.amp.GradScaler

    def spy(*args, **kw):
        made.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(torch.amp, "GradScaler", spy)
    dtypes = []
    lin = nn.Linear(16, 2)
    loop = _toy_loop(context=RunContext(precision=precision))

    def loss_fn(views, y):
        logits = lin(views[0].flatten(1))
        dtypes.append(logits.dtype)
        return nn.functional.cross_entropy(logits, y)

    x, y = _toy_data()
    losses = loop.run(modules=[lin], groups=[{"params": lin.parameters()}], x=x, y=y, loss_fn=loss_fn)
    assert math.isfinite(losses[0]) and lin.weight.dtype == torch.float32  # parameters stay float32
    assert set(dtypes) == {loop.context.amp_dtype}
    assert made == ([("cpu",)] if precision == "fp16" else [])


# --------------------------------------------------------------------------- strategies through the runner
def test_bf16_runs_end_to_end_close_to_but_not_identical_with_fp32(tiny_dataset):
    strategy = _strategy("finetune", epochs=2)
    fp32 = _runner(tiny_dataset).run(SCENARIO, strategy, seed=0)
    bf16 = _runner(tiny_dataset, precision="bf16").run(SCENARIO, strategy, seed=0)
    assert fp32.compute["precision"] == "fp32" and "compute" not in fp32.config
    assert bf16.compute["precision"] == "bf16" and bf16.config["compute"] == {"device": "cpu", "precision": "bf16"}
    assert bf16.config_hash != fp32.config_hash
    a, b = np.array(fp32.accuracy_matrix[-1], float), np.array(bf16.accuracy_matrix[-1], float)
    assert np.abs(a - b).max() <= 0.35  # close on tiny data after 2 epochs (not identical: see the next tests)


def test_prd_and_joint_run_in_bf16_and_the_context_reaches_every_loop(tiny_dataset, monkeypatch):
    seen, autocasts = [], []
    init = TrainingLoop.__init__

    def spy_init(self, **kw):
        init(self, **kw)
        seen.append(self.context)

    real_autocast = RunContext.autocast

    def spy_autocast(self):
        autocasts.append(self.precision)
        return real_autocast(self)

    monkeypatch.setattr(TrainingLoop, "__init__", spy_init)
    monkeypatch.setattr(RunContext, "autocast", spy_autocast)
    runner = _runner(tiny_dataset, precision="bf16")
    for impl in ("prd", "joint", "finetune"):
        result = runner.run(SCENARIO, _strategy(impl), seed=0)
        assert all(math.isfinite(v) for v in result.accuracy_matrix[-1])
    assert len(seen) == 3 and {(c.device, c.precision) for c in seen} == {("cpu", "bf16")}
    assert set(autocasts) == {"bf16"} and len(autocasts) > 10  # training steps and predictions


def test_bf16_changes_the_numbers_of_a_trained_strategy(tiny_dataset):
    logs = {}
    for precision in ("fp32", "bf16"):
        runner = _runner(tiny_dataset, precision=precision)
        runner.run(SCENARIO, _strategy("finetune"), seed=0)
        logs[precision] = runner.last_log.csv_text()
    assert logs["fp32"] != logs["bf16"]  # the losses differ: another computation, not a relabelled one


def test_compile_true_passes_the_network_through_torch_compile(tiny_dataset, monkeypatch):
    compiled = []

    def fake_compile(module):
        compiled.append(type(module).__name__)
        return module

    monkeypatch.setattr(torch, "compile", fake_compile)
    for impl in ("prd", "finetune"):
        _runner(tiny_dataset).run(SCENARIO, _strategy(impl, compile=True), seed=0)
    _runner(tiny_dataset).run(SCENARIO, _strategy("finetune"), seed=0)  # compile = false: not compiled
    assert len(compiled) == 2


def test_a_report_refuses_to_pool_a_cpu_fp32_and_a_bf16_run_of_the_same_name(tiny_dataset, tmp_path):
    strategy = _strategy("finetune")
    _runner(tiny_dataset).run(SCENARIO, strategy, seed=0, out_dir=tmp_path / "cpu")
    _runner(tiny_dataset, precision="bf16").run(SCENARIO, strategy, seed=1, out_dir=tmp_path / "bf16")
    results = [RunResult.load(p) for p in sorted(tmp_path.rglob("results.json"))]
    assert {r.strategy for r in results} == {"finetune"}
    with pytest.raises(ConfigError, match=r"different configurations.*compute"):
        pool(results, [None, None])
    rows = {r.strategy for r in pool(results, [None, None], split_configs=True).results}
    assert len(rows) == 2  # or one row per configuration, labelled by the compute fields


# --------------------------------------------------------------------------- base-session training
def test_base_session_trains_in_bf16_on_the_context_device(tiny_dataset):
    x, y = tiny_dataset.train_x, tiny_dataset.train_y
    cfg = BaseTrainingConfig(architecture="convnet-small", epochs=1, batch_size=16, image_size=0, val_fraction=0.2)
    fp32 = train_base_session(x, y, config=cfg, context=RunContext(progress=False))
    bf16 = train_base_session(x, y, config=cfg, context=RunContext(progress=False, precision="bf16"))
    assert all(v.device.type == "cpu" for v in bf16.state_dict.values())  # cached on the CPU whatever the device
    assert fp32.history[0]["loss"] != bf16.history[0]["loss"]
    assert abs(fp32.history[0]["loss"] - bf16.history[0]["loss"]) < 0.2
    assert 0 <= bf16.history[0]["train_acc"] <= 1


def test_loop_module_forks_the_rng_of_the_device_it_is_given(monkeypatch):
    forked = []
    monkeypatch.setattr(loop_module, "fork_rng", lambda device: (forked.append(str(device)), fork_rng(device))[1])
    with loop_module.seeded(3, torch.device("cpu")):
        pass
    with loop_module.seeded(3):
        pass
    assert forked == ["cpu", "cpu"]
