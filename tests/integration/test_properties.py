"""Property: any scenario/strategy definition and overrides give a clean run or exit 2 — never another exception.

Hypothesis draws definitions from the real field names with values of every kind (right and wrong types,
negative, huge, non-finite, unknown names) and `--set` overrides, runs `clproto run` in-process, and checks:
exit 0, or exit 2 with a one-line named error and nothing written; exit 1 only when a run failed with a
named error (a ConfigError such as a diverged loss), recorded in error.txt.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
import tempfile
from pathlib import Path

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from clproto.cli import main  # noqa: E402
from clproto.scenarios.config import ScenarioConfig  # noqa: E402
from clproto.strategies import REGISTRY  # noqa: E402

SCENARIO_FIELDS = [f.name for f in dataclasses.fields(ScenarioConfig)]
IMPLEMENTATIONS = ["nmc", "teen", "finetune", "joint", "prd", "no-such-strategy"]


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "inf" if v == math.inf else "-inf" if v == -math.inf else "nan" if v != v else repr(v)
    if isinstance(v, (int, str)):
        return json.dumps(v) if isinstance(v, str) else str(v)
    return "[" + ", ".join(toml_value(x) for x in v) + "]"


def toml_table(name: str, data: dict, sub: dict | None = None) -> str:
    lines = [f"[{name}]"] + [f"{k} = {toml_value(v)}" for k, v in data.items()]
    if sub is not None:
        lines += [f"[{name}.params]"] + [f"{k} = {toml_value(v)}" for k, v in sub.items()]
    return "\n".join(lines) + "\n"


small_ints = st.integers(min_value=-3, max_value=12)
values = st.one_of(small_ints, st.sampled_from([0, 1, 2, 5, 10, 2**40]),
                   st.floats(allow_nan=True, allow_infinity=True, width=32),
                   st.sampled_from(["", "random", "listed", "x", "../up", "euclidean", "cosine", "digits"]),
                   st.booleans(), st.lists(small_ints, max_size=4))

scenario_fields = st.fixed_dictionaries(
    {"name": st.sampled_from(["p"] * 12 + ["p-1", "../p", "", "p q", ".p"]),
     "dataset": st.sampled_from(["digits"] * 12 + ["nope", "imagefolder:missing.zip", 3])},
    optional={
        "kind": st.sampled_from(["class-incremental", "few-shot", "other", 1]),
        "class_order": st.one_of(st.sampled_from(["random", "listed", "bogus"]), st.just(list(range(10))[::-1]),
                                 st.lists(small_ints, max_size=11)),
        "increment": small_ints, "initial_increment": small_ints, "increments": st.lists(small_ints, max_size=6),
        "base_classes": small_ints, "ways": small_ints, "shots": small_ints, "sessions": small_ints,
        "train_per_class": st.sampled_from([-1, 0, 1, 3, 8, 5.5, "3"]),
        "test_per_class": st.sampled_from([-1, 0, 1, 4, "x"]),
    })


def params_for(impl: str):
    if impl not in REGISTRY:
        return st.dictionaries(st.sampled_from(["a", "b"]), values, max_size=2)
    fields = [f.name for f in dataclasses.fields(REGISTRY.get(impl).cls.Config)]
    budget = {"epochs": st.sampled_from([-1, 0, 1, 1.5]), "batch_size": st.sampled_from([0, 1, 8, 16]),
              "architecture": st.sampled_from(["convnet-small", "convnet-small", "nope"]),
              "lr": st.sampled_from([0.05, 0.0, -1.0, 1e30, math.inf, math.nan])}
    small = {"architecture": "convnet-small", "epochs": 1, "batch_size": 16, "flip": False} if "epochs" in fields else {}
    return st.dictionaries(st.sampled_from(fields + ["not_a_param"]),
                           st.one_of(values, *budget.values()), max_size=3).map(lambda d: {**small, **d})


strategies_ = st.sampled_from(IMPLEMENTATIONS).flatmap(lambda impl: st.tuples(
    st.fixed_dictionaries({"name": st.sampled_from(["s"] * 8 + ["s.2", "s/x", "@s"]), "implementation": st.just(impl)},
                          optional={"backbone": st.sampled_from(["pixels", "nope:x", "torchscript:absent.pt"])}),
    params_for(impl)))

overrides = st.lists(st.one_of(
    st.builds(lambda k, v: f"scenario.{k}={toml_value(v)}", st.sampled_from(SCENARIO_FIELDS), values),
    st.builds(lambda k, v: f"strategy.params.{k}={toml_value(v)}", st.sampled_from(["metric", "lr", "alpha", "nope"]),
              values),
    st.sampled_from(["scenario.train_per_class=4", "garbage", "a.b", "strategy.backbone=pixels", "x.y=1"])),
    max_size=2).map(lambda sets: [s for s in sets if s not in ("garbage", "a.b")] if len(sets) > 1 else sets)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(scenario=scenario_fields, strategy=strategies_, sets=overrides,
       seeds=st.lists(st.sampled_from([0, 0, 0, 1, 1, -1]), min_size=1, max_size=2))
def test_any_definition_runs_cleanly_or_exits_2(scenario, strategy, sets, seeds):
    tmp = Path(tempfile.mkdtemp(prefix="clproto-prop-"))
    try:
        # keep the runs small whatever the draw: at most 8 training images per class unless drawn otherwise
        scenario = {"train_per_class": 8, "test_per_class": 4, "increment": 5, **scenario}
        (tmp / "sc.toml").write_text(toml_table("scenario", scenario))
        st_fields, params = strategy
        (tmp / "st.toml").write_text(toml_table("strategy", st_fields, params))
        argv = ["run", str(tmp / "sc.toml"), str(tmp / "st.toml"), "--seeds", *map(str, seeds),
                "--out", str(tmp / "out"), "--no-progress", "--cache-dir", str(tmp / "cache"),
                *[a for s in sets for a in ("--set", s)]]
        import contextlib
        import io

        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(argv)  # any exception other than ConfigError escapes here and fails the test
        text = err.getvalue()
        assert code in (0, 1, 2), code
        if code == 2:
            assert "clproto: error:" in text and "Traceback" not in text
            assert not list(tmp.rglob("results.json")) and not list(tmp.rglob("config.json"))
        if code == 1:  # a run failed: only with a named error (e.g. a diverged loss), recorded in error.txt
            errors = [p.read_text() for p in tmp.rglob("error.txt")]
            assert errors and all("ConfigError" in e or "DivergedError" in e for e in errors), errors
        assert not [p for p in tmp.rglob("*") if p.name.endswith(".tmp")]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
