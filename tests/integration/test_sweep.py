"""Sweeps: grid expansion, bad input before any run, resume after kill -9, failures recorded, Ray backend."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clproto.config import load_strategy, named_scenario, parse_override
from clproto.errors import ConfigError
from clproto.evaluation.results import RunResult
from clproto.plugins import load_plugins
from clproto.runner import Runner
from clproto.sweep.backends import LocalBackend, RayBackend, check_address
from clproto.sweep.driver import run_sweep
from clproto.sweep.grid import GridConfig, SweepConfig, expand_grid, load_sweep
from clproto.sweep.plan import plan
from clproto.sweep.tasks import WorkerSettings, worker_settings

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "scenarios" / "split-digits.toml"
NMC_PIXELS = ROOT / "strategies" / "nmc-pixels.toml"

# A plugin with a slow strategy (so a sweep can be killed mid-way) and one that raises.
PLUGIN = '''
import os
import time
from dataclasses import dataclass

from clproto.strategies.nmc import NMC, NMCConfig


@dataclass(frozen=True)
class SleepyConfig(NMCConfig):
    sleep: float = 0.0  # seconds slept before each experience
    fail_at: int = -1  # experience index at which fit_experience raises (-1: never)
    die_seed: int = -1  # run seed whose worker process exits hard at experience 1 (-1: never)


class Sleepy(NMC):
    """NMC that sleeps, and optionally raises or kills its process, in fit_experience (test only)."""

    Config = SleepyConfig

    def __init__(self, *, config, num_classes, seed=0):
        super().__init__(config=config, num_classes=num_classes, seed=seed)
        self.seed = seed

    def fit_experience(self, experience):
        time.sleep(self.config.sleep)
        if experience.index == 1 and self.seed == self.config.die_seed:
            os._exit(3)  # as a segfault or an out-of-memory kill would
        if experience.index == self.config.fail_at:
            raise RuntimeError(f"boom at experience {experience.index}")
        super().fit_experience(experience)


def register(registry):
    registry.register("sleepy", Sleepy)
'''


@pytest.fixture
def plugin(tmp_path) -> dict:
    """Plugin file + strategy definitions: sleepy (slow) and boom (raises at experience 1)."""
    (tmp_path / "sweep_test_plugin.py").write_text(PLUGIN)
    (tmp_path / "sleepy.toml").write_text('[strategy]\nname = "sleepy"\nimplementation = "sleepy"\n'
                                          '[strategy.params]\nsleep = 0.25\n')
    (tmp_path / "boom.toml").write_text('[strategy]\nname = "boom"\nimplementation = "sleepy"\n'
                                        '[strategy.params]\nfail_at = 1\n')
    path = str(tmp_path / "sweep_test_plugin.py")
    return {"path": path, "registry": load_plugins([path]), "dir": tmp_path}


def _grid(**kw) -> GridConfig:
    return GridConfig(scenarios=kw.pop("scenarios", [str(DIGITS)]), strategies=kw.pop("strategies", [str(NMC_PIXELS)]), **kw)


# --------------------------------------------------------------------------- grid expansion
def test_grid_is_the_cross_product_with_vary_renaming(plugin):
    grid = _grid(strategies=[str(NMC_PIXELS), str(plugin["dir"] / "sleepy.toml")], seeds=[0, 1, 2],
                 vary={"strategy.params.metric": ["euclidean", "cosine"], "scenario.train_per_class": [5, 10]})
    specs = expand_grid(SweepConfig(), [grid], registry=plugin["registry"])
    assert len(specs) == 2 * 3 * 2 * 2  # strategies x seeds x metric x train_per_class
    names = {(s.scenario.name, s.strategy.name) for s in specs}
    assert ("split-digits@train_per_class=5", "nmc-pixels") in names  # euclidean is nmc-pixels' own value
    assert ("split-digits@train_per_class=10", "sleepy@metric=cosine") in names
    assert len({s.config_hash for s in specs}) == len(specs)
    one = next(s for s in specs if s.strategy.name == "nmc-pixels@metric=cosine" and s.seed == 2)
    assert one.config["strategy"]["params"]["metric"] == "cosine" and one.config["seed"] == 2
    assert one.config["scenario"]["train_per_class"] in (5, 10)


def test_a_strategy_renamed_by_override_is_still_addressed_by_its_defined_name(plugin):
    grid = _grid(set=["nmc-pixels.name=nmc-renamed", "nmc-pixels.params.metric=cosine"], seeds=[0])
    [spec] = expand_grid(SweepConfig(), [grid], registry=plugin["registry"])
    assert spec.strategy.name == "nmc-renamed" and spec.config["strategy"]["params"]["metric"] == "cosine"
    with pytest.raises(ConfigError, match="unknown section"):
        expand_grid(SweepConfig(), [_grid(set=["nmc-other.params.metric=cosine"])], registry=plugin["registry"])


def test_runs_identical_across_grids_are_deduplicated(plugin):
    specs = expand_grid(SweepConfig(seeds=[0, 1]), [_grid(), _grid(seeds=[1, 2])], registry=plugin["registry"])
    assert sorted(s.seed for s in specs) == [0, 1, 2]


def test_sweep_file_paths_are_relative_to_it(tmp_path, plugin):
    (tmp_path / "sub").mkdir()
    f = tmp_path / "sub" / "s.toml"
    rel = os.path.relpath(DIGITS, f.parent)
    f.write_text(f'[sweep]\nseeds = [3, 4]\nset = ["scenario.train_per_class=7"]\n\n'
                 f'[[grid]]\nscenarios = ["{rel}"]\nstrategies = ["{plugin["dir"] / "boom.toml"}"]\n')
    sweep, grids = load_sweep(f)
    specs = expand_grid(sweep, grids, registry=plugin["registry"], base_dir=f.parent, where=str(f))
    assert [(s.strategy.name, s.seed, s.scenario.train_per_class) for s in specs] == [("boom", 3, 7), ("boom", 4, 7)]


@pytest.mark.parametrize("text, message", [
    ('[[grid]]\nscenarios = ["a.toml"]\nstrategy = ["b.toml"]\n', "field 'grid\\[0\\].strategy': unknown field"),
    ('[sweep]\nseeds = "0"\n', "field 'sweep.seeds': wrong type"),
    ('[sweeps]\n', "unknown table \\[sweeps\\]"),
    ('[[grid]]\nscenarios = ["no/such/file.toml"]\nstrategies = ["b.toml"]\n', "file not found"),
])
def test_bad_sweep_files_name_the_field(tmp_path, text, message, plugin):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=message):
        sweep, grids = load_sweep(f)
        expand_grid(sweep, grids, registry=plugin["registry"], base_dir=tmp_path, where=str(f))


@pytest.mark.parametrize("grids, overrides, message", [
    ([], [], "no grid"),
    ([_grid(strategies=[])], [], "empty list"),
    ([_grid(seeds=[])], ["NO SEEDS"], "empty list"),
    ([_grid(vary={"strategy.params.metric": []})], [], "non-empty list"),
    ([_grid()], ["scenario.no_such_field=1"], "unknown field"),
    ([_grid()], ["strategy.params.no_such_param=1"], "no strategy has this parameter"),
    ([_grid()], ["nosuchstrategy.params.metric=cosine"], "unknown section"),
    ([_grid(vary={"scenario.no_such_field": [1, 2]})], [], "unknown field"),
])
def test_bad_grids_are_config_errors(grids, overrides, message, plugin):
    sweep = SweepConfig(seeds=[] if "NO SEEDS" in overrides else [0])
    overrides = [o for o in overrides if o != "NO SEEDS"]
    with pytest.raises(ConfigError, match=message):
        expand_grid(sweep, grids, registry=plugin["registry"], extra_overrides=overrides)


def test_two_definitions_with_one_name_but_different_configs_collide(tmp_path, plugin):
    other = tmp_path / "other.toml"
    other.write_text(NMC_PIXELS.read_text().replace('metric = "euclidean"', 'metric = "cosine"'))
    with pytest.raises(ConfigError, match="share the folder"):
        expand_grid(SweepConfig(), [_grid(strategies=[str(NMC_PIXELS), str(other)])], registry=plugin["registry"])


def test_output_folder_with_another_configuration_is_refused(tmp_path, plugin):
    specs = expand_grid(SweepConfig(), [_grid()], registry=plugin["registry"])
    folder = specs[0].folder(tmp_path)
    folder.mkdir(parents=True)
    other = json.loads(json.dumps(specs[0].config))
    other["strategy"]["params"]["metric"] = "cosine"
    (folder / "results.json").write_text(json.dumps({"config": other, "config_hash": specs[0].config_hash}))
    with pytest.raises(ConfigError, match=r"different configuration.*strategy.params.metric: \"cosine\" vs \"euclidean\""):
        plan(specs, tmp_path)  # the identity is recomputed from the recorded configuration, not read from the file
    same = json.loads(json.dumps(specs[0].config))
    same["strategy"]["description"] = "edited free text"  # a description is not part of a run's identity
    (folder / "results.json").write_text(json.dumps({"config": same, "config_hash": "an-older-hash-scheme"}))
    assert plan(specs, tmp_path) == ([], specs)  # same configuration: finished, skipped


def test_a_second_sweep_on_the_same_output_folder_is_refused(tmp_path, plugin):
    fcntl = pytest.importorskip("fcntl")
    specs = expand_grid(SweepConfig(), [_grid()], registry=plugin["registry"])
    with open(tmp_path / ".sweep.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running sweep holds it
        with pytest.raises(ConfigError, match="another sweep is running"):
            run_sweep(specs, out=tmp_path, backend=RayBackend(), settings=WorkerSettings(), progress=False,
                      log=lambda s: None)
    assert not list(tmp_path.rglob("*.json"))


def test_unreachable_ray_address_fails_fast():
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match="cannot reach the Ray cluster"):
        check_address("127.0.0.1:1", timeout=2.0)
    with pytest.raises(ConfigError, match="malformed"):
        check_address("no-port-here")
    assert time.perf_counter() - t0 < 10


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    from clproto.cli import main

    out = tmp_path / "out"
    rc = main(["sweep", "--scenario", str(DIGITS), "--strategy", str(NMC_PIXELS), "--set", "scenario.bogus=1",
               "--out", str(out)])
    assert rc == 2 and "bogus" in capsys.readouterr().err
    rc = main(["sweep", "--scenario", str(DIGITS), "--strategy", str(NMC_PIXELS), "--backend", "ray",
               "--address", "127.0.0.1:1", "--out", str(out)])
    assert rc == 2 and "cannot reach the Ray cluster" in capsys.readouterr().err
    assert not out.exists()
    # a definition that only fails when the scenario is built: caught by the prepare step, before any run
    rc = main(["sweep", "--scenario", str(ROOT / "scenarios" / "fscil-digits.toml"), "--strategy", str(NMC_PIXELS),
               "--set", "scenario.shots=500", "--seeds", "0", "1", "--jobs", "1", "--out", str(out), "--no-progress"])
    assert rc == 2 and "fewer than the 500 shots" in capsys.readouterr().err
    assert not list(out.rglob("*.json"))


# --------------------------------------------------------------------------- kill -9 and resume
def _results(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out)): json.loads(p.read_text()) for p in out.rglob("results.json")}


def _wait_group_gone(pgid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_sweep_killed_with_sigkill_resumes_every_run_exactly_once(tmp_path, plugin):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "clproto", "sweep", "--scenario", str(DIGITS),
           "--strategy", str(plugin["dir"] / "sleepy.toml"), str(plugin["dir"] / "boom.toml"),
           "--seeds", "0", "1", "2", "--set", "scenario.train_per_class=20",
           "--plugin", plugin["path"], "--jobs", "2", "--threads", "1", "--out", str(out), "--no-progress"]
    env = {**os.environ, "CLPROTO_PROGRESS": "0"}
    expected = {f"split-digits@train_per_class=20/sleepy/seed{s}" for s in range(3)}  # --set names the scenario
    log = tmp_path / "first.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=fh, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not _results(out) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only: its workers must follow it
        proc.wait(timeout=10)
        assert _wait_group_gone(proc.pid, 15), "worker processes outlived the killed sweep"
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    before = _results(out)
    assert 1 <= len(before) < len(expected), f"the sweep was not killed mid-way:\n{log.read_text()}"
    assert not list(out.rglob("*.tmp"))

    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # the boom runs failed (again): exit 1, sweep completed
    after = _results(out)
    assert set(after) == expected  # every run present exactly once, one folder each, nothing else
    for rel, res in after.items():
        config = json.loads((out / rel / "config.json").read_text())
        assert res["config_hash"] == config["config_hash"]
        assert RunResult.from_dict(res).seen_accuracy  # complete, parseable
        if rel in before:
            assert res == before[rel]  # finished runs were skipped, not redone
    assert not list(out.rglob("*.tmp")) and not list(out.rglob("checkpoint.pt"))
    summary = json.loads((out / "sweep.json").read_text())
    assert sorted(summary["skipped"]) == sorted(f"split-digits@train_per_class=20 / sleepy / seed {r[-1]}" for r in before
                                                if "sleepy" in r)
    assert len(summary["done"]) == len(expected) - len(summary["skipped"])
    assert len(summary["failed"]) == 3 and "boom at experience 1" in summary["failed"][0]["error"]
    for s in range(3):
        error = (out / "split-digits@train_per_class=20" / "boom" / f"seed{s}" / "error.txt").read_text()
        assert "Traceback" in error and "RuntimeError: boom at experience 1" in error
    assert "3 failed" in done.stdout


def test_a_run_that_kills_its_worker_is_isolated_and_recorded(tmp_path, plugin):
    (tmp_path / "die.toml").write_text('[strategy]\nname = "die"\nimplementation = "sleepy"\n'
                                       '[strategy.params]\nsleep = 0.05\ndie_seed = 1\n')
    specs = expand_grid(SweepConfig(seeds=[0, 1, 2]), [_grid(strategies=[str(tmp_path / "die.toml")])],
                        registry=plugin["registry"], extra_overrides=["scenario.train_per_class=20"])
    summary = run_sweep(specs, out=tmp_path / "out", backend=LocalBackend(jobs=2, threads=1), progress=False,
                        settings=worker_settings(plugins=[plugin["path"]], threads=1), log=lambda s: None)
    # seed 1 broke the pool while seed 0 or 2 ran beside it: both were re-run alone, only seed 1 is blamed
    sc = "split-digits@train_per_class=20"  # an override names what it changes
    assert sorted(summary.done) == [f"{sc} / die / seed 0", f"{sc} / die / seed 2"]
    assert [f[0] for f in summary.failed] == [f"{sc} / die / seed 1"]
    assert "worker process died" in (tmp_path / "out" / sc / "die" / "seed1" / "error.txt").read_text()


# --------------------------------------------------------------------------- Ray
def test_ray_local_backend_runs_and_survives_a_failing_run(tmp_path, plugin):
    ray = pytest.importorskip("ray")
    specs = expand_grid(SweepConfig(seeds=[0, 1]), [_grid(strategies=[str(NMC_PIXELS), str(plugin["dir"] / "boom.toml")])],
                        registry=plugin["registry"], extra_overrides=["scenario.train_per_class=20"])
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        summary = run_sweep(specs, out=tmp_path, backend=RayBackend(threads=1), progress=False,
                            settings=worker_settings(plugins=[plugin["path"]], threads=1), log=lambda s: None)
    finally:
        ray.shutdown()
    assert len(summary.done) == 2 and len(summary.failed) == 2 and summary.backend == "ray"
    assert "boom at experience 1" in (tmp_path / "split-digits@train_per_class=20" / "boom" / "seed1" / "error.txt").read_text()
    # the driver wrote what the Ray workers returned; same numbers as an in-process run
    spec = next(s for s in specs if s.strategy.name == "nmc-pixels" and s.seed == 1)
    scenario = named_scenario(DIGITS, [parse_override("scenario.train_per_class=20")])
    local = Runner(progress=False).run(scenario, load_strategy(NMC_PIXELS, plugin["registry"]), seed=1)
    remote = RunResult.load(spec.folder(tmp_path) / "results.json")
    assert remote.config_hash == local.config_hash == spec.config_hash
    assert remote.accuracy_matrix == local.accuracy_matrix
    assert plan(specs, tmp_path)[1] == [s for s in specs if s.strategy.name == "nmc-pixels"]  # failed ones stay to do
