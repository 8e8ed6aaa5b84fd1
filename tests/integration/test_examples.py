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
    section = text.split("### Inside Avalanche", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(ROOT)
    exec(compile(code, "README.md", "exec"), {})


def test_readme_adding_a_strategy_snippets_run_as_written(tmp_path, monkeypatch):
    """Every Python block of README "Adding a strategy", in order, in one namespace; the TOML block is the
    definition file the snippets load (written where the text says it lives)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Adding a strategy", 1)[1].split("\n### ", 1)[0]
    blocks = [b.split("```", 1)[0] for b in section.split("```python\n")[1:]]
    toml = section.split("```toml\n", 1)[1].split("```", 1)[0]
    assert len(blocks) == 4 and "implementation = \"nearest-sample\"" in toml
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies" / "nearest-sample.toml").write_text(toml)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"README.md (Adding a strategy, block {i + 1})", "exec"), namespace)
    final = namespace["result"]
    assert len(final.accuracy_matrix) == 5 and all(0.0 <= a <= 1.0 for a in final.seen_accuracy)
    assert namespace["registry"].get("cross-entropy").cls is namespace["CrossEntropyStrategy"]
    # the frozen-feature example is a real 1-NN: on the embedded digits it is far above chance
    nn_result = clproto_run(namespace)
    assert nn_result.metrics.final_accuracy > 0.8


def clproto_run(namespace):
    import clproto

    return clproto.Runner(registry=namespace["registry"], progress=False).run(
        namespace["scenario"], namespace["strategy"], seed=0)


def test_a_scenario_built_in_python_runs_like_a_definition_and_writes_results(tmp_path):
    """Runner.run takes a built Scenario (e.g. from from_avalanche): same numbers as its definition, results.json
    written, identified by its content (the same stream -> the same run identity)."""
    import clproto
    from clproto.config import run_hash
    from clproto.evaluation.results import RunResult
    from clproto.scenarios.config import ScenarioConfig

    cfg = ScenarioConfig(name="digits", dataset="digits", increment=5, train_per_class=10, test_per_class=10)
    strategy = clproto.load_strategy(ROOT / "strategies" / "nmc-pixels.toml")
    runner = clproto.Runner(progress=False)
    built = runner.scenario(cfg, seed=1)
    from_definition = runner.run(cfg, strategy, seed=1)
    from_built = runner.run(built, strategy, seed=1, out_dir=tmp_path)
    assert from_built.accuracy_matrix == from_definition.accuracy_matrix
    saved = RunResult.load(tmp_path / "digits" / "nmc-pixels" / "seed1" / "results.json")
    assert saved.accuracy_matrix == from_built.accuracy_matrix and saved.config["scenario"]["built"] == "in Python"
    again = runner.run(runner.scenario(cfg, seed=1), strategy, seed=1)
    other = runner.run(runner.scenario(cfg, seed=2), strategy, seed=1)
    assert run_hash(again.config) == run_hash(from_built.config) != run_hash(other.config)
