"""The examples of the README's extension guide run as written (as subprocesses, from the repo root)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def run(*args: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_new_strategy_plugin_runs_with_clproto_run(tmp_path):
    out = run("-m", "clproto", "run", "scenarios/split-digits.toml", "strategies/nmc-pixels.toml",
              "examples/my_strategy.toml", "--plugin", "examples/my_strategy.py", "--seeds", "0",
              "--out", str(tmp_path / "runs"), "--no-progress", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    assert any(r.startswith("| lda-pixels |") for r in rows) and any(r.startswith("| nmc-pixels |") for r in rows)
    assert (tmp_path / "runs" / "split-digits" / "lda-pixels" / "seed0" / "results.json").exists()


def test_strategy_inside_avalanche_template(tmp_path):
    out = run("examples/avalanche_template.py", tmp_path=tmp_path)
    assert out.returncode == 0, out.stderr  # the script exits non-zero if Avalanche and clproto disagree
    assert "Top1_Acc_Stream/eval_phase/test_stream" in out.stdout  # Avalanche's logger ran
    assert "stream accuracy, last step" in out.stdout


def test_readme_avalanche_snippet_runs_as_written(monkeypatch):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Extending clproto and using it from Avalanche", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {})
