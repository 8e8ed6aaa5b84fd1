"""Fine-tuning the pretrained MobileNetV1 on a few-shot base session: time per epoch and extraction, per setting.

Times base-session training (the ``base-trained`` backbone with ``architecture = "torchscript:..."``,
clproto.training.base_session) on a per-class subset of the real base session of
``scenarios/fscil-tinyimagenet100-fixed-order.toml``, and extrapolates to one epoch of the full session
(60 classes x 450 training images; 50 per class held out for validation) and to extracting the whole dataset
(55 000 images) with the fine-tuned network. It also prints the validation accuracy each setting reaches on
the subset (far smaller than the real session: a sanity check of the learning rates, not a result).

Each setting is a comma-separated list of base-trained fields (shorthand syntax), e.g.

    CLPROTO_DATA=../shared/data CLPROTO_MODELS=../shared/models CLPROTO_CACHE=... \\
        nice .venv/bin/python benchmarks/mobilenet_finetune.py --per-class 20 --epochs 1 \\
        "image_size=64,lr=0.1,network_lr=0.001" "image_size=64,lr=0.1,network_lr=0.001,train_from=\\"blocks.6\\""
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
from clproto.features.backbone import parse_backbone  # noqa: E402
from clproto.runner import Runner  # noqa: E402
from clproto.training.base_session import encode, train_base_session  # noqa: E402

MODEL = "torchscript:mobilenet_v1_0.5_160_imagenet.pt"
FULL_TRAIN = 60 * 450  # base-session images trained on per epoch (500 per class, 10 % held out)
FULL_DATASET = 100 * 550  # images whose features are extracted (train + test of every class)


def subset(labels: np.ndarray, per_class: int) -> np.ndarray:
    """The first ``per_class`` positions of every class (deterministic)."""
    return np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", help='base-trained fields, e.g. "image_size=64,lr=0.1,network_lr=0.001"')
    ap.add_argument("--per-class", type=int, default=20, help="base-session images per class to time on")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    runner = Runner(progress=False)
    sc = runner.scenario(load_scenario(ROOT / "scenarios" / "fscil-tinyimagenet100-fixed-order.toml"), seed=0)
    base = sc[0].train_indices
    pick = subset(sc.dataset.train_y[base], args.per_class)
    x, y = sc.dataset.train_x[base][pick], sc.dataset.train_y[base][pick]
    rows = []
    for setting in args.settings:
        cfg = parse_backbone(f"base-trained:{MODEL},epochs={args.epochs},val_fraction=0.2,{setting}")
        tb = train_base_session(x, y, config=cfg, context=RunContext(progress=False))
        n_train = len(x) - round(0.2 * args.per_class) * len(np.unique(y))
        per_s = n_train / float(np.median([h["seconds"] for h in tb.history]))  # training + validation pass
        t0 = time.perf_counter()
        encode(tb, x[:512], progress=False)
        extract_per_s = 512 / (time.perf_counter() - t0)
        row = {"setting": setting, "train_images": n_train, "train_images_per_s": per_s,
               "full_epoch_min": FULL_TRAIN / per_s / 60, "extract_images_per_s": extract_per_s,
               "full_extract_min": FULL_DATASET / extract_per_s / 60,
               "val_acc": [h["val_acc"] for h in tb.history], "loss": [h["loss"] for h in tb.history]}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\n{'train img/s':>11} {'full epoch':>10} {'extract img/s':>13} {'full extract':>12}  val acc per epoch  setting")
    for r in rows:
        print(f"{r['train_images_per_s']:>11.1f} {r['full_epoch_min']:>8.1f} m {r['extract_images_per_s']:>13.1f} "
              f"{r['full_extract_min']:>10.1f} m  {' '.join(f'{a:.3f}' for a in r['val_acc']):<17}  {r['setting']}")


if __name__ == "__main__":
    main()
