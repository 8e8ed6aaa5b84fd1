"""The run context: progress and listeners reach the training loops, the caller's RNG is left alone, numbers unchanged.

The recorded numbers below were produced by the code before the RunContext / one-training-loop refactor
(main at 094bc83): the refactor must reproduce them (matrices exactly, losses to float rounding).
"""

from __future__ import annotations

import argparse
import os

import pytest
import torch

from clproto.config import strategy_from_dict
from clproto.context import RunContext
from clproto.errors import ConfigError
from clproto.scenarios import ScenarioConfig
from clproto.strategies import REGISTRY, FineTune, NMC
from clproto.strategies.base import accepts_context
from conftest import runner_on

TINY = dict(architecture="convnet-small", batch_size=16, lr=0.05, crop_padding=1, flip=False)
SCENARIO = ScenarioConfig(name="tiny-ci", dataset="tiny", increment=2)
FINETUNE = strategy_from_dict({"name": "finetune-1ep", "implementation": "finetune", "params": {**TINY, "epochs": 1}},
                              REGISTRY)


# --------------------------------------------------------------------------- the context itself
@pytest.mark.parametrize("field,value", [("device", "gpu"), ("device", "cuda:x"), ("precision", "fp8"), ("threads", 0), ("seed", 1.5), ("deterministic", 1),
                                         ("listeners", [print]), ("listeners", ("not callable",))])
def test_bad_context_is_config_error(field, value):
    with pytest.raises(ConfigError, match=field):
        RunContext(**{field: value})


def test_strategies_that_take_a_context_are_told_apart():
    assert accepts_context(FineTune) and not accepts_context(NMC)

    class Plugin:  # the documented protocol before the run context: still built, without one
        def __init__(self, *, config, num_classes, seed=0):
            pass

    assert not accepts_context(Plugin)


# --------------------------------------------------------------------------- progress reaches the loop
class _Bar:
    """Stands in for tqdm: says on stderr that a bar was opened (tqdm itself waits a second before drawing)."""

    def __init__(self, iterable, *, desc, **kwargs):
        import sys

        print(f"BAR {desc}", file=sys.stderr)
        self.iterable = iterable

    def __iter__(self):
        return iter(self.iterable)


@pytest.mark.parametrize("progress", [True, False])
def test_runner_progress_reaches_the_training_loop(progress, tiny_dataset, monkeypatch, capfd):
    import tqdm.auto

    monkeypatch.setenv("CLPROTO_PROGRESS", "1")  # the tests' default is "0"
    monkeypatch.setattr(tqdm.auto, "tqdm", _Bar)
    runner = runner_on(tiny_dataset)
    runner.progress = progress
    runner.run(SCENARIO, FINETUNE, seed=0)
    err = capfd.readouterr().err
    assert ("BAR finetune exp 0" in err) is progress, err


def test_runner_listeners_see_every_training_event(tiny_dataset):
    events = []
    runner = runner_on(tiny_dataset)
    runner.listeners = (events.append,)
    runner.run(SCENARIO, FINETUNE, seed=0)
    kinds = [(e.kind, e.experience) for e in events if e.kind != "step"]
    assert kinds == [("epoch_start", t) if i % 2 == 0 else ("epoch_end", t) for t in range(3) for i in range(2)]
    steps = [e for e in events if e.kind == "step"]
    assert len(steps) == 6 and all(e.scores is not None for e in steps)  # 2 x 12 samples, batch 16: two steps each
    assert events[0].lr == TINY["lr"]  # cosine schedule, epoch 0: the initial rate


def test_cli_no_progress_is_a_value_not_an_environment_write(monkeypatch):
    from clproto.cli_common import setup

    monkeypatch.delenv("CLPROTO_PROGRESS")
    assert setup(argparse.Namespace(no_progress=True, threads=None)) is False
    assert "CLPROTO_PROGRESS" not in os.environ
    args = argparse.Namespace(no_progress=False, threads=None)
    assert setup(args) is True
    monkeypatch.setenv("CLPROTO_PROGRESS", "0")  # the documented variable, read at the edge
    assert setup(args) is False


# --------------------------------------------------------------------------- the caller's RNG, recorded numbers
def test_a_run_leaves_the_callers_rng_alone_and_reproduces_the_recorded_numbers(tiny_dataset):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    runner = runner_on(tiny_dataset)
    result = runner.run(SCENARIO, FINETUNE, seed=0)
    assert torch.equal(torch.get_rng_state(), before)
    # recorded from the code before the refactor (main 094bc83)
    assert result.accuracy_matrix == [[0.5, None, None], [0.0, 0.5833333333333334, None], [0.0, 0.0, 0.5]]
    assert result.task_accuracy_matrix == [[0.5, None, None], [0.5, 0.5833333333333334, None],
                                           [0.5, 0.9166666666666666, 0.5]]
    losses = [r[4] for r in runner.last_log.rows if r[0] == "loss"]
    assert losses == pytest.approx([0.7080597480138143, 1.4027386903762817, 1.6548499663670857], rel=1e-5)
    runner.check(SCENARIO, FINETUNE, 0)
    assert torch.equal(torch.get_rng_state(), before)
