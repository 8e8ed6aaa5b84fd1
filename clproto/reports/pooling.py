"""Which results a report may pool: one configuration per row label, each seed counted once.

A table cell is the mean ± std over the seeds of one (scenario, strategy) row. Those results must
differ in nothing but the seed, so a row is identified by its resolved configuration
(:func:`clproto.runner.resolved_config`: the scenario's and the strategy's fields and the seed)
*without the seed* — :func:`identity`. (The ``config_hash`` stored with every result includes the
seed, so it names one run, not one row.)

:func:`pool` checks a set of results before any table is built:

* the same (scenario, strategy) name with two configurations is a :class:`ConfigError` naming one
  folder of each and the fields that differ (``strategy.params.alpha: 0.5 vs 0.25``), or, with
  ``split_configs``, one row per configuration labelled by those fields (``teen@alpha=0.25``; an
  ``#<hash>`` suffix when the fields make no short distinct label);
* the same configuration and seed twice (a folder given twice, a copy) is kept once, with a note
  naming the files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional, Sequence

from clproto.config import run_hash
from clproto.errors import ConfigError
from clproto.evaluation.results import RunResult

MAX_SUFFIX = 40  # longest field-based label suffix; longer ones become "#<hash>"
_ABSENT = object()  # a field one configuration has and the other has not


@dataclass(frozen=True)
class Pooled:
    results: list  # RunResult, each (scenario, strategy label, seed) once; split rows relabelled
    notes: list  # one line per duplicate dropped (or per name split into rows)


# --------------------------------------------------------------------------- configurations
def without_seed(config: dict) -> dict:
    """The resolved configuration minus the run's seed: what every result of one row shares."""
    return {k: v for k, v in config.items() if k != "seed"}


def identity(result: RunResult) -> str:
    """Hash of the configuration without the seed (and without free-text descriptions, as ``run_hash``)."""
    return run_hash(without_seed(result.config))


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"strategy.params.alpha": 0.5, ...}``; lists and scalars are leaves."""
    if not isinstance(config, dict):
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, path))
        else:
            out[path] = value
    return out


def differing_fields(configs: Sequence[dict]) -> list[str]:
    """Dotted paths whose value is not the same in every configuration (sorted)."""
    flat = [flatten(c) for c in configs]
    keys = sorted({k for f in flat for k in f})
    return [k for k in keys if len({_show(f.get(k, _ABSENT)) for f in flat}) > 1]


def _show(value: Any) -> str:
    """A value as JSON (strings quoted), for messages."""
    if value is _ABSENT:
        return "(absent)"
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _label_value(value: Any) -> str:
    """A value as part of a row label: strings bare (as ``sweep --vary`` names), the rest as JSON."""
    if value is _ABSENT:
        return "absent"
    return value if isinstance(value, str) else _show(value)


def describe_difference(a: dict, b: dict) -> str:
    """``"strategy.params.alpha: 0.5 vs 0.25, scenario.shots: 5 vs 1"`` for two configurations."""
    fa, fb = flatten(a), flatten(b)
    return ", ".join(f"{k}: {_show(fa.get(k, _ABSENT))} vs {_show(fb.get(k, _ABSENT))}"
                     for k in differing_fields([a, b]))


# --------------------------------------------------------------------------- pooling
def _where(result: RunResult, path: Optional[Path]) -> str:
    return str(path.parent) if path is not None else f"the seed-{result.seed} run (config hash {result.config_hash})"


def _split_labels(name: str, configs: list[dict], ids: list[str]) -> list[str]:
    """One distinct label per configuration: ``name@field=value,...`` or ``name#<hash>``."""
    fields = differing_fields(configs)
    last = [f.rsplit(".", 1)[-1] for f in fields]
    short = [s if last.count(s) == 1 else f for s, f in zip(last, fields)]  # full path where the last part is ambiguous
    sep = "," if "@" in name else "@"
    suffixes = []
    for c in configs:
        flat = flatten(c)
        suffixes.append(",".join(f"{s}={_label_value(flat.get(f, _ABSENT))}" for s, f in zip(short, fields)))
    if len(set(suffixes)) < len(suffixes) or any(len(s) > MAX_SUFFIX or not s for s in suffixes):
        return [f"{name}#{i[:8]}" for i in ids]
    return [f"{name}{sep}{s}" for s in suffixes]


def pool(results: Sequence[RunResult], paths: Optional[Sequence[Path]] = None, *,
         split_configs: bool = False) -> Pooled:
    """Check that each (scenario, strategy) name has one configuration and each seed one result.

    ``paths``: the results.json of each result (named in messages). Raises :class:`ConfigError` when a
    name has two configurations, unless ``split_configs``; duplicates are dropped with a note.
    """
    paths = list(paths) if paths is not None else [None] * len(results)
    rows: dict[tuple[str, str], dict[str, list[tuple[RunResult, Optional[Path]]]]] = {}
    for r, p in zip(results, paths):
        if not isinstance(r.config, dict):
            raise ConfigError("the resolved configuration `config` is not a table", where=str(p or r.strategy),
                              value=type(r.config).__name__)
        rows.setdefault((r.scenario, r.strategy), {}).setdefault(identity(r), []).append((r, p))

    notes: list[str] = []
    labelled: dict[tuple[str, str], list[tuple[RunResult, Optional[Path]]]] = {}
    for (scenario, strategy), by_id in rows.items():
        ids = list(by_id)
        if len(ids) == 1:
            labelled.setdefault((scenario, strategy), []).extend(by_id[ids[0]])
            continue
        firsts = [by_id[i][0] for i in ids]
        configs = [without_seed(r.config) for r, _ in firsts]
        if not split_configs:
            (ra, pa), (rb, pb) = firsts[0], firsts[1]
            count = f"{len(ids)} configurations, e.g. " if len(ids) > 2 else ""
            raise ConfigError(
                f"results named {scenario} / {strategy} have different configurations ({count}"
                f"{_where(ra, pa)} and {_where(rb, pb)}: {describe_difference(configs[0], configs[1])})",
                expected="one configuration per name: report only one of them, or give --split-configs for one "
                         "row per configuration")
        labels = _split_labels(strategy, configs, ids)
        for label, i in zip(labels, ids):
            labelled.setdefault((scenario, label), []).extend((replace(r, strategy=label), p) for r, p in by_id[i])
        notes.append(f"{scenario} / {strategy}: {len(ids)} configurations, shown as rows {', '.join(labels)}")

    out: list[RunResult] = []
    for (scenario, label), items in labelled.items():
        if len({identity(r) for r, _ in items}) > 1:  # a split label that is also another row's own name
            raise ConfigError(f"the row label {label} of scenario {scenario} would name two configurations "
                              f"(a split row and a strategy of that name)",
                              expected="distinct strategy names (rename one definition)")
        by_seed: dict[int, list[tuple[RunResult, Optional[Path]]]] = {}
        for r, p in items:
            by_seed.setdefault(r.seed, []).append((r, p))
        for seed, same in sorted(by_seed.items()):
            out.append(same[0][0])
            if len(same) > 1:
                notes.append(_duplicate_note(scenario, label, seed, same))
    return Pooled(out, notes)


def _duplicate_note(scenario: str, label: str, seed: int, same: list[tuple[RunResult, Optional[Path]]]) -> str:
    where = [str(p) if p is not None else f"result {k + 1}" for k, (_, p) in enumerate(same)]
    files = " and ".join(dict.fromkeys(where))
    how = "read twice" if len(set(where)) == 1 else "same configuration"
    text = f"duplicate result of {scenario} / {label} seed {seed} ({how}): {files}; counted once"
    first = same[0][0]
    if any(r.accuracy_matrix != first.accuracy_matrix for r, _ in same[1:]):
        finals = " vs ".join(f"{100 * r.metrics.final_accuracy:.2f}" for r, _ in same)
        text += f" — their numbers differ (final acc. {finals}); the first is used"
    return text
