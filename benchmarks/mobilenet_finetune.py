"""Fine-tuning the pretrained MobileNetV1 on a few-shot base session: time per epoch and extraction, per input side.

Times base-session training (clproto.training.base_session, the base-trained backbone with
``architecture = "torchscript:..."``) on a per-class subset of the real base session of
``scenarios/fscil-tinyimagenet100-fixed-order.toml`` and extrapolates to the full session (60 classes x 500
images, 10 % held out for validation) and to extracting the whole dataset (55 000 images) with the
fine-tuned network. With ``--pilot`` it also prints the validation accuracy reached by each learning-rate
setting after one epoch on the subset (to choose a budget; the subset is far smaller than the real session).

    CLPROTO_DATA=../shared/data CLPROTO_MODELS=../shared/models CLPROTO_CACHE=... \\
        nice .venv/bin/python benchmarks/mobilenet_finetune.py [--per-class 20] [--sizes 64 96 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clproto.config import load_scenario  # noqa: E402
from clproto.context import RunContext  # noqa: E402
from clproto.runner import Runner  # noqa: E402
from clproto.training.base_session import BaseTrainingConfig, encode, train_base_session  # noqa: E402

MODEL = "torchscript:mobilenet_v1_0.5_160_imagenet.pt"
FULL_TRAIN = 60 * 450  # base-session images trained on per epoch (500 per class, 10 % held out)
FULL_DATASET = 100 * 550  # images whose features are extracted (train + test of every class)


def subset(labels: np.ndarray, per_class: int) -> np.ndarray:
    """The first ``per_class`` positions of every class (deterministic)."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-class", type=int, default=20, help="base-session images per class to time on")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 128], help="input sides to time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--pilot", nargs="*", default=[], metavar="LR[/NETWORK_LR]",
                    help="learning-rate settings to compare by validation accuracy after one epoch (e.g. 0.004 0.05/0.005)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runner = Runner(progress=False)
    sc = runner.scenario(load_scenario(ROOT / "scenarios" / "fscil-tinyimagenet100-fixed-order.toml"), seed=0)
    base = sc[0].train_indices
    x_all, y_all = sc.dataset.train_x[base], sc.dataset.train_y[base]
    pick = subset(y_all, args.per_class)
    x, y = x_all[pick], y_all[pick]
    quiet = RunContext(progress=False)
    rows = []
    settings = [(0.05, None)] + [(float(p.split("/")[0]), float(p.split("/")[1]) if "/" in p else None)
                                 for p in args.pilot]
    for size in args.sizes:
        for lr, network_lr in settings if size == args.sizes[0] else settings[:1]:
            cfg = BaseTrainingConfig(architecture=MODEL, epochs=1, batch_size=args.batch_size, lr=lr,
                                     network_lr=network_lr, image_size=size, val_fraction=0.2 if args.pilot else 0.1)
            t0 = time.perf_counter()
            tb = train_base_session(x, y, config=cfg, context=quiet)
            total = time.perf_counter() - t0
            epoch_s = tb.history[0]["seconds"]
            n_train = round(len(x) * (1 - cfg.val_fraction))
            t1 = time.perf_counter()
            encode(tb, x[:512], progress=False)
            extract_ips = 512 / (time.perf_counter() - t1)
            row = {"size": size, "lr": lr, "network_lr": network_lr, "train_images": n_train,
                   "train_images_per_s": n_train / epoch_s, "full_epoch_min": FULL_TRAIN / (n_train / epoch_s) / 60,
                   "extract_images_per_s": extract_ips, "full_extract_min": FULL_DATASET / extract_ips / 60,
                   "val_acc": tb.best_val_accuracy, "call_s": total}
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\n{'side':>4} {'lr':>6} {'net lr':>7} {'train img/s':>11} {'full epoch':>10} {'extract img/s':>13} "
          f"{'full extract':>12} {'val acc':>7}")
    for r in rows:
        print(f"{r['size']:>4} {r['lr']:>6} {str(r['network_lr']):>7} {r['train_images_per_s']:>11.1f} "
              f"{r['full_epoch_min']:>8.1f} m {r['extract_images_per_s']:>13.1f} {r['full_extract_min']:>10.1f} m "
              f"{r['val_acc'] if r['val_acc'] is None else round(r['val_acc'], 3)!s:>7}")


if __name__ == "__main__":
    main()
