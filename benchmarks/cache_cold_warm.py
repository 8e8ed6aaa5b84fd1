"""Benchmark 5b: the feature cache cold vs warm, and clproto's cold run vs a plain forward pass.

Each measurement runs in its own fresh Python process (so one's memory and caches do not leak into
the next), one after the other in this order, all in one invocation:

1. ``decode``  — decode the image zip into the (empty) decoded-image cache;
2. ``floor``   — the floor: one plain forward pass over every train and test image (batches of
   clproto's default extraction batch, the same preprocessing, outputs discarded), images already decoded;
3. ``cold``    — ``clproto run``'s work (Runner.run of NMC, seed 0) with an empty feature cache:
   load the decoded images, extract and store features, fit and evaluate;
4. ``warm``    — the same run again: features come from the cache;
5. ``floor``   — the floor again, to bracket drift in machine load.

Memory: each child reports its resident set size just before its timed section (after importing
torch and clproto) and its peak (``ru_maxrss``) after it; the difference is compared with the size
of the decoded images plus the feature matrix. Memory-mapped cache pages that were touched count as
resident. ``tracemalloc`` peaks (Python and NumPy allocations, not torch's) are printed too.

Run (record the output under reports/benchmarks/):

    CLPROTO_DATA=../shared/data CLPROTO_MODELS=../shared/models .venv/bin/python benchmarks/cache_cold_warm.py
    # --per-class 500 100: a per-class subset zip (first N train / M test images of each class)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
import zipfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BACKBONE = "torchscript:mobilenet_v1_0.5_160_imagenet.pt"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


# --------------------------------------------------------------------------- child measurements
def child(mode: str, spec: str, cache: str) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from clproto.config import load_scenario, strategy_from_dict
    from clproto.data.paths import models_root
    from clproto.features.backbone import DEFAULT_BATCH
    from clproto.data.sources import load_dataset
    from clproto.runner import Runner
    from clproto.strategies import REGISTRY

    warnings.filterwarnings("ignore")
    out: dict = {"mode": mode}
    before = _rss_bytes()
    tracemalloc.start()
    t0 = time.perf_counter()
    if mode == "decode":
        ds = load_dataset(spec, cache_dir=cache, progress=False)
    elif mode == "floor":
        ds = load_dataset(spec, cache_dir=cache, progress=False)
        net = torch.jit.load(str(models_root() / BACKBONE.split(":", 1)[1]), map_location="cpu").eval()
        dim = 0
        with torch.inference_mode():
            for images in (ds.train_x, ds.test_x):
                for s in range(0, len(images), DEFAULT_BATCH):
                    x = torch.from_numpy(np.array(images[s:s + DEFAULT_BATCH])).permute(0, 3, 1, 2).float().div_(255.0)
                    x = F.interpolate(x, size=(160, 160), mode="bilinear", align_corners=False)  # (B, 3, 160, 160)
                    dim = net(x).shape[1]
        out["features_bytes"] = (len(ds.train_x) + len(ds.test_x)) * dim * 4
    else:  # cold / warm: what `clproto run scenarios/split-cifar10.toml strategies/nmc.toml --seeds 0` does
        scenario = load_scenario(ROOT / "scenarios/split-cifar10.toml")
        scenario = dataclasses.replace(scenario, dataset=spec)
        strategy = strategy_from_dict({"name": "nmc", "implementation": "nmc", "backbone": BACKBONE}, REGISTRY)
        runner = Runner(cache_dir=cache, progress=False)
        result = runner.run(scenario, strategy, seed=0)
        ds = runner.dataset(spec)
        out["note"] = result.notes[0]
        out["final_accuracy"] = result.metrics.final_accuracy
        feats = runner.features(ds, BACKBONE).features
        out["features_bytes"] = int(feats.train_x.nbytes + feats.test_x.nbytes)
    out["seconds"] = time.perf_counter() - t0
    out["tracemalloc_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    out["rss_before"] = before
    out["rss_peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out["images_bytes"] = int(ds.train_x.nbytes + ds.test_x.nbytes)
    out["images"] = int(len(ds.train_x) + len(ds.test_x))
    out["threads"] = torch.get_num_threads()
    return out


# --------------------------------------------------------------------------- parent
def subset_zip(source: Path, target: Path, train: int, test: int) -> None:
    """The first ``train`` / ``test`` images (by name) of every class, plus classes.tsv."""
    counts: Counter = Counter()
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_STORED) as dst:
        for name in sorted(src.namelist()):
            parts = name.split("/")
            if len(parts) == 3 and parts[0] in ("train", "test") and parts[2]:
                key = (parts[0], parts[1])
                if counts[key] >= (train if parts[0] == "train" else test):
                    continue
                counts[key] += 1
            elif name.endswith("/"):
                continue
            dst.writestr(name, src.read(name))


def run_child(mode: str, spec: str, cache: str, env: dict, threads: int | None = None) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--spec", spec, "--cache", cache,
           *(["--threads", str(threads)] if threads else [])]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise SystemExit(f"child {mode} failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zip", default="cifar10.zip", help="image-folder zip under the data root")
    ap.add_argument("--per-class", type=int, nargs=2, metavar=("TRAIN", "TEST"),
                    help="use a subset zip with the first TRAIN / TEST images of each class")
    ap.add_argument("--steps", nargs="+", default=["decode", "floor", "cold", "warm", "floor"],
                    choices=("decode", "floor", "cold", "warm"),
                    help="measurements to run, in order (default: decode floor cold warm floor)")
    ap.add_argument("--threads", type=int, metavar="N", help="torch threads of every step (default: torch's, all cores)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        print(json.dumps(child(args.child, args.spec, args.cache)))
        return 0

    from clproto.data.paths import data_root

    import torch

    with tempfile.TemporaryDirectory(prefix="clproto-bench-") as tmp:
        env = dict(os.environ)
        source = data_root() / args.zip
        if args.per_class:
            target = Path(tmp) / f"subset-{args.per_class[0]}-{args.per_class[1]}.zip"
            subset_zip(source, target, *args.per_class)
            spec = f"imagefolder:{target}"
        else:
            spec = f"imagefolder:{source}"
        cache = str(Path(tmp) / "cache")  # private: starts empty
        print(f"# benchmark 5b: feature cache cold vs warm vs a plain forward pass ({os.cpu_count()} cores, torch "
              f"{torch.__version__}; machine shared with other jobs: wall times are noisy, measured side by side)")
        print(f"data {spec} ; backbone {BACKBONE} ; every step in a fresh process")
        rows = []
        for mode in args.steps:
            r = run_child(mode, spec, cache, env, args.threads)
            rows.append(r)
            extra = f"  [{r['note']}]" if "note" in r else ""
            print(f"{mode:<7} {r['seconds']:8.1f}s  {r['images']} images, {r['threads']} threads, "
                  f"RSS {r['rss_before'] / 2**20:6.0f} -> peak {r['rss_peak'] / 2**20:6.0f} MB, "
                  f"tracemalloc peak {r['tracemalloc_peak'] / 2**20:6.0f} MB{extra}", flush=True)
        if args.steps != ["decode", "floor", "cold", "warm", "floor"]:
            report_memory([r for r in rows if r["mode"] == "cold"], [r for r in rows if r["mode"] == "decode"])
            return 0
        decode, floor1, cold, warm, floor2 = rows
        floor = (floor1["seconds"] + floor2["seconds"]) / 2
        print(f"\nimages/s in the floor pass: {floor1['images'] / floor:.0f}")
        print(f"cold run / floor (mean of the two floor passes):            {cold['seconds'] / floor:.3f}  (target <= 1.15)")
        print(f"cold run / floor, each pass: {cold['seconds'] / floor1['seconds']:.3f}, {cold['seconds'] / floor2['seconds']:.3f}")
        print(f"(decode + cold run) / floor, decoding the zip included:     {(decode['seconds'] + cold['seconds']) / floor:.3f}")
        print(f"cold / warm:                                                {cold['seconds'] / warm['seconds']:.1f}x")
        budget = cold["images_bytes"] + cold["features_bytes"]
        grown = cold["rss_peak"] - cold["rss_before"]
        print(f"peak memory of the cold run: {grown / 2**20:.0f} MB above its start (RSS {cold['rss_before'] / 2**20:.0f} MB "
              f"after importing torch/clproto) vs decoded images + features = {cold['images_bytes'] / 2**20:.0f} + "
              f"{cold['features_bytes'] / 2**20:.0f} MB  ->  {grown / budget:.2f}x  (target <= 1.5)")
        work = max(floor1["rss_peak"] - floor1["rss_before"], floor2["rss_peak"] - floor2["rss_before"]) - floor1["images_bytes"]
        print(f"  of which the backbone's own working memory (floor pass peak growth minus its images): {work / 2**20:.0f} MB; "
              f"without it: {(grown - work) / 2**20:.0f} MB  ->  {(grown - work) / budget:.2f}x")
        print(f"peak memory of the decode step: {(decode['rss_peak'] - decode['rss_before']) / 2**20:.0f} MB above its "
              f"start for {decode['images_bytes'] / 2**20:.0f} MB of decoded images")
    return 0


def report_memory(cold: list[dict], decode: list[dict]) -> None:
    """Peak memory of the cold run (and decode step) against decoded images + features, no floor pass."""
    for c in cold:
        budget = c["images_bytes"] + c["features_bytes"]
        grown = c["rss_peak"] - c["rss_before"]
        print(f"peak memory of the cold run: {grown / 2**20:.0f} MB above its start (RSS {c['rss_before'] / 2**20:.0f} MB "
              f"after importing torch/clproto) vs decoded images + features = {c['images_bytes'] / 2**20:.0f} + "
              f"{c['features_bytes'] / 2**20:.0f} MB  ->  {grown / budget:.2f}x  (target <= 1.5)")
    for d in decode:
        print(f"peak memory of the decode step: {(d['rss_peak'] - d['rss_before']) / 2**20:.0f} MB above its start "
              f"for {d['images_bytes'] / 2**20:.0f} MB of decoded images")


if __name__ == "__main__":
    sys.exit(main())
