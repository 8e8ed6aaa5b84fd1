"""The sweep file schema and its expansion into runs.

A sweep file has an optional ``[sweep]`` table (defaults for every grid) and one or more
``[[grid]]`` tables, each a cross product (fields: :class:`SweepConfig`, :class:`GridConfig`)::

    [sweep]
    seeds = [0, 1, 2, 3, 4]
    set = ["scenario.test_per_class=100"]          # applied to every run
    device = "cuda"                                 # optional: device, precision, deterministic (README:
    precision = "bf16"                              # Devices and precision); the command line's flags win
    gpus_per_run = 0.5                              # optional: GPUs (and cpus_per_run: CPUs) each run asks for

    [[grid]]
    scenarios = ["../scenarios/split-digits.toml"]  # relative to this file
    strategies = ["../strategies/nmc-pixels.toml"]
    vary = { "strategy.params.metric" = ["euclidean", "cosine"] }

A ``vary`` value that changes a strategy (or scenario) renames it ``<name>@<field>=<value>``, so
every run keeps its own folder ``<out>/<scenario>/<strategy>/seed<k>/``.
"""

from __future__ import annotations

import itertools
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from clproto.config import (Override, check_overrides_used, from_mapping, named_scenario, named_strategy,
                            parse_override, read_toml, run_hash)
from clproto.errors import ConfigError
from clproto.strategies.base import Registry
from clproto.sweep.tasks import RunSpec

MAX_SEED = 2**63 - 1


@dataclass(frozen=True)
class GridConfig:
    scenarios: list  # scenario definition files (relative to the sweep file)
    strategies: list  # strategy definition files (relative to the sweep file)
    seeds: list = field(default_factory=list)  # empty: the [sweep] seeds
    set: list = field(default_factory=list)  # fixed overrides "section.key=value" for this grid only
    vary: dict = field(default_factory=dict)  # override key -> list of values; every combination is run
    description: str = ""  # free text


@dataclass(frozen=True)
class SweepConfig:
    seeds: list = field(default_factory=lambda: [0])  # default seeds of every grid
    set: list = field(default_factory=list)  # overrides applied to every grid
    description: str = ""  # free text
    device: str = "cpu"  # auto | cpu | cuda | cuda:N | mps for every run (--device wins)
    precision: str = "fp32"  # fp32 | bf16 | fp16 for every run (--precision wins)
    deterministic: bool = False  # CUDA: deterministic algorithms (--deterministic wins)
    cpus_per_run: Optional[int] = None  # CPUs (torch threads) of each run; None: --threads, else cores / jobs
    gpus_per_run: float = 0.0  # GPUs of each run (a fraction shares one); --gpus-per-run overrides (clproto.sweep.resources)


def load_sweep(path: str | os.PathLike) -> tuple[SweepConfig, list[GridConfig]]:
    """Read a sweep file into typed configs (unknown tables or fields are errors)."""
    raw = read_toml(path)
    extra = sorted(set(raw) - {"sweep", "grid"})
    if extra:
        raise ConfigError(f"unknown table [{extra[0]}]", where=str(path), expected="[sweep] and [[grid]] tables")
    sweep = from_mapping(SweepConfig, raw.get("sweep", {}), where=str(path), prefix="sweep.")
    grids_raw = raw.get("grid", [])
    if not isinstance(grids_raw, list):
        raise ConfigError("`grid` must be an array of tables", where=str(path), field="grid", expected="[[grid]] tables")
    grids = [from_mapping(GridConfig, g, where=str(path), prefix=f"grid[{i}].") for i, g in enumerate(grids_raw)]
    return sweep, grids


def check_seeds(seeds: list, *, where: str, field: Optional[str] = None,
                log: Callable[[str], None] = lambda s: print(s, file=sys.stderr)) -> list[int]:
    """Seeds are integers in [0, 2^63 - 1]; a repeated seed is run once (and said so)."""
    for s in seeds:
        if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s <= MAX_SEED:
            raise ConfigError("not a valid seed", where=where, field=field, value=s,
                              expected=f"an integer from 0 to 2^63 - 1 ({MAX_SEED})")
    unique = list(dict.fromkeys(seeds))
    if len(unique) < len(seeds):
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        log(f"clproto: note: seed(s) {', '.join(map(str, repeated))} given more than once ({where}); each runs once")
    return unique


def expand_grid(
    sweep: SweepConfig,
    grids: list[GridConfig],
    *,
    registry: Registry,
    base_dir: str | os.PathLike = ".",
    where: str = "sweep",
    extra_overrides: list[str] = (),
    seeds: Optional[list[int]] = None,
    log: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
    compute: Optional[dict] = None,
) -> list[RunSpec]:
    """Every run of the sweep, in a stable order, de-duplicated; bad definitions are ConfigErrors.

    ``seeds`` (--seeds) replaces every grid's; ``extra_overrides`` (--set) apply to every grid; ``compute``
    (:func:`clproto.devices.compute_identity` of the resolved device and precision) joins every run's identity.
    """
    from clproto.runner import resolved_config

    base = Path(base_dir)
    if not grids:
        raise ConfigError("the sweep defines no grid", where=where, expected="at least one [[grid]] table "
                          "(or --scenario and --strategy on the command line)")
    specs: dict[tuple[str, str, int], RunSpec] = {}
    for gi, grid in enumerate(grids):
        prefix = f"grid[{gi}]."
        grid_seeds = seeds if seeds else (grid.seeds or sweep.seeds)
        for name, items in (("scenarios", grid.scenarios), ("strategies", grid.strategies), ("seeds", grid_seeds)):
            if not items:
                raise ConfigError("empty list: the grid has no runs", where=where, field=prefix + name,
                                  expected=f"at least one of {name}")
        grid_seeds = check_seeds(grid_seeds, where=where if not seeds else "--seeds",
                                 field=prefix + "seeds" if not seeds else None, log=log)
        fixed = [parse_override(o) for o in [*sweep.set, *grid.set, *extra_overrides]]
        sc_paths = [_resolve_path(p, base, where=where, field_name=prefix + "scenarios") for p in grid.scenarios]
        st_paths = [_resolve_path(p, base, where=where, field_name=prefix + "strategies") for p in grid.strategies]
        for combo in itertools.product(*_vary_axes(grid.vary, where=where, prefix=prefix)):
            overrides = [*fixed, *combo]
            scenarios = [named_scenario(p, overrides) for p in sc_paths]
            strategies = [named_strategy(p, overrides, registry) for p in st_paths]
            check_overrides_used(overrides, [s.name for s in strategies], registry, strategies)
            for sc, sc_path in zip(scenarios, sc_paths):
                for st in strategies:
                    for seed in grid_seeds:
                        spec = RunSpec(scenario=sc, strategy=st, seed=seed, compute=compute,
                                       config_hash=run_hash(resolved_config(sc, st, seed, compute=compute)),
                                       scenario_where=str(sc_path))
                        key = (sc.name, st.name, seed)
                        if key in specs and specs[key].config_hash != spec.config_hash:
                            raise ConfigError(
                                f"two runs of the sweep would share the folder {'/'.join(map(str, key))} "
                                f"but differ in configuration ({specs[key].where} vs {spec.where})",
                                where=where, expected="unique scenario and strategy names")
                        specs.setdefault(key, spec)
    return list(specs.values())


def _resolve_path(p: Any, base: Path, *, where: str, field_name: str) -> Path:
    if not isinstance(p, str) or not p:
        raise ConfigError("expected a file path", where=where, field=field_name, value=p)
    path = Path(p).expanduser()
    return path if path.is_absolute() else base / path


def _vary_axes(vary: dict, *, where: str, prefix: str) -> list[list[Override]]:
    axes = []
    for key, values in vary.items():
        if not isinstance(values, list) or not values:
            raise ConfigError("each vary entry needs a non-empty list of values", where=where,
                              field=f"{prefix}vary.{key}", value=values, expected='e.g. ["cosine", "euclidean"]')
        proto = parse_override(f"{key}=0")
        axes.append([Override(proto.target, proto.path, v, f"{key}={json.dumps(v)}") for v in values])
    return axes
