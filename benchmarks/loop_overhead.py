"""Framework overhead of clproto's training loop vs a bare PyTorch loop doing the same work.

    nice -n 5 .venv/bin/python benchmarks/loop_overhead.py            # target: ratio <= 1.05

Both loops train the same freshly copied network on the same uint8 images for the same epochs:
seeded shuffle, mini-batches, random crop (zero padding 4) + horizontal flip on the uint8 batch,
conversion to float, cross-entropy, SGD with momentum and a per-epoch cosine learning rate.
The clproto side is ``TrainingLoop.run`` with a loss callback, twice: on the images as one tensor
(``clproto``) and on the rows of a memory-mapped file, each shuffled batch gathered by the loop's
read-ahead thread (``streamed``: how the strategies train, ``Experience.train_rows``); the bare side
is the same steps written inline on the tensor. Repetitions are interleaved (the order rotates) so
all see the same machine load; the script prints each repetition and the median per-repetition ratio
to bare for every case.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clproto.nets import build_network  # noqa: E402
from clproto.context import RunContext  # noqa: E402
from clproto.data.rows import ImageRows  # noqa: E402
from clproto.training.loop import TrainingConfig, TrainingLoop  # noqa: E402

CASES = {  # name -> (architecture, image size, channels, samples)
    "cifar-like 32x32, resnet20": ("resnet20", 32, 3, 256),
    "digits-like 8x8, convnet-small": ("convnet-small", 8, 1, 1024),
}


def bare_loop(net: nn.Module, head: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int,
              lr: float, seed: int) -> None:
    """The hand-written equivalent: no callbacks, no progress bar, no divergence check."""
    g = torch.Generator().manual_seed(seed)
    params = list(net.parameters()) + list(head.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    net.train(), head.train()
    N, H, W, C = x.shape
    for epoch in range(epochs):
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        for idx in torch.randperm(N, generator=g).split(batch_size):
            xb = x[idx]  # (B, H, W, C) uint8
            B = len(idx)
            padded = xb.new_zeros(B, H + 8, W + 8, C)
            padded[:, 4:4 + H, 4:4 + W] = xb
            oy = torch.randint(0, 9, (B,), generator=g)
            ox = torch.randint(0, 9, (B,), generator=g)
            xb = padded[torch.arange(B)[:, None, None], (oy[:, None] + torch.arange(H))[:, :, None],
                        (ox[:, None] + torch.arange(W))[:, None, :]]
            xb = torch.where((torch.rand(B, generator=g) < 0.5)[:, None, None, None], xb.flip(2), xb)
            inp = (xb.permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.25
            loss = F.cross_entropy(head(net(inp)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    net.eval(), head.eval()


def clproto_loop(net: nn.Module, head: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int,
                 lr: float, seed: int) -> None:
    cfg = TrainingConfig(epochs=epochs, batch_size=batch_size, lr=lr, momentum=0.9, weight_decay=1e-4,
                         schedule="cosine", crop_padding=4, flip=True)
    loop = TrainingLoop(config=cfg, seed=seed, context=RunContext(progress=False))
    loop.run(modules=[net, head], groups=[{"params": list(net.parameters()) + list(head.parameters())}], x=x, y=y,
             loss_fn=lambda v, yb: F.cross_entropy(head(net(v[0])), yb), views=1)


def streamed_loop(net: nn.Module, head: nn.Module, x: ImageRows, y: torch.Tensor, **kw) -> None:
    clproto_loop(net, head, x, y, **kw)  # the same loop; x: rows of the memory-mapped file, gathered per batch


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5, help="timed repetitions of each loop per case")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="also write the printed lines (and the command) to this text file")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lines: list[str] = []

    def say(text: str) -> None:  # echo to stdout and keep for --out
        lines.append(text)
        sys.stdout.write(text + "\n")
        sys.stdout.flush()

    say(f"torch {torch.__version__}, {args.threads} thread(s), {args.epochs} epochs, batch {args.batch_size}, "
          f"{args.reps} interleaved repetitions per loop")
    ratios = {}
    for name, (arch, size, channels, n) in CASES.items():
        g = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n, size, size, channels), dtype=torch.uint8, generator=g)  # (N, H, W, C)
        y = torch.randint(0, 10, (n,), generator=g)  # (N,)
        torch.manual_seed(0)
        net0 = build_network(arch, in_channels=channels)
        head0 = nn.Linear(net0.feature_dim, 10)
        tmp = tempfile.TemporaryDirectory(prefix="clproto-loop-")
        np.save(Path(tmp.name) / "x.npy", x.numpy())
        rows = ImageRows(np.load(Path(tmp.name) / "x.npy", mmap_mode="r"), np.arange(n))  # the images on disk
        loops = {"clproto": clproto_loop, "streamed": streamed_loop, "bare": bare_loop}
        inputs = {"clproto": x, "streamed": rows, "bare": x}
        for k, fn in loops.items():  # warm-up (imports, allocator)
            fn(copy.deepcopy(net0), copy.deepcopy(head0), inputs[k], y, epochs=1, batch_size=args.batch_size, lr=0.01,
               seed=0)
        times = {k: [] for k in loops}
        for rep in range(args.reps):
            order = list(loops)[rep % 3:] + list(loops)[:rep % 3]
            for k in order:
                net, head = copy.deepcopy(net0), copy.deepcopy(head0)
                t0 = time.perf_counter()
                loops[k](net, head, inputs[k], y, epochs=args.epochs, batch_size=args.batch_size, lr=0.01, seed=rep)
                times[k].append(time.perf_counter() - t0)
            say(f"  {name} rep {rep}: " + "  ".join(f"{k} {times[k][-1]:.3f}s" for k in loops))
        tmp.cleanup()
        for k in ("clproto", "streamed"):
            ratios[(name, k)] = statistics.median([c / b for c, b in zip(times[k], times["bare"])])
        say(f"{name}: median " + ", ".join(f"{k} {statistics.median(times[k]):.3f}s" for k in loops)
            + f"; median per-repetition ratio clproto/bare = {ratios[(name, 'clproto')]:.3f}, "
              f"streamed/bare = {ratios[(name, 'streamed')]:.3f}")
    worst = max(ratios.values())
    say(f"worst case ratio to bare = {worst:.3f} (target <= 1.05): {'OK' if worst <= 1.05 else 'ABOVE TARGET'}")
    if args.out:
        command = "nice -n 5 .venv/bin/python benchmarks/loop_overhead.py " + " ".join(sys.argv[1:] if argv is None else argv)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(f"$ {command}\n" + "\n".join(lines) + "\n")
        os.replace(tmp, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
