"""Run checkpoints: every trained strategy resumes from a weights-only checkpoint with identical numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from clproto.config import load_scenario, load_strategy, parse_override
from clproto.runner import CHECKPOINT, Runner, run_dir
from clproto.strategies import REGISTRY

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = ROOT / "clproto" / "defaults"
SMALL = [parse_override("scenario.train_per_class=20"), parse_override("scenario.test_per_class=10"),
         parse_override("strategy.params.epochs=1")]


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("name", ["finetune-digits", "joint-digits", "prd-digits"])
def test_an_interrupted_run_resumes_from_its_checkpoint_with_the_same_numbers(name, tmp_path, monkeypatch):
    scenario = load_scenario(DEFAULTS / "split-digits.toml", overrides=SMALL)
    strategy = load_strategy(DEFAULTS / "strategies" / f"{name}.toml", REGISTRY, overrides=SMALL)
    whole = Runner(progress=False).run(scenario, strategy, seed=0)

    cls = REGISTRY.get(strategy.config.implementation).cls
    fit = cls.fit_experience

    def fit_then_stop(self, experience):
        if experience.index == 2:
            raise Interrupt  # as a kill would, after the checkpoint of experience 1
        fit(self, experience)

    monkeypatch.setattr(cls, "fit_experience", fit_then_stop)
    with pytest.raises(Interrupt):
        Runner(progress=False).run(scenario, strategy, seed=0, out_dir=tmp_path)
    assert (run_dir(tmp_path, scenario.name, strategy.name, 0) / CHECKPOINT).exists()
    monkeypatch.setattr(cls, "fit_experience", fit)
    resumed = Runner(progress=False).run(scenario, strategy, seed=0, out_dir=tmp_path)
    assert "resumed from checkpoint after experience 1" in resumed.notes
    assert resumed.accuracy_matrix == whole.accuracy_matrix
    assert not (run_dir(tmp_path, scenario.name, strategy.name, 0) / CHECKPOINT).exists()
