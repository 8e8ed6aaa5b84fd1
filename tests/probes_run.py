"""Trust probes of `clproto run` / `sweep`: definitions, names, seeds, output folders, checkpoints, failures."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from probes import Probe

ROOT = Path(__file__).resolve().parents[1]
NMC_PIXELS = ROOT / "strategies" / "nmc-pixels.toml"

SCENARIO = ('[scenario]\nname = "sc"\ndataset = "digits"\nincrement = 2\n'
            'train_per_class = 20\ntest_per_class = 10\n')
FINETUNE = ('[strategy]\nname = "ft"\nimplementation = "finetune"\n[strategy.params]\n'
            'architecture = "convnet-small"\nepochs = 1\nbatch_size = 16\nlr = 0.05\ncrop_padding = 1\nflip = false\n')

# A plugin: a strategy whose constructor rejects a parameter, one that raises while fitting, and a duplicate name.
PLUGIN = '''
from dataclasses import dataclass
from clproto.strategies.nmc import NMC, NMCConfig


@dataclass(frozen=True)
class PickyConfig(NMCConfig):
    k: int = 1  # must be odd (checked by the constructor, as a strategy's own check would be)
    fail_at: int = -1  # experience at which fit_experience raises


class Picky(NMC):
    """NMC with a constructor that validates `k`, and an optional failure (test only)."""

    Config = PickyConfig

    def __init__(self, *, config, num_classes, seed=0):
        if config.k % 2 == 0:
            raise ValueError(f"k must be odd, got {config.k}")
        super().__init__(config=config, num_classes=num_classes, seed=seed)

    def fit_experience(self, experience):
        if experience.index == self.config.fail_at:
            raise RuntimeError(f"boom at experience {experience.index}")
        super().fit_experience(experience)


def register(registry):
    registry.register("picky", Picky)
'''
DUPLICATE_PLUGIN = '''
from clproto.strategies.nmc import NMC


def register(registry):
    registry.register("nmc", NMC)
'''


def _write(path: Path, text: str | bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return str(path)


def _run(tmp: Path, *extra: str, scenario: str | None = None, strategies: tuple[str, ...] = ()) -> list[str]:
    sc = scenario or _write(tmp / "sc.toml", SCENARIO)
    return ["run", sc, *(strategies or (str(NMC_PIXELS),)), "--seeds", "0", "--out", str(tmp / "out"),
            "--no-progress", *extra]


def _strategy(tmp: Path, name: str, text: str) -> str:
    return _write(tmp / name, text)


# --------------------------------------------------------------------------- definitions
def lr_inf(tmp):
    return _run(tmp, strategies=(_strategy(tmp, "ft.toml", FINETUNE.replace("lr = 0.05", "lr = inf")),))


def not_utf8(tmp):
    return _run(tmp, strategies=(_strategy(tmp, "latin1.toml", '[strategy]\nname = "caf\xe9"\nimplementation = "nmc"\n'
                                           .encode("latin-1")),))


def array_of_tables(tmp):
    return _run(tmp, scenario=_write(tmp / "arr.toml", SCENARIO.replace("[scenario]", "[[scenario]]")))


def folder_as_definition(tmp):
    (tmp / "defs").mkdir()
    return _run(tmp, strategies=(str(tmp / "defs"),))


def two_scenarios(tmp):
    return _run(tmp, strategies=(_write(tmp / "other-scenario.toml", SCENARIO), str(NMC_PIXELS)))


def duplicate_plugin(tmp):
    return _run(tmp, "--plugin", _write(tmp / "dup_plugin.py", DUPLICATE_PLUGIN))


def constructor_rejects(tmp):
    st = _strategy(tmp, "picky.toml", '[strategy]\nname = "picky"\nimplementation = "picky"\n[strategy.params]\nk = 2\n')
    return _run(tmp, "--plugin", _write(tmp / "picky_plugin.py", PLUGIN), strategies=(st,))


# --------------------------------------------------------------------------- names
def name_traversal(tmp):
    return _run(tmp, strategies=(_strategy(tmp, "evil.toml", '[strategy]\nname = "../../x"\nimplementation = "nmc"\n'),))


def name_absolute(tmp):
    return _run(tmp, scenario=_write(tmp / "abs.toml", SCENARIO.replace('name = "sc"', 'name = "/tmp/abs"')))


def name_leading_dot(tmp):
    return _run(tmp, strategies=(_strategy(tmp, "dot.toml", '[strategy]\nname = ".hidden"\nimplementation = "nmc"\n'),))


def set_renames(tmp):
    return _run(tmp, "--set", "strategy.params.metric=cosine")


def check_set_renames(tmp):
    assert (tmp / "out/sc/nmc-pixels@metric=cosine/seed0/results.json").exists()
    assert not (tmp / "out/sc/nmc-pixels").exists()


# --------------------------------------------------------------------------- seeds and resources
def seeds(*values: str):
    return lambda tmp: [*_run(tmp)[:3], "--seeds", *values, "--out", str(tmp / "out"), "--no-progress"]


def threads_negative(tmp):
    return _run(tmp, "--threads", "-1")


def jobs_zero(tmp):
    return ["sweep", "--scenario", _write(tmp / "sc.toml", SCENARIO), "--strategy", str(NMC_PIXELS),
            "--out", str(tmp / "out"), "--jobs", "0", "--no-progress"]


def out_is_file(tmp):
    argv = _run(tmp)
    _write(tmp / "out", "not a folder")
    return argv


def out_below_a_file(tmp):
    _write(tmp / "file", "x")
    return [*_run(tmp)[:-1], "--out", str(tmp / "file" / "out"), "--no-progress"]


# --------------------------------------------------------------------------- an existing --out
def _first_run(tmp, text: str) -> list[str]:
    from clproto.cli import main

    st = _strategy(tmp, "mine.toml", text)
    assert main(_run(tmp, strategies=(st,))) == 0
    return _run(tmp, strategies=(st,))


MINE = '[strategy]\nname = "mine"\nimplementation = "nmc"\n[strategy.params]\nmetric = "euclidean"\n'


def changed_definition(tmp):
    argv = _first_run(tmp, MINE)
    _strategy(tmp, "mine.toml", MINE.replace("euclidean", "cosine"))  # same name, edited file
    return argv


def changed_definition_overwrite(tmp):
    return [*changed_definition(tmp), "--overwrite"]


def check_overwritten(tmp):
    res = json.loads((tmp / "out/sc/mine/seed0/results.json").read_text())
    assert res["config"]["strategy"]["params"]["metric"] == "cosine"


def same_again(tmp):
    return _first_run(tmp, MINE)


def second_scenario(tmp):
    _first_run(tmp, MINE)
    sc2 = _write(tmp / "sc2.toml", SCENARIO.replace('name = "sc"', 'name = "sc2"'))
    return _run(tmp, scenario=sc2, strategies=(str(tmp / "mine.toml"),))


def check_report_covers_both(tmp):
    import pandas as pd

    table = pd.read_csv(tmp / "out/report/tables.csv")
    assert {"sc", "sc2"} <= set(table["column"]), table  # one column per scenario


def one_run_fails(tmp):
    plugin = _write(tmp / "picky_plugin.py", PLUGIN)
    boom = _strategy(tmp, "boom.toml", '[strategy]\nname = "boom"\nimplementation = "picky"\n[strategy.params]\nfail_at = 1\n')
    return _run(tmp, "--plugin", plugin, strategies=(boom, str(NMC_PIXELS)))


def check_one_failed(tmp):
    assert "boom at experience 1" in (tmp / "out/sc/boom/seed0/error.txt").read_text()
    assert (tmp / "out/sc/nmc-pixels/seed0/results.json").exists()
    assert "nmc-pixels" in (tmp / "out/report/tables.md").read_text()


# --------------------------------------------------------------------------- checkpoints
class _Payload:
    """Pickles to a call of os.system: what a crafted checkpoint would run under weights_only=False."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


def crafted_checkpoint(tmp):
    ckpt = tmp / "out/sc/ft/seed0/checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"config_hash": "x", "strategy": _Payload(tmp / "PWNED")}, ckpt)
    return _run(tmp, strategies=(_strategy(tmp, "ft.toml", FINETUNE),))


def truncated_checkpoint(tmp):
    ckpt = tmp / "out/sc/ft/seed0/checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    buf = tmp / "full.pt"
    torch.save({"config_hash": "x", "strategy": {"w": torch.zeros(100)}}, buf)
    ckpt.write_bytes(buf.read_bytes()[:200])
    buf.unlink()
    return _run(tmp, strategies=(_strategy(tmp, "ft.toml", FINETUNE),))


def check_not_pwned(tmp):
    assert not (tmp / "PWNED").exists(), "a crafted checkpoint ran code"
    assert (tmp / "out/sc/ft/seed0/results.json").exists() and not (tmp / "out/sc/ft/seed0/checkpoint.pt").exists()


def diverges(tmp):
    return _run(tmp, strategies=(_strategy(tmp, "ft.toml", FINETUNE.replace("lr = 0.05", "lr = 1e30")),))


def check_diverged(tmp):
    folder = tmp / "out/sc/ft/seed0"
    assert "diverged" in (folder / "error.txt").read_text() and not (folder / "results.json").exists()


PROBES = [
    Probe("lr-inf", lr_inf, says=("ft.toml", "params.lr", "inf")),
    Probe("definition-not-utf8", not_utf8, says=("latin1.toml", "UTF-8", "line 2")),
    Probe("scenario-array-of-tables", array_of_tables, says=("arr.toml", "[[scenario]]")),
    Probe("definition-is-a-folder", folder_as_definition, says=("defs", "folder")),
    Probe("run-two-scenarios", two_scenarios, says=("other-scenario.toml", "clproto sweep")),
    Probe("plugin-duplicate-name", duplicate_plugin, says=("dup_plugin.py", "'nmc'", "already registered")),
    Probe("strategy-constructor-rejects", constructor_rejects, says=("picky.toml", "k must be odd")),
    Probe("name-traversal", name_traversal, says=("evil.toml", "'name'", "../../x")),
    Probe("name-absolute", name_absolute, says=("abs.toml", "'name'", "/tmp/abs")),
    Probe("name-leading-dot", name_leading_dot, says=("dot.toml", ".hidden")),
    Probe("run-set-renames", set_renames, code=0, check=check_set_renames),
    Probe("seed-negative", seeds("-1"), says=("--seeds", "-1")),
    Probe("seed-beyond-2-63", seeds(str(2**63)), says=("--seeds", str(2**63))),
    Probe("seeds-duplicate", seeds("0", "0", "1"), code=0, prints=("seed(s) 0 given more than once",)),
    Probe("threads-negative", threads_negative, says=("--threads", "-1")),
    Probe("jobs-zero", jobs_zero, says=("--jobs", "0")),
    Probe("out-is-a-file", out_is_file, says=("--out", "not a folder")),
    Probe("out-below-a-file", out_below_a_file, says=("--out", "is a file")),
    Probe("out-holds-another-config", changed_definition, allow_results=True,
          says=("results.json", "strategy.params.metric", '"euclidean" vs "cosine"',
                "--overwrite")),
    Probe("out-holds-another-config-overwrite", changed_definition_overwrite, code=0, check=check_overwritten),
    Probe("out-same-config-skips", same_again, code=0, prints=("1 already finished",)),
    Probe("out-report-covers-every-run", second_scenario, code=0, check=check_report_covers_both),
    Probe("one-run-fails-others-finish", one_run_fails, code=1, prints=("1 run(s) failed", "boom at experience 1"),
          check=check_one_failed),
    Probe("checkpoint-crafted-pickle", crafted_checkpoint, code=0, prints=("discarded an unreadable checkpoint",),
          check=check_not_pwned),
    Probe("checkpoint-truncated", truncated_checkpoint, code=0, prints=("discarded an unreadable checkpoint",),
          check=check_not_pwned),
    Probe("training-diverges", diverges, code=1, prints=("ft.toml", "diverged"), check=check_diverged),
]
