"""benchmarks/gpu_check.py: without CUDA it says so and exits 0; --device cpu --tiny rehearses all three checks."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_without_cuda_it_says_so_and_exits_0(capsys):
    if torch.cuda.is_available():
        pytest.skip("describes a machine without CUDA")
    assert _module().main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_the_tiny_cpu_rehearsal_runs_every_check_and_every_throughput_hook(capsys):
    module = _module()
    calls = []
    module.THROUGHPUT["extraction"] = lambda device, precision, budget: calls.append((device.type, precision)) or 1.0
    assert module.main(["--device", "cpu", "--tiny"]) == 0
    out = capsys.readouterr().out
    assert out.count("(a) ") == 2 and "prd" in out and "finetune" in out  # cpu/bf16 vs the cpu/fp32 reference
    assert "clproto training / bare training at fp32" in out and "at bf16" in out
    assert calls == [("cpu", "fp32"), ("cpu", "bf16")] and "(b) extraction" in out  # the hook is measured too
    assert "(c) PRD task 0" in out and "projected paper budget" in out
