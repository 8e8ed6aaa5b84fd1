"""Benchmark: a whole Split-CIFAR-10 stream (5 experiences x 2 classes) per frozen-feature strategy.

Every implementation registered with ``input_kind = "features"`` that runs on class-incremental
scenarios is run once with its default parameters (so strategies registered later appear without
editing this file), through clproto's Runner, and the time of the stream itself -- every
``fit_experience`` plus every evaluation of the seen test sets -- is compared with the target of
issue 13: at most 5 s per strategy on cached 512-d features.

Features:

* ``--features real`` (the default when ../shared is present): CIFAR-10 through the frozen
  MobileNetV1-0.5/160 (512-d), read from the feature cache. The first run extracts them (minutes;
  cached under CLPROTO_CACHE); extraction time is not part of the stream time.
* ``--features synthetic``: random 512-d non-negative features of CIFAR-10's size (50 000 train,
  10 000 test, 10 classes, class-dependent means), seeded; no data needed.

Run (record the output under reports/benchmarks/frozen-family.txt):

    CLPROTO_CACHE=/work/cache CLPROTO_DATA=../shared/data CLPROTO_MODELS=../shared/models \\
      .venv/bin/python benchmarks/frozen_family.py
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clproto.config import load_scenario, strategy_from_dict  # noqa: E402
from clproto.data.dataset import Dataset  # noqa: E402
from clproto.features.backbone import parse_backbone  # noqa: E402
from clproto.features.extraction import Extraction  # noqa: E402
from clproto.runner import Runner  # noqa: E402
from clproto.scenarios import ScenarioConfig  # noqa: E402
from clproto.strategies import REGISTRY  # noqa: E402

BACKBONE = "torchscript:mobilenet_v1_0.5_160_imagenet.pt"
TARGET_S = 5.0  # issue 13: a whole Split-CIFAR-10 stream per strategy on cached 512-d features
SHARED = ROOT.parent / "shared"


def synthetic_features(seed: int = 0, dim: int = 512) -> Dataset:
    """CIFAR-10-sized (50k/10k, 10 classes) non-negative float32 features with class-dependent means."""
    rng = np.random.default_rng(seed)
    centres = 1.0 + rng.normal(0, 0.05, size=(10, dim))  # (10, D) close together: accuracies well below 100 %

    def split(n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(10), n_per_class)
        x = np.abs(centres[y] + rng.normal(0, 1.0, size=(len(y), dim))).astype(np.float32)
        return x, y.astype(np.int64)

    train_x, train_y = split(5000)
    test_x, test_y = split(1000)
    return Dataset(name="synthetic-cifar10", train_x=train_x, train_y=train_y, test_x=test_x, test_y=test_y,
                   class_names=tuple(f"c{i}" for i in range(10)), identity=f"synthetic-cifar10-{seed}-{dim}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", choices=["real", "synthetic"], default="real" if SHARED.exists() else "synthetic")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--strategies", nargs="+", help="implementations to run (default: every registered features-strategy)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's; 1 is steadier on a shared machine)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    entries = [e for e in REGISTRY if e.cls.input_kind == "features"]
    skipped = [e.name for e in entries if "class-incremental" not in e.scenario_kinds]
    entries = [e for e in entries if "class-incremental" in e.scenario_kinds and (not args.strategies or e.name in args.strategies)]
    if args.features == "real":
        runner = Runner(progress=False)
        scenario = load_scenario(ROOT / "scenarios" / "split-cifar10.toml")
        backbone = BACKBONE
        t0 = time.perf_counter()
        images = runner.dataset(scenario.dataset)
        note = runner.features(images, backbone).note
        what = f"real: CIFAR-10 through frozen MobileNetV1-0.5/160 (512-d), {note} ({time.perf_counter() - t0:.1f}s)"
    else:
        scenario = ScenarioConfig(name="split-synthetic-cifar10", dataset="synthetic", increment=2)
        backbone = "pixels"  # never applied: the runner is handed the features directly
        feats = synthetic_features(args.seed)
        runner = Runner(progress=False, datasets={"synthetic": feats})
        runner.feature_store.put(feats, parse_backbone(backbone),
                                 Extraction(features=feats, cache_hit=False, seconds=0.0, note="synthetic features"))
        what = ("synthetic: random non-negative 512-d features, 50000 train / 10000 test, 10 classes "
                "(same shapes and work as the real features; the accuracies mean nothing)")

    print(f"# frozen-feature family on a whole Split-CIFAR-10 stream (5 experiences x 2 classes), seed {args.seed}")
    print(f"# features: {what}")
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f} at start")
    print(f"# stream time = sum of fit_experience + evaluation over the 5 experiences; target <= {TARGET_S:.0f} s")
    if skipped:
        print(f"# not run (few-shot only): {', '.join(skipped)}")
    print(f"# cpu s = process CPU time of the whole run (all threads): less sensitive than wall time to other jobs")
    print(f"{'strategy':<12} {'stream s':>9} {'fit s':>7} {'eval s':>7} {'cpu s':>7} {'final acc':>10}  target")
    worst = 0.0
    for entry in entries:
        st = strategy_from_dict({"name": entry.name, "implementation": entry.name, "backbone": backbone}, REGISTRY)
        cpu = time.process_time()
        r = runner.run(scenario, st, seed=args.seed)
        cpu = time.process_time() - cpu
        fit, ev = sum(r.timings.fit_s), sum(r.timings.eval_s)
        worst = max(worst, fit + ev)
        ok = "ok" if fit + ev <= TARGET_S else "OVER"
        print(f"{entry.name:<12} {fit + ev:>9.2f} {fit:>7.2f} {ev:>7.2f} {cpu:>7.2f} {100 * r.metrics.final_accuracy:>9.2f}%  {ok}")
    print(f"# slowest: {worst:.2f} s ({'within' if worst <= TARGET_S else 'over'} the {TARGET_S:.0f} s target); "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
