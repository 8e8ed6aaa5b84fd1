"""One command to check clproto on a CUDA machine: numbers, throughput, and the PRD paper budget.

    CLPROTO_DATA=/path/to/data python benchmarks/gpu_check.py            # on a CUDA machine (cifar10.zip in the data root)
    python benchmarks/gpu_check.py --device cpu --tiny                   # rehearsal: tiny synthetic budget, seconds

(a) **numbers** — a short PRD and fine-tuning run on Split-CIFAR-10 (a per-class subset of the real data) on the
    CPU (fp32) and on the GPU (fp32 and bf16), and the largest difference of their accuracy matrices: expected
    small (other kernels, other summation orders, bf16 rounding), not zero;
(b) **throughput** — training images per second of clproto's ``TrainingLoop`` next to a bare PyTorch loop doing
    the same work (same network, batch, augmentation, SGD step) on the same device, fp32 and bf16; target:
    clproto >= 0.95 x bare, both with the images already on the device and streamed from a memory-mapped file on
    the host by the loop's read-ahead thread (how the strategies train). Each check is a function ``(device, precision) -> images/s`` in ``THROUGHPUT``:
    add one there (e.g. feature extraction) and it is measured and printed alongside;
(c) **paper budget** — PRD on the full Split-CIFAR-10 with the paper's budget (100 epochs per task, batch 128):
    one task is timed (``--paper-epochs`` fewer epochs to time them instead) and the five-task run projected.

Without CUDA it says so and exits 0, unless given ``--device cpu --tiny`` (what tests/test_gpu_check.py runs).
Nothing here has been run on a GPU by its author (this machine has none): read the numbers it prints with that in mind.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clproto.config import load_scenario, load_strategy, strategy_from_dict  # noqa: E402
from clproto.context import RunContext  # noqa: E402
from clproto.data.dataset import Dataset  # noqa: E402
from clproto.data.rows import ImageRows  # noqa: E402
from clproto.nets import build_network  # noqa: E402
from clproto.runner import Runner  # noqa: E402
from clproto.scenarios.config import ScenarioConfig  # noqa: E402
from clproto.strategies import REGISTRY  # noqa: E402
from clproto.training.inputs import augment, to_input  # noqa: E402
from clproto.training.loop import TrainingConfig, TrainingLoop  # noqa: E402


# --------------------------------------------------------------------------- budgets
class Budget:
    """What one check costs: the full one on a GPU, or a tiny rehearsal."""

    def __init__(self, *, tiny: bool, subset: int, paper_epochs: int) -> None:
        self.tiny = tiny
        self.architecture = "convnet-small" if tiny else "resnet18-reduced"
        self.train_per_class, self.test_per_class = (6, 3) if tiny else (subset, subset // 2)
        self.epochs = 1 if tiny else 3  # (a): short runs
        self.batch_size = 16 if tiny else 128
        self.images, self.side = (32, 8) if tiny else (4096, 32)  # (b): images per measured pass
        self.paper_epochs = 1 if tiny else paper_epochs  # (c): epochs timed of the first task (paper: 100)


def tiny_dataset(seed: int = 0, *, classes: int = 4, per_class: int = 6, side: int = 8) -> Dataset:
    """Separable synthetic uint8 images (a fixed pattern per class plus noise), for the rehearsal."""
    rng = np.random.default_rng(seed)
    patterns = rng.uniform(40, 215, size=(classes, side, side, 3))

    def split(n):
        y = np.repeat(np.arange(classes), n)
        return np.clip(patterns[y] + rng.normal(0, 30, size=(len(y), side, side, 3)), 0, 255).astype(np.uint8), y

    (tx, ty), (vx, vy) = split(per_class), split(per_class // 2)
    return Dataset(name="gpu-check-tiny", train_x=tx, train_y=ty, test_x=vx, test_y=vy,
                   class_names=tuple(str(c) for c in range(classes)), identity=f"gpu-check-tiny-{seed}-{side}")


def _runner(device: str, precision: str, budget: Budget) -> Runner:
    given = {"tiny": tiny_dataset()} if budget.tiny else {}
    return Runner(progress=False, device=device, precision=precision, datasets=given)


def _scenario(budget: Budget):
    if budget.tiny:
        return ScenarioConfig(name="tiny-split", dataset="tiny", increment=2)
    from dataclasses import replace

    sc = load_scenario(ROOT / "scenarios" / "split-cifar10.toml")
    return replace(sc, train_per_class=budget.train_per_class, test_per_class=budget.test_per_class)


def _strategy(name: str, budget: Budget, **extra):
    params = {"architecture": budget.architecture, "epochs": budget.epochs, "batch_size": budget.batch_size, **extra}
    if budget.tiny:
        params.update(crop_padding=1)
    base = load_strategy(ROOT / "strategies" / f"{name}.toml", REGISTRY).to_dict()
    base["params"] = {**base["params"], **params}
    return strategy_from_dict(base, REGISTRY)


# --------------------------------------------------------------------------- (a) numbers
def check_numbers(device: str, budget: Budget) -> None:
    """Accuracy matrices of PRD and fine-tuning on the CPU (fp32) vs ``device`` (fp32, bf16): largest difference."""
    scenario = _scenario(budget)
    for name in ("prd", "finetune"):
        strategy = _strategy(name, budget)
        reference = _runner("cpu", "fp32", budget).run(scenario, strategy, seed=0)
        for precision in ("fp32", "bf16"):
            if device == "cpu" and precision == "fp32":
                continue  # the reference itself
            t0 = time.perf_counter()
            other = _runner(device, precision, budget).run(scenario, strategy, seed=0)
            a = np.array([[np.nan if v is None else v for v in row] for row in reference.accuracy_matrix])
            b = np.array([[np.nan if v is None else v for v in row] for row in other.accuracy_matrix])
            print(f"(a) {name:9s} cpu/fp32 vs {device}/{precision}: max |dA| = {100 * np.nanmax(np.abs(a - b)):.2f} "
                  f"points, final acc {100 * reference.metrics.final_accuracy:.2f} vs "
                  f"{100 * other.metrics.final_accuracy:.2f} % ({other.compute['device_name']}, "
                  f"{time.perf_counter() - t0:.1f} s)")


# --------------------------------------------------------------------------- (b) throughput
def _images(budget: Budget, device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (budget.images, budget.side, budget.side, 3), dtype=torch.uint8, generator=g)
    return x.to(device), (torch.arange(budget.images) % 10).to(device)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def clproto_training(device, precision: str, budget: Budget, *, streamed: bool = False) -> float:
    """Images/s of clproto's TrainingLoop training a network with cross-entropy (one warm-up pass first); with
    ``streamed`` the images stay in a memory-mapped file on the host and the loop's read-ahead thread gathers, pins
    and copies every shuffled batch (how the strategies train: ``Experience.train_rows``)."""
    context = RunContext(device=str(device), precision=precision, progress=False).resolved()
    cfg = TrainingConfig(architecture=budget.architecture, epochs=1, batch_size=budget.batch_size, schedule="constant")
    loop = TrainingLoop(config=cfg, seed=0, context=context)
    torch.manual_seed(0)
    net = loop.place(build_network(budget.architecture))
    head = loop.place(torch.nn.Linear(net.feature_dim, 10))
    x, y = _images(budget, "cpu" if streamed else context.torch_device)
    with tempfile.TemporaryDirectory(prefix="clproto-gpu-check-") as tmp:
        if streamed:  # a store on disk, as the decoded image store is
            store = np.lib.format.open_memmap(Path(tmp) / "x.npy", mode="w+", dtype=np.uint8, shape=tuple(x.shape))
            store[:] = x.numpy()
            store.flush()
            x = ImageRows(np.load(Path(tmp) / "x.npy", mmap_mode="r"), np.arange(len(y)))
            del store

        def loss_fn(views, yb):
            return F.cross_entropy(head(net(views[0])), yb)

        def one_pass():
            loop.run(modules=[net, head], groups=[{"params": [*net.parameters(), *head.parameters()]}], x=x, y=y,
                     loss_fn=loss_fn)

        return _timed(one_pass, len(y), context.torch_device)


def bare_training(device, precision: str, budget: Budget) -> float:
    """Images/s of a bare PyTorch loop doing the same work: shuffle, crop + flip, SGD step, no host reads."""
    device = torch.device(device)
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    torch.manual_seed(0)
    net = build_network(budget.architecture).to(device)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    head = torch.nn.Linear(net.feature_dim, 10).to(device)
    params = [*net.parameters(), *head.parameters()]
    opt = torch.optim.SGD(params, lr=0.05, momentum=0.9, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    x, y = _images(budget, device)
    g = torch.Generator().manual_seed(0)

    def one_pass():
        net.train(), head.train()
        for idx in torch.randperm(len(x), generator=g).split(budget.batch_size):
            idx = idx.to(device)
            inputs = to_input(augment(x[idx], padding=4, flip=True, generator=g))
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                loss = F.cross_entropy(head(net(inputs)), y[idx])
            opt.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                opt.step()
            else:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()

    return _timed(one_pass, len(x), device)


def _timed(one_pass: Callable[[], None], images: int, device) -> float:
    one_pass()  # warm-up: cuDNN autotuning, allocator, first-call overheads
    _sync(device)
    t0 = time.perf_counter()
    one_pass()
    _sync(device)
    return images / (time.perf_counter() - t0)


# (device, precision, budget) -> images/s. Extend here: e.g. THROUGHPUT["extraction"] = your_function; every entry
# is measured and printed by check_throughput (pairs "clproto ..." / "bare ..." also get their ratio printed).
THROUGHPUT: dict[str, Callable[[torch.device, str, Budget], float]] = {
    "clproto training": clproto_training,
    "clproto streamed training": lambda device, precision, budget: clproto_training(device, precision, budget,
                                                                                    streamed=True),
    "bare training": bare_training,
}


def check_throughput(device: str, budget: Budget) -> dict:
    """Every THROUGHPUT entry at fp32 and bf16 on ``device``; prints images/s and clproto / bare ratios."""
    out = {}
    for precision in ("fp32", "bf16"):
        for name, fn in THROUGHPUT.items():
            out[(name, precision)] = fn(torch.device(device), precision, budget)
            print(f"(b) {name:26s} {device}/{precision}: {out[(name, precision)]:10.1f} images/s")
        for name in THROUGHPUT:  # "clproto [variant] work" against "bare work"
            if name.startswith("clproto ") and (bare := "bare " + name.split()[-1]) in THROUGHPUT:
                ratio = out[(name, precision)] / out[(bare, precision)]
                print(f"(b) {name} / {bare} at {precision}: {ratio:.3f}x (target >= 0.95)")
    return out


# --------------------------------------------------------------------------- (c) paper budget
def check_paper_budget(device: str, budget: Budget) -> None:
    """Time ``paper_epochs`` epochs of PRD's first task at the paper's batch 128 on full Split-CIFAR-10; project
    100 epochs x 5 tasks (later tasks also run the frozen teacher's forward pass: a lower bound)."""
    if budget.tiny:
        scenario = ScenarioConfig(name="tiny-split", dataset="tiny", increment=2)
    else:
        scenario = load_scenario(ROOT / "scenarios" / "split-cifar10.toml")
    strategy = _strategy("prd", budget, epochs=budget.paper_epochs)
    if not budget.tiny:
        base = strategy.to_dict()
        base["params"].update(batch_size=128)
        strategy = strategy_from_dict(base, REGISTRY)
    runner = _runner(device, "fp32", budget)
    sc = runner.scenario(scenario, seed=0)
    from clproto.runner import build_model

    model = build_model(REGISTRY.get("prd"), strategy, num_classes=sc.num_classes, seed=0,
                        context=runner.run_context(0).resolved())
    first = list(sc)[0]
    t0 = time.perf_counter()
    model.fit_experience(first)
    _sync(device)
    seconds = time.perf_counter() - t0
    per_epoch = seconds / budget.paper_epochs
    print(f"(c) PRD task 0 ({len(first.train_indices)} images, batch {strategy.params.batch_size}): "
          f"{budget.paper_epochs} epoch(s) in {seconds:.1f} s = {per_epoch:.2f} s/epoch on {device}; "
          f"projected paper budget (100 epochs x {len(sc)} tasks): >= {per_epoch * 100 * len(sc) / 3600:.2f} h")


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda", help="the device checked against the CPU (default: cuda)")
    p.add_argument("--tiny", action="store_true", help="a tiny synthetic budget (rehearsal, seconds)")
    p.add_argument("--subset", type=int, default=500, help="(a): training images per class (default: %(default)s)")
    p.add_argument("--paper-epochs", type=int, default=100, help="(c): epochs of task 0 timed (default: %(default)s)")
    p.add_argument("--skip", nargs="*", default=[], choices=("numbers", "throughput", "paper"), help="checks to skip")
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu_check: no CUDA device on this machine (torch " + torch.__version__ + "): nothing to check. "
              "Rehearse with --device cpu --tiny.")
        return 0
    if args.device == "cpu" and not args.tiny:
        print("gpu_check: --device cpu checks the CPU against itself: only as a rehearsal, with --tiny.")
        return 0
    budget = Budget(tiny=args.tiny, subset=args.subset, paper_epochs=args.paper_epochs)
    if args.device.startswith("cuda"):
        print(f"gpu_check: {torch.cuda.get_device_name(torch.device(args.device))}, torch {torch.__version__}, "
              f"CUDA {torch.version.cuda}")
    if "numbers" not in args.skip:
        check_numbers(args.device, budget)
    if "throughput" not in args.skip:
        check_throughput(args.device, budget)
    if "paper" not in args.skip:
        check_paper_budget(args.device, budget)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
