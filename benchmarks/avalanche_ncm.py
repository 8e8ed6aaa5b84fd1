"""Benchmark 5a: clproto's frozen-feature NMC vs the same pipeline built on Avalanche 0.6.

Avalanche pipeline (per run): ``TrainEvalModel(feature_extractor = frozen MobileNet + the same
preprocessing, eval_classifier = avalanche.models.NCMClassifier)``, a ``Naive`` template with zero
SGD epochs, ``CurrentDataNCMUpdate`` (class means of each experience's training data) and an
``EvaluationPlugin`` with experience/stream accuracy and forgetting. Avalanche recomputes the
backbone's features in every run, as every anchor framework does; clproto reads them from its
feature cache (warm: filled beforehand by a `clproto run` over the whole dataset).

Fairness:

* same class order and samples: the Avalanche benchmark is ``nc_benchmark`` over exactly the
  training and test samples of clproto's scenario (``train_per_class`` / ``test_per_class`` caps
  drawn with the run seed), with ``fixed_class_order`` = clproto's class order, so experience ``t``
  holds the same classes and images in both;
* same features: the same TorchScript file and preprocessing (uint8 -> [0, 1], bilinear resize);
* NCMClassifier pitfall: its class means live in a ``(max_class + 1, D)`` tensor whose rows for
  missing classes are zero vectors, and ``adaptation`` adds zero means for the classes of every
  *evaluated* experience; those zero means then score ``-‖x‖``, so an unseen class can win. We
  avoid it as clproto's own evaluation does: labels are remapped to arrival order
  (``class_ids_from_zero_from_first_exp``) and after training on experience ``t`` only
  ``test_stream[: t + 1]`` is evaluated. ``--pitfall`` additionally runs Avalanche's usual
  ``eval(test_stream)`` (seed 0, the small subset) and prints how much it changes A[t][j];
* equivalences: ``NCMClassifier(normalize=True)`` L2-normalises features and class means, so its
  ranking is cosine similarity — clproto's ``nmc`` with ``metric = "cosine"``;
  ``NCMClassifier(normalize=False)`` is Euclidean on raw features — ``nmc`` with
  ``normalize = false``. clproto's default ``nmc`` (Janson et al.: Euclidean to the mean of
  normalised features, the mean itself not renormalised) has no Avalanche equivalent: its
  Avalanche run is timed against NCM(normalize=True) and its accuracy gap is printed, not checked.

Run (record the output under reports/benchmarks/):

    CLPROTO_CACHE=/work/cache CLPROTO_DATA=../shared/data CLPROTO_MODELS=../shared/models \\
      .venv/bin/python benchmarks/avalanche_ncm.py
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clproto.config import load_scenario, strategy_from_dict  # noqa: E402
from clproto.data.paths import models_root  # noqa: E402
from clproto.runner import Runner  # noqa: E402
from clproto.strategies import REGISTRY  # noqa: E402

BACKBONE = "torchscript:mobilenet_v1_0.5_160_imagenet.pt"
# (clproto strategy name, its params, Avalanche NCMClassifier(normalize=...), exact equivalent?)
STRATEGIES = [
    ("nmc-cosine", {"metric": "cosine", "normalize": True}, True, True),
    ("nmc-raw", {"metric": "euclidean", "normalize": False}, False, True),
    ("nmc", {"metric": "euclidean", "normalize": True}, True, False),
]


# --------------------------------------------------------------------------- the Avalanche pipeline
class FrozenMobileNet(torch.nn.Module):
    """uint8 (B, H, W, 3) -> (B, D): [0, 1], bilinear resize to ``size``, TorchScript forward."""

    def __init__(self, path: Path, size: int) -> None:
        super().__init__()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self.size = size

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 3, 1, 2).float().div(255.0)  # (B, 3, H, W)
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)  # (B, 3, S, S)
        return self.net(x)  # (B, D)


class Images(torch.utils.data.Dataset):
    """uint8 images with a ``targets`` list, the minimum Avalanche's nc_benchmark needs."""

    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x = torch.from_numpy(np.ascontiguousarray(x))  # (N, H, W, 3) uint8
        self.targets = [int(v) for v in y]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.x[i], self.targets[i]


def avalanche_run(scenario, *, normalize: bool, model_path: Path, size: int, pitfall: bool = False,
                  batch_size: int = 64) -> list[list[float]]:
    """A[t][j] (j <= t) from Avalanche's EvaluationPlugin for one clproto scenario."""
    from avalanche.benchmarks import nc_benchmark
    from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
    from avalanche.models import NCMClassifier, TrainEvalModel
    from avalanche.training import Naive
    from avalanche.training.plugins import CurrentDataNCMUpdate, EvaluationPlugin

    ds = scenario.dataset
    tr = np.sort(np.concatenate([e.train_indices for e in scenario]))
    te = np.sort(np.concatenate([e.test_indices for e in scenario]))
    bench = nc_benchmark(Images(ds.train_x[tr], ds.train_y[tr]), Images(ds.test_x[te], ds.test_y[te]),
                         n_experiences=len(scenario), task_labels=False, shuffle=False,
                         fixed_class_order=list(scenario.class_order),
                         per_exp_classes={i: len(e.classes) for i, e in enumerate(scenario)},
                         class_ids_from_zero_from_first_exp=True)
    features = FrozenMobileNet(model_path, size)
    model = TrainEvalModel(features, train_classifier=torch.nn.Linear(1, 1), eval_classifier=NCMClassifier(normalize=normalize))
    evaluator = EvaluationPlugin(accuracy_metrics(experience=True, stream=True),
                                 forgetting_metrics(experience=True, stream=True), loggers=[])
    strategy = Naive(model=model, optimizer=torch.optim.SGD(model.train_classifier.parameters(), lr=0.0),
                     criterion=torch.nn.CrossEntropyLoss(), train_mb_size=batch_size, eval_mb_size=batch_size, train_epochs=0, device="cpu",
                     plugins=[CurrentDataNCMUpdate()], evaluator=evaluator)
    rows = []
    for t, exp in enumerate(bench.train_stream):
        strategy.train(exp)
        metrics = strategy.eval(bench.test_stream if pitfall else bench.test_stream[: t + 1])
        rows.append([metrics[f"Top1_Acc_Exp/eval_phase/test_stream/Task000/Exp{j:03d}"] for j in range(t + 1)])
    return rows


# --------------------------------------------------------------------------- clproto side
def clproto_strategies(names: list[str]):
    out = []
    for name, params, normalize, exact in STRATEGIES:
        if name in names:
            data = {"name": name, "implementation": "nmc", "backbone": BACKBONE, "params": params}
            out.append((strategy_from_dict(data, REGISTRY, where="benchmark"), normalize, exact))
    return out


def max_gap(a: list[list[float]], b: list[list[float]]) -> float:
    return max(abs(x - y) for ra, rb in zip(a, b) for x, y in zip(ra, rb))


def main() -> int:
    warnings.filterwarnings("ignore")  # Avalanche's "no loggers" and TorchScript deprecation notices
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios/split-cifar10.toml"))
    ap.add_argument("--dataset", help="override the scenario's dataset spec")
    ap.add_argument("--single-train-per-class", type=int, default=500, help="1 strategy x 1 seed: train images per class (0 = all)")
    ap.add_argument("--single-test-per-class", type=int, default=100, help="1 strategy x 1 seed: test images per class (0 = all)")
    ap.add_argument("--train-per-class", type=int, default=50, help="3 strategies x 5 seeds: train images per class")
    ap.add_argument("--test-per-class", type=int, default=20, help="3 strategies x 5 seeds: test images per class")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--strategies", nargs="+", default=[s[0] for s in STRATEGIES])
    ap.add_argument("--pitfall", action="store_true", help="also run Avalanche's usual eval(test_stream) once")
    args = ap.parse_args()

    torch.manual_seed(0)
    model_file = models_root() / BACKBONE.split(":", 1)[1]
    base = load_scenario(args.scenario)
    if args.dataset:
        base = replace(base, dataset=args.dataset)
    print(f"# benchmark 5a: clproto vs Avalanche NCM ({platform.node()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; machine shared with other jobs: wall times are noisy)")
    print(f"scenario {base.name} ({base.dataset}), backbone {BACKBONE}")
    warm = Runner(progress=False)
    t0 = time.perf_counter()
    got = warm.features(warm.dataset(base.dataset), BACKBONE)
    print(f"clproto feature cache for the full dataset: {got.note} ({time.perf_counter() - t0:.1f}s)")
    if not got.cache_hit:
        print("NOTE: the cache was cold; the clproto timings below still read it warm (it is filled now).")

    # ---------------------------------------------------------------- 1 strategy x 1 seed
    (single, normalize, _), = clproto_strategies(["nmc-cosine"])
    sc_cfg = replace(base, train_per_class=args.single_train_per_class, test_per_class=args.single_test_per_class)
    print(f"\n## 1 strategy x 1 seed: nmc-cosine vs NCMClassifier(normalize=True), seed 0, "
          f"{args.single_train_per_class or 'all'} train / {args.single_test_per_class or 'all'} test images per class")
    t0 = time.perf_counter()
    runner = Runner(progress=False)
    res = runner.run(sc_cfg, single, seed=0)
    t_clproto = time.perf_counter() - t0
    sc = runner.scenario(sc_cfg, seed=0)
    t0 = time.perf_counter()
    A_av = avalanche_run(sc, normalize=normalize, model_path=model_file, size=160)
    t_av = time.perf_counter() - t0
    A_cl = [row[: t + 1] for t, row in enumerate(res.accuracy_matrix)]
    print("step  clproto A[t][j]                               Avalanche A[t][j]")
    for t, (a, b) in enumerate(zip(A_cl, A_av)):
        print(f"{t:>4}  {' '.join(f'{v:.4f}' for v in a):<44}  {' '.join(f'{v:.4f}' for v in b)}")
    gap = max_gap(A_cl, A_av)
    print(f"max |clproto - Avalanche| over A[t][j]: {gap:.2e}  ({'OK' if gap <= 1e-4 else 'FAIL'}: target 1e-4)")
    print(f"wall time: clproto {t_clproto:.2f}s (warm cache, includes loading data and features), "
          f"Avalanche {t_av:.2f}s  ->  ratio {t_av / t_clproto:.1f}x")

    # ---------------------------------------------------------------- 3 strategies x 5 seeds
    strategies = clproto_strategies(args.strategies)
    sc_cfg = replace(base, train_per_class=args.train_per_class, test_per_class=args.test_per_class)
    print(f"\n## {len(strategies)} strategies x {len(args.seeds)} seeds, {args.train_per_class} train / "
          f"{args.test_per_class} test images per class (Avalanche recomputes features every run)")
    t0 = time.perf_counter()
    runner = Runner(progress=False)  # a fresh runner: loads the decoded images and cached features once
    results = {(s.name, seed): runner.run(sc_cfg, s, seed=seed) for seed in args.seeds for s, _, _ in strategies}
    t_clproto = time.perf_counter() - t0
    t0 = time.perf_counter()
    gaps = {}
    for seed in args.seeds:
        sc = runner.scenario(sc_cfg, seed=seed)
        for s, normalize, exact in strategies:
            A_av = avalanche_run(sc, normalize=normalize, model_path=model_file, size=160)
            A_cl = [row[: t + 1] for t, row in enumerate(results[(s.name, seed)].accuracy_matrix)]
            gaps[(s.name, seed)] = (max_gap(A_cl, A_av), exact)
    t_av = time.perf_counter() - t0
    for s, _, exact in strategies:
        g = max(gaps[(s.name, seed)][0] for seed in args.seeds)
        verdict = ("OK" if g <= 1e-4 else "FAIL") if exact else "no exact Avalanche equivalent, not checked"
        print(f"{s.name:<11} max |clproto - Avalanche| over A[t][j] and seeds: {g:.2e}  ({verdict})")
    print(f"wall time for {len(results)} runs: clproto {t_clproto:.2f}s (warm cache), Avalanche {t_av:.2f}s  ->  "
          f"ratio {t_av / t_clproto:.1f}x (target >= 20x)")
    if args.pitfall:  # Avalanche's usual eval(test_stream): zero-vector means for not-yet-seen classes
        sc = runner.scenario(sc_cfg, seed=args.seeds[0])
        print(f"\n## NCMClassifier pitfall: eval(test_stream) after each experience (seed {args.seeds[0]}, same subset)")
        for s, normalize, exact in strategies:
            if not exact:
                continue
            A_pit = avalanche_run(sc, normalize=normalize, model_path=model_file, size=160, pitfall=True)
            A_cl = [row[: t + 1] for t, row in enumerate(results[(s.name, args.seeds[0])].accuracy_matrix)]
            print(f"NCMClassifier(normalize={normalize}) vs {s.name}: max change of A[t][j] (j <= t) caused by "
                  f"evaluating unseen experiences too: {max_gap(A_cl, A_pit):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
