"""Reproduce SimpleCIL (Zhou et al. 2023) and NMC (Janson et al. 2022) on CIFAR-100 B0-Inc5 with a frozen ViT-B/16.

    python scripts/reproduce/vit_cifar100_b0_inc5.py --data-root DATA --out runs/reproduce/vit-cifar100

Protocol: scenarios/cifar100-b0-inc5.toml — 20 experiences of 5 classes in PyCIL's seed-1993 class order (the
order PILOT's exps/cifar/simplecil.json draws with seed 1993), every test image of the seen classes.
Strategies (training-free, on the same frozen features, computed once): scripts/reproduce/definitions/
simplecil-vit-b16-in21k.toml (cosine to the means of raw features: LAMDA-PILOT models/simplecil.py) and
nmc-vit-b16-in21k.toml (Euclidean distance to the means of L2-normalised features). Backbone: timm's
vit_base_patch16_224.augreg_in21k — PILOT's "pretrained_vit_b16_224_in21k" -> timm "vit_base_patch16_224_in21k"
(utils/inc_net.py, timm 0.6.12; the tagged name in timm >= 0.9) — on 224 x 224 inputs in [0, 1] without
normalisation (PILOT's utils/data.py build_transform), 768-d features. The weights come from the Hugging Face
hub through timm (its cache: $HF_HOME); offline, pass --backbone
'timm:vit_base_patch16_224.augreg_in21k@FILE?size=224&norm=none&batch=64' with FILE a local state dict in the
models root. Data: CIFAR-100's python version in <data root>/torchvision.

GPU budget (estimated, not measured): under 10 min on one V100-class GPU and about 2 GB of GPU memory — one
forward pass of the 60 000 images (~1 PFLOP); run after vit_cifar100_b0_inc10.py with the same --cache-dir,
the features are read from the cache. On the CPU (the default; `--device cuda` runs it on
a GPU, not tried here): ~6 h on 2 cores at ~50 GFLOP/s (seconds with the features cached).

Paper figures: SimpleCIL, CIFAR-100 B0-Inc5, ViT-B/16-IN21K: average incremental accuracy 87.57 % and last
(final) accuracy 81.28 % — Zhou, Ye, Zhan & Liu, "Revisiting Class-Incremental Learning with Pre-Trained
Models" (arXiv 2303.07338, Table 1), as quoted in issue 14; the table was not re-read here (the paper's text
is not available offline). NMC on B0-Inc5: no figure found. Tolerance: 1.5 points (training-free and
deterministic; the resize differs from PILOT's).
Exit code: 0 reproduced, 1 a figure outside its tolerance, 2 bad input (e.g. the dataset or the weights missing).
"""

from __future__ import annotations

import sys

from _common import SCENARIOS, Figure, Reproduction, main
from _vit import NMC, RESIZE, SIMPLECIL, SMOKE, TIMM, budget

ZHOU = "Zhou et al. 2023 (arXiv 2303.07338) Table 1, CIFAR B0 Inc5, SimpleCIL ViT-B/16-IN21K (as quoted in issue 14)"
NO_NMC = "not found: Janson et al. report 10-split CIFAR-100 only"

REPRODUCTION = Reproduction(
    name="vit-cifar100-b0-inc5",
    paper="SimpleCIL (Zhou et al. 2023) and NMC (Janson et al. 2022)",
    scenario=SCENARIOS / "cifar100-b0-inc5.toml",
    strategies=(SIMPLECIL, NMC),
    figures={
        "simplecil-vit-b16-in21k": (Figure("final", 81.28, ZHOU, 1.5), Figure("avg_inc", 87.57, ZHOU, 1.5)),
        "nmc-vit-b16-in21k": (Figure("final", None, NO_NMC, 1.5), Figure("avg_inc", None, NO_NMC, 1.5)),
    },
    budget=budget("seconds when cached by the B0-Inc10 script"),
    deviations=(RESIZE, TIMM),
    smoke=SMOKE,
    replaceable_backbone=True,
)

if __name__ == "__main__":
    sys.exit(main(REPRODUCTION, __doc__))
