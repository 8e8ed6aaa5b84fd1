"""The command line: the embedded default, the results contract, overrides and bad input (exit 2, nothing written)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clproto.cli import main

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = str(ROOT / "scenarios" / "split-digits.toml")
NMC = str(ROOT / "strategies" / "nmc-pixels.toml")

RESULT_KEYS = {"scenario", "strategy", "seed", "config", "versions", "accuracy_matrix", "seen_accuracy", "metrics", "timings"}
METRIC_KEYS = {"final_accuracy", "average_incremental_accuracy", "forgetting", "bwt"}


def test_help_reads_well(capsys):
    assert main([]) == 0
    out = capsys.readouterr().out
    for word in ("run", "report", "list", "examples:"):
        assert word in out


def test_run_writes_results_and_report(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["run", SCENARIO, NMC, "--seeds", "0", "1", "--out", str(out), "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| nmc-pixels |" in printed and "Report:" in printed
    files = sorted(out.rglob("results.json"))
    assert len(files) == 2
    r = json.loads(files[0].read_text())
    assert RESULT_KEYS <= set(r) and METRIC_KEYS <= set(r["metrics"])
    assert r["accuracy_matrix"][0][1] is None  # above the diagonal
    assert (files[0].parent / "config.json").exists()
    assert json.loads((files[0].parent / "config.json").read_text())["scenario"]["dataset"] == "digits"
    report = out / "report"
    assert (report / "summary.md").exists() and (report / "summary.csv").exists()
    assert len(list(report.glob("*.png"))) >= 2
    # an independent script recomputes every metric exactly
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "verify_metrics.py"), str(out)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    assert "2 results checked, 0 mismatches" in proc.stdout


def test_same_seed_same_numbers(tmp_path):
    for d in ("a", "b"):
        assert main(["run", SCENARIO, NMC, "--seeds", "3", "--out", str(tmp_path / d), "--no-progress"]) == 0
    a, b = (json.loads(next((tmp_path / d).rglob("results.json")).read_text()) for d in ("a", "b"))
    assert a["accuracy_matrix"] == b["accuracy_matrix"] and a["metrics"] == b["metrics"]


def test_overrides_apply_and_are_saved(tmp_path):
    code = main(["run", SCENARIO, NMC, "--seeds", "0", "--out", str(tmp_path), "--no-progress",
                 "--set", "scenario.train_per_class=20", "--set", "strategy.params.metric=cosine"])
    assert code == 0
    cfg = json.loads(next(tmp_path.rglob("config.json")).read_text())
    assert cfg["scenario"]["train_per_class"] == 20
    assert cfg["strategy"]["params"]["metric"] == "cosine"


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


BAD = {
    "unknown dataset": ('[scenario]\ndataset = "imagenet-42"\nincrement = 2\n', None, "dataset"),
    "unknown field": ('[scenario]\ndataset = "digits"\nincrement = 2\nincrment = 3\n', None, "incrment"),
    "duplicate classes": ('[scenario]\ndataset = "digits"\nincrement = 2\nclass_order = [0,0,1,2,3,4,5,6,7,8]\n', None, "class_order"),
    "unknown class": ('[scenario]\ndataset = "digits"\nincrement = 2\nclass_order = [0,1,2,3,4,5,6,7,8,10]\n', None, "class_order"),
    "increments": ('[scenario]\ndataset = "digits"\nincrements = [5, 4]\n', None, "increments"),
    "too many shots": ('[scenario]\ndataset = "digits"\nkind = "few-shot"\nbase_classes = 4\nways = 2\nshots = 500\n', None, "shots"),
    "wrong type": ('[scenario]\ndataset = "digits"\nincrement = "two"\n', None, "increment"),
    "unknown strategy": (None, '[strategy]\nname = "x"\nimplementation = "icarl"\n', "implementation"),
    "unknown param": (None, '[strategy]\nname = "x"\nimplementation = "nmc"\n[strategy.params]\nk = 3\n', "params.k"),
    "bad param value": (None, '[strategy]\nname = "x"\nimplementation = "nmc"\n[strategy.params]\nmetric = "l1"\n', "metric"),
    "unknown backbone": (None, '[strategy]\nname = "x"\nimplementation = "nmc"\nbackbone = "vgg99"\n', "backbone"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys, case):
    scenario_text, strategy_text, field = BAD[case]
    scenario = _write(tmp_path, "sc.toml", scenario_text) if scenario_text else SCENARIO
    strategy = _write(tmp_path, "st.toml", strategy_text) if strategy_text else NMC
    out = tmp_path / "out"
    code = main(["run", scenario, strategy, "--seeds", "0", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert field in err
    assert Path(scenario if scenario_text else strategy).name in err  # names the file
    assert not list(out.rglob("results.json")) if out.exists() else True


def test_bad_override_is_an_error(tmp_path, capsys):
    code = main(["run", SCENARIO, NMC, "--out", str(tmp_path), "--set", "strategy.params.nope=1", "--no-progress"])
    assert code == 2 and "nope" in capsys.readouterr().err
    code = main(["run", SCENARIO, NMC, "--out", str(tmp_path), "--set", "scenarioo.increment=1", "--no-progress"])
    assert code == 2 and "scenarioo" in capsys.readouterr().err
    assert not list(tmp_path.rglob("results.json"))


def test_missing_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml" in capsys.readouterr().err


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "digits" in out and "nmc" in out


def test_report_command(tmp_path, capsys):
    assert main(["run", SCENARIO, NMC, "--seeds", "0", "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    assert main(["report", str(tmp_path / "r"), "--out", str(tmp_path / "rep")]) == 0
    assert (tmp_path / "rep" / "summary.md").read_text().count("nmc-pixels") == 1
    assert main(["report", str(tmp_path / "empty")]) == 2


def test_python_api(tmp_path):
    import clproto

    scenario = clproto.load_scenario(SCENARIO, overrides=["scenario.test_per_class=10"])
    strategy = clproto.load_strategy(NMC)
    result = clproto.Runner(progress=False).run(scenario, strategy, seed=0)
    assert isinstance(result, clproto.RunResult)
    assert len(result.accuracy_matrix) == 5 and result.metrics.final_accuracy > 0.5


def test_packaged_default_matches_repo_definition():
    import clproto

    packaged = Path(clproto.__file__).parent / "defaults" / "split-digits.toml"
    assert packaged.read_text() == (ROOT / "scenarios" / "split-digits.toml").read_text()


def test_default_output_folders_are_named_after_the_scenario_and_the_sweep(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    small = ["--seeds", "0", "--no-progress", "--set", "scenario.train_per_class=10"]
    assert main(["run", SCENARIO, NMC, *small]) == 0
    sc = "split-digits@train_per_class=10"
    assert (tmp_path / "runs" / sc / sc / "nmc-pixels/seed0/results.json").is_file()  # runs/<scenario>/<run folders>
    assert main(["sweep", "--scenario", SCENARIO, "--strategy", NMC, "--jobs", "1", *small]) == 0
    assert (tmp_path / "runs/sweep" / sc / "nmc-pixels/seed0/results.json").is_file()
    assert (tmp_path / "runs/sweep/sweep.json").is_file()


def test_definitions_can_be_given_by_name(tmp_path, monkeypatch, capsys):
    """`clproto run split-digits nmc-pixels`: names from `clproto list` (./scenarios/, ./strategies/, built-in)."""
    monkeypatch.chdir(tmp_path)  # no ./scenarios here: the built-in definitions answer
    assert main(["run", "split-digits", "nmc-pixels", "--seeds", "0", "--out", "o", "--no-progress",
                 "--set", "scenario.train_per_class=10"]) == 0
    assert (tmp_path / "o/split-digits@train_per_class=10/nmc-pixels/seed0/results.json").exists()
    (tmp_path / "strategies").mkdir()
    (tmp_path / "strategies/nmc-pixels.toml").write_text(
        '[strategy]\nname = "local-nmc"\nimplementation = "nmc"\n')  # ./strategies/ comes before the built-in
    assert main(["run", "split-digits", "nmc-pixels", "--seeds", "0", "--out", "o", "--no-progress",
                 "--set", "scenario.train_per_class=10"]) == 0
    assert (tmp_path / "o/split-digits@train_per_class=10/local-nmc/seed0/results.json").exists()
    capsys.readouterr()
    assert main(["run", "no-such-scenario", "--out", "o"]) == 2
    assert "no-such-scenario: no scenario definition of this name" in capsys.readouterr().err
    assert main(["list"]) == 0
    assert "split-digits" in capsys.readouterr().out
