"""Every trust probe (tests/probes_*.py): exit code, a message naming what is wrong, nothing partial left."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from clproto.cli import main
from probes import Probe

MODULES = sorted(p.stem for p in Path(__file__).resolve().parents[1].glob("probes_*.py"))  # tests/probes_*.py
PROBES: list[Probe] = [p for m in MODULES for p in importlib.import_module(m).PROBES]


def test_probe_ids_are_unique():
    ids = [p.id for p in PROBES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


@pytest.mark.parametrize("probe", [pytest.param(p, id=p.id, marks=p.marks) for p in PROBES])
def test_probe(probe: Probe, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("CLPROTO_CACHE", str(cache))
    argv = probe.make(tmp_path)
    if probe.patch is not None:
        probe.patch(monkeypatch, tmp_path)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == probe.code, f"exit {code}, expected {probe.code}\nstdout:\n{out}\nstderr:\n{err}"
    for text in probe.says:
        assert text in err, f"stderr does not name {text!r}:\n{err}"
    for text in probe.prints:
        assert text in out + err, f"output does not say {text!r}:\nstdout:\n{out}\nstderr:\n{err}"
    if probe.code == 2:
        assert "Traceback" not in err
        assert err.count("\n") <= 3, f"expected a short named error, got:\n{err}"
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp") or ".tmp." in p.name
                 or p.name.startswith((".tmp-", ".trash-"))]  # atomic files, cache entries being published
    assert not leftovers, f"temporary files left: {leftovers}"
    if probe.code == 2 and not probe.allow_results:
        written = [p for p in tmp_path.rglob("*") if p.name in ("results.json", "config.json")]
        assert not written, f"a refused run wrote {written}"
    if probe.check is not None:
        probe.check(tmp_path)
