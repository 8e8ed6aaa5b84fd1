"""--device / --precision / --deterministic on `clproto run` and `clproto sweep`, and the [sweep] fields."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from clproto.cli import main

ROOT = Path(__file__).resolve().parents[2]
DIGITS = str(ROOT / "clproto" / "defaults" / "split-digits.toml")
NMC = str(ROOT / "clproto" / "defaults" / "strategies" / "nmc-pixels.toml")


def _configs(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.rglob("config.json"))]


def test_run_records_precision_and_refuses_to_mix_it_with_fp32_runs_of_the_same_name(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["run", DIGITS, NMC, "--seeds", "0", "--out", str(out), "--no-progress"]) == 0
    assert "compute" not in _configs(out)[0]  # cpu/fp32: the identity it always had
    result = json.loads(next(out.rglob("results.json")).read_text())
    assert result["compute"]["device"] == "cpu" and result["compute"]["precision"] == "fp32"
    capsys.readouterr()
    assert main(["run", DIGITS, NMC, "--seeds", "0", "--out", str(out), "--no-progress", "--precision", "bf16"]) == 2
    assert "compute" in capsys.readouterr().err  # a different configuration under the same name: refused
    assert main(["run", DIGITS, NMC, "--seeds", "0", "--out", str(tmp_path / "bf16"), "--no-progress",
                 "--precision", "bf16"]) == 0
    assert _configs(tmp_path / "bf16")[0]["compute"] == {"device": "cpu", "precision": "bf16"}


def test_sweep_file_fields_and_flags(tmp_path, capsys, monkeypatch):
    sweep = tmp_path / "s.toml"
    sweep.write_text(f'[sweep]\nseeds = [0]\nprecision = "bf16"\ndevice = "auto"\n\n'
                     f'[[grid]]\nscenarios = ["{DIGITS}"]\nstrategies = ["{NMC}"]\n')
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "a"), "--no-progress", "--jobs", "1"]) == 0
    assert _configs(tmp_path / "a")[0]["compute"] == {"device": "cpu", "precision": "bf16"}  # auto: cpu here
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "b"), "--no-progress", "--jobs", "1",
                 "--precision", "fp32"]) == 0  # the flag wins over the file
    assert "compute" not in _configs(tmp_path / "b")[0]
    sweep.write_text(sweep.read_text().replace('"bf16"', '"fp8"'))
    capsys.readouterr()
    assert main(["sweep", str(sweep), "--out", str(tmp_path / "c"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "precision" in err and "s.toml" in err


def test_cuda_without_cuda_and_deterministic_at_the_edge(tmp_path, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("describes a machine without CUDA")
    assert main(["run", DIGITS, NMC, "--seeds", "0", "--out", str(tmp_path), "--device", "cuda:0"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err and not list(tmp_path.rglob("*.json"))
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)
    assert main(["run", DIGITS, NMC, "--seeds", "0", "--out", str(tmp_path / "d"), "--deterministic",
                 "--no-progress"]) == 0
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":4096:8"  # set by the command line's edge, before CUDA
    assert json.loads(next((tmp_path / "d").rglob("results.json")).read_text())["compute"]["deterministic"] is True
