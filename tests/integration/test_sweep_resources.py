"""Per-run resources of a sweep (issue 12): cpus_per_run / gpus_per_run in sweep files and --gpus-per-run, Ray
requesting them (a stand-in Ray, and a local Ray with declared GPUs), the local pool pinning workers to GPUs."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from clproto.errors import ConfigError
from clproto.sweep.backends import LocalBackend, RayBackend
from clproto.sweep.grid import load_sweep
from clproto.sweep.resources import RunResources, local_jobs, pin_worker, resources, visible_gpus
from clproto.sweep.tasks import Outcome, WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "scenarios" / "split-digits.toml"
NMC_PIXELS = ROOT / "strategies" / "nmc-pixels.toml"


def _sweep_file(tmp_path, extra: str) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(f'[sweep]\nseeds = [0]\n{extra}\n\n[[grid]]\nscenarios = ["{DIGITS}"]\nstrategies = ["{NMC_PIXELS}"]\n')
    return path


# --------------------------------------------------------------------------- the sweep file and the command line
def test_sweep_files_state_cpus_and_gpus_per_run(tmp_path):
    sweep, _ = load_sweep(_sweep_file(tmp_path, "cpus_per_run = 2\ngpus_per_run = 0.5"))
    assert (sweep.cpus_per_run, sweep.gpus_per_run) == (2, 0.5)
    assert resources(threads=1, gpus_per_run=None, file_cpus=2, file_gpus=0.5) == RunResources(cpus=2, gpus=0.5)
    # the command line wins over the file
    assert resources(threads=3, gpus_per_run=0.25, file_cpus=2, file_gpus=0.5, threads_given=True) == \
        RunResources(cpus=3, gpus=0.25)
    assert resources(threads=4, gpus_per_run=None) == RunResources(cpus=4, gpus=0.0)
    sweep, _ = load_sweep(_sweep_file(tmp_path, "gpus_per_run = 1"))  # an integer is a number of GPUs too
    assert sweep.gpus_per_run == 1.0


@pytest.mark.parametrize("extra,field", [("gpus_per_run = -1", "sweep.gpus_per_run"),
                                         ("gpus_per_run = 1.5", "sweep.gpus_per_run"),
                                         ("cpus_per_run = 0", "sweep.cpus_per_run")])
def test_bad_resources_in_a_sweep_file_name_the_file_and_field(tmp_path, extra, field):
    path = _sweep_file(tmp_path, extra)
    sweep, _ = load_sweep(path)
    with pytest.raises(ConfigError) as info:
        resources(threads=1, gpus_per_run=None, file_cpus=sweep.cpus_per_run, file_gpus=sweep.gpus_per_run,
                  where=str(path))
    assert info.value.where == str(path) and info.value.field == field


def test_a_wrong_type_is_caught_when_the_file_is_read(tmp_path):
    with pytest.raises(ConfigError, match="gpus_per_run"):
        load_sweep(_sweep_file(tmp_path, 'gpus_per_run = "all"'))


def test_cli_gpus_per_run_without_a_gpu_exits_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    from clproto.cli import main

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, whatever this machine has
    out = tmp_path / "out"
    rc = main(["sweep", "--scenario", str(DIGITS), "--strategy", str(NMC_PIXELS), "--gpus-per-run", "1",
               "--out", str(out), "--no-progress"])
    assert rc == 2 and "no GPU is visible" in capsys.readouterr().err and not out.exists()
    rc = main(["sweep", str(_sweep_file(tmp_path, "gpus_per_run = -2")), "--out", str(out), "--no-progress"])
    assert rc == 2 and "gpus_per_run" in capsys.readouterr().err and not out.exists()


# --------------------------------------------------------------------------- the local pool
def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus() == ["2", "3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert visible_gpus() == []


def test_local_jobs_fit_the_gpus():
    gpus = ["0", "1"]
    assert local_jobs(8, RunResources(gpus=0.0), []) == 8  # CPU runs: as many as asked
    assert local_jobs(8, RunResources(gpus=1.0), gpus) == 2
    assert local_jobs(8, RunResources(gpus=0.5), gpus) == 4
    assert local_jobs(3, RunResources(gpus=0.25), gpus) == 3
    assert local_jobs(8, RunResources(gpus=0.3), gpus) == 6  # floor(2 / 0.3)
    with pytest.raises(ConfigError, match="one GPU"):
        local_jobs(8, RunResources(gpus=2.0), gpus)
    with pytest.raises(ConfigError, match="no GPU is visible"):
        local_jobs(8, RunResources(gpus=1.0), [])


def test_pin_worker_is_round_robin(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert [pin_worker(i, ["4", "6"]) for i in range(5)] == ["4", "6", "4", "6", "4"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "4"
    assert pin_worker(3, []) is None


def _report_device(task, settings) -> Outcome:
    """A task function for the pool: which GPU its worker was given, and which worker it was."""
    return Outcome(status="done", seconds=0.0, error=f"{os.getpid()}:{os.environ.get('CUDA_VISIBLE_DEVICES')}")


def test_local_pool_pins_each_worker_to_one_gpu_round_robin():
    backend = LocalBackend(jobs=2, threads=1, gpus=("5", "7"))
    assert "pinned round-robin to GPU(s) 5,7" in backend.describe()
    backend.start(WorkerSettings())
    try:
        got = [outcome.error for _, outcome in backend.map(_report_device, list(range(8)))]
    finally:
        backend.close()
    by_worker = dict(g.split(":") for g in got)  # pid -> its device: one device per worker
    assert all(len({g.split(":")[1] for g in got if g.startswith(pid + ":")}) == 1 for pid in by_worker)
    assert set(by_worker.values()) <= {"5", "7"}
    assert len(by_worker) < 2 or set(by_worker.values()) == {"5", "7"}  # two workers: two devices
    assert "CUDA_VISIBLE_DEVICES" not in os.environ or os.environ["CUDA_VISIBLE_DEVICES"] not in ("5", "7")


# --------------------------------------------------------------------------- Ray
class Ref:
    """A stand-in object ref: hashable by identity, holding its task's outcome."""

    def __init__(self, value) -> None:
        self.value = value


class FakeRay(types.ModuleType):
    """Just enough of Ray for RayBackend: records what each remote function asked for, runs tasks inline."""

    def __init__(self, gpus: float) -> None:
        super().__init__("ray")
        self.gpus, self.options, self.initialised = gpus, [], False
        self.exceptions = types.SimpleNamespace(RayError=RuntimeError)

    def is_initialized(self):
        return self.initialised

    def init(self, **kwargs):
        self.initialised = True

    def shutdown(self):
        self.initialised = False

    def cluster_resources(self):
        return {"CPU": 4.0, **({"GPU": self.gpus} if self.gpus else {})}

    def put(self, value):
        return value

    def remote(self, **options):
        self.options.append(options)

        def wrap(fn):
            return types.SimpleNamespace(remote=lambda *a: Ref(fn(*a)))
        return wrap

    def wait(self, refs, num_returns=1):
        return refs[:num_returns], refs[num_returns:]

    def get(self, ref):
        return ref.value


def test_ray_backend_requests_cpus_and_gpus_per_run(monkeypatch):
    fake = FakeRay(gpus=1.0)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setitem(sys.modules, "ray.exceptions", fake.exceptions)
    backend = RayBackend(threads=2, gpus_per_run=0.5)
    assert "2 CPU(s), 0.5 GPU(s) per run" in backend.describe()
    backend.start(WorkerSettings())
    got = [o.status for _, o in backend.map(_report_device, [0, 1, 2])]
    backend.close()
    assert got == ["done"] * 3
    assert fake.options == [{"num_cpus": 2, "num_gpus": 0.5, "max_retries": 0}]
    plain = RayBackend(threads=1)
    plain.start(WorkerSettings())
    list(plain.map(_report_device, [0]))
    plain.close()
    assert fake.options[-1]["num_gpus"] == 0.0  # CPU runs ask for no GPU


def test_ray_without_the_gpus_asked_for_is_a_named_error_not_a_hang(monkeypatch):
    fake = FakeRay(gpus=0.0)
    monkeypatch.setitem(sys.modules, "ray", fake)
    with pytest.raises(ConfigError, match="has 0 GPU") as info:
        RayBackend(gpus_per_run=1.0).start(WorkerSettings())
    assert info.value.where == "--gpus-per-run" and not fake.initialised  # the Ray it started was shut down


@pytest.mark.slow  # starting a local Ray takes ~45 s on 2 loaded cores; the stand-in Ray above covers the requests
def test_a_local_ray_with_declared_gpus_pins_each_task_to_one(tmp_path):
    """Real Ray, fake resources: a local Ray told it has 1 GPU runs half-GPU tasks two at a time and gives each
    task CUDA_VISIBLE_DEVICES of that GPU (no CUDA is touched: the tasks only read the variable)."""
    ray = pytest.importorskip("ray")
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module
    ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, logging_level="ERROR")
    try:
        backend = RayBackend(threads=1, gpus_per_run=0.5)
        backend.start(WorkerSettings())
        got = [o.error.split(":")[1] for _, o in backend.map(_report_device, [0, 1])]
        backend.close()
    finally:
        ray.shutdown()
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert got == ["0", "0"]
