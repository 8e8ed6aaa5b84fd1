"""Where the time of RanPAC and FeTrIL goes on a Split-CIFAR-10-sized stream of cached 512-d features.

    nice .venv/bin/python benchmarks/ranpac_fetril_speed.py                  # RanPAC M = 1000, 2000; FeTrIL
    nice .venv/bin/python benchmarks/ranpac_fetril_speed.py --ranpac-m 10000 --components-only
    nice .venv/bin/python benchmarks/ranpac_fetril_speed.py --threads 1      # on a busy machine

Synthetic features shaped like CIFAR-10 through a 512-d backbone (50 000 train / 10 000 test, 10
classes, non-negative like pooled ReLU features), Split-CIFAR-10 (5 experiences of 2 classes). Each
strategy runs the whole stream as the runner does (fit_experience, then the evaluator on all seen test
samples) and the script prints the total, and for RanPAC its phases: projection + Gram accumulation,
the λ search (17 Cholesky solves of M x M per experience), the final solve. ``--components-only`` times
one 2048-sample Gram update and one Cholesky solve at each M and extrapolates the stream (for M where
the full run takes minutes). Target of issue 13: <= 5 s per strategy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clproto.data.dataset import Dataset  # noqa: E402
from clproto.evaluation.evaluator import Evaluator  # noqa: E402
from clproto.scenarios.config import ScenarioConfig  # noqa: E402
from clproto.scenarios.scenario import build_scenario  # noqa: E402
from clproto.strategies import ranpac  # noqa: E402
from clproto.strategies.fetril import FeTrIL, FeTrILConfig  # noqa: E402
from clproto.strategies.ranpac import RanPAC, RanPACConfig  # noqa: E402

N_TRAIN, N_TEST, CLASSES, DIM = 50_000, 10_000, 10, 512


def synthetic_features(seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    means = np.abs(rng.normal(0, 1, size=(CLASSES, DIM)))

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(CLASSES), n // CLASSES)
        x = np.maximum(means[y] + rng.normal(0, 1.5, size=(len(y), DIM)), 0)
        return x.astype(np.float32), y.astype(np.int64)

    (trx, tr_y), (tex, te_y) = split(N_TRAIN), split(N_TEST)
    return Dataset(name="synthetic-cifar10-512", train_x=trx, train_y=tr_y, test_x=tex, test_y=te_y,
                   class_names=tuple(f"c{i}" for i in range(CLASSES)), identity="synthetic-512")


class PhaseTimer:
    """Wraps module functions / methods and adds up their wall time (outermost call only)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self._depth = 0

    def wrap(self, owner, name: str, label: str) -> None:
        fn = getattr(owner, name)

        def timed(*args, **kwargs):
            self._depth += 1
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if self._depth == 0:
                    self.totals[label] += time.perf_counter() - t0

        setattr(owner, name, timed)


def run_stream(model, scenario) -> tuple[float, float, float]:
    evaluator = Evaluator(scenario)
    fit = ev = 0.0
    for exp in scenario:
        t0 = time.perf_counter()
        model.fit_experience(exp)
        fit += time.perf_counter() - t0
        t0 = time.perf_counter()
        step = evaluator.evaluate(model.predict_scores, exp.index)
        ev += time.perf_counter() - t0
    return fit, ev, step.seen_accuracy


def components(m: int) -> None:
    """One 2048-sample Gram update and one Cholesky solve at width m, extrapolated to the stream."""
    h = torch.rand(2048, m, dtype=torch.float64)
    gram = torch.zeros(m, m, dtype=torch.float64)
    t0 = time.perf_counter()
    gram.addmm_(h.T, h)
    t_gram = time.perf_counter() - t0
    gram.diagonal().add_(1.0)
    t0 = time.perf_counter()
    ranpac.ridge_solve(gram, torch.rand(m, CLASSES, dtype=torch.float64), 1.0)
    t_solve = time.perf_counter() - t0
    n_solves = 5 * (len(ranpac.OFFICIAL_GRID) + 1)
    est = t_gram * N_TRAIN / 2048 + t_solve * n_solves
    print(f"RanPAC M={m}: Gram update of 2048 samples {t_gram:.2f} s, one Cholesky solve {t_solve:.2f} s; "
          f"stream estimate {t_gram * N_TRAIN / 2048:.0f} s Gram + {t_solve * n_solves:.0f} s for {n_solves} solves "
          f"= {est:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ranpac-m", type=int, nargs="*", default=[1000, 2000])
    ap.add_argument("--precision", default="float64")
    ap.add_argument("--components-only", action="store_true")
    ap.add_argument("--no-fetril", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (on a loaded machine 1 is faster)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads: {torch.get_num_threads()}")
    if args.components_only:
        for m in args.ranpac_m:
            components(m)
        return
    t0 = time.perf_counter()
    sc = build_scenario(ScenarioConfig(name="split-cifar10", dataset="synthetic", increment=2), synthetic_features(),
                        seed=0)
    print(f"synthetic features + scenario: {time.perf_counter() - t0:.1f} s")

    timer = PhaseTimer()
    timer.wrap(RanPAC, "_accumulate", "projection + Gram (fit part)")
    timer.wrap(ranpac, "choose_ridge", "λ search (17 solves)")
    timer.wrap(ranpac, "ridge_solve", "final solve")
    for m in args.ranpac_m:
        timer.totals.clear()
        model = RanPAC(config=RanPACConfig(projection_dim=m, precision=args.precision), num_classes=CLASSES, seed=0)
        fit, ev, acc = run_stream(model, sc)
        phases = ", ".join(f"{k} {v:.2f} s" for k, v in timer.totals.items())
        print(f"RanPAC M={m} {args.precision}: total {fit + ev:.2f} s (fit {fit:.2f} s: {phases}; rest of fit "
              f"{fit - sum(timer.totals.values()):.2f} s; eval {ev:.2f} s), final seen accuracy {acc:.3f}")
    if args.no_fetril:
        return
    for cfg in (FeTrILConfig(), FeTrILConfig(dual=True), FeTrILConfig(classifier="logistic")):
        fit, ev, acc = run_stream(FeTrIL(config=cfg, num_classes=CLASSES, seed=0), sc)
        print(f"FeTrIL {cfg.classifier} dual={cfg.dual}: total {fit + ev:.2f} s (fit {fit:.2f} s, eval {ev:.2f} s), "
              f"final seen accuracy {acc:.3f}")


if __name__ == "__main__":
    main()
