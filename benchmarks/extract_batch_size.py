"""Feature extraction: throughput and peak memory per forward-pass batch size, side by side.

Each batch size runs in a fresh process (so peak RSS is its own), in rounds that interleave the
batch sizes (so load from other jobs hits them alike); the printed ratios are against batch 64,
the previous default. Chose the default ``DEFAULT_BATCH`` in clproto/features/backbone/kinds.py.

    CLPROTO_MODELS=../shared/models .venv/bin/python benchmarks/extract_batch_size.py [--images 512] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, warnings
import numpy as np, torch
warnings.filterwarnings("ignore")
torch.set_num_threads(int(sys.argv[3]))
from clproto.features.backbone import load_backbone
spec, n = sys.argv[1], int(sys.argv[2])
backbone = load_backbone(spec)
images = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # CIFAR-sized
out = np.empty((n, backbone.dim), np.float32)
start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
backbone.extract(images, progress=False, out=out)
seconds = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "growth_mb": (peak - start_rss) / 1024}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="torchscript:mobilenet_v1_0.5_160_imagenet.pt")
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 16, 32, 64])
    args = ap.parse_args()
    if not os.environ.get("CLPROTO_MODELS"):
        sys.exit("set CLPROTO_MODELS to the folder holding the model (e.g. ../shared/models)")
    results: dict[int, list[dict]] = {b: [] for b in args.batches}
    for _ in range(args.rounds):
        for b in args.batches:
            cmd = [sys.executable, "-c", CHILD, f"{args.model}?batch={b}", str(args.images), str(args.threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            results[b].append(json.loads(proc.stdout.strip().splitlines()[-1]))
    print(f"# {args.model}, {args.images} random 32x32 images, {args.threads} torch threads, "
          f"{args.rounds} interleaved rounds, fresh process each; medians")
    ref = 64 if 64 in results else args.batches[-1]
    ref_s = statistics.median(r["seconds"] for r in results[ref])
    ref_m = statistics.median(r["growth_mb"] for r in results[ref])
    print(f"{'batch':>6} {'images/s':>9} {'speed vs ' + str(ref):>13} {'peak RSS growth':>16} {'vs ' + str(ref):>8}")
    for b in args.batches:
        s = statistics.median(r["seconds"] for r in results[b])
        m = statistics.median(r["growth_mb"] for r in results[b])
        print(f"{b:>6} {args.images / s:>9.1f} {ref_s / s:>12.2f}x {m:>13.0f} MB {m / ref_m:>7.2f}x")


if __name__ == "__main__":
    main()
