"""Reproduce NMC (Janson et al. 2022) and SimpleCIL (Zhou et al. 2023) on CIFAR-100 B0-Inc10 with a frozen ViT-B/16.

    python scripts/reproduce/vit_cifar100_b0_inc10.py --data-root DATA --out runs/reproduce/vit-cifar100

Protocol: scenarios/cifar100-b0-inc10.toml — 10 experiences of 10 classes in PyCIL's seed-1993 class order
(the "10-split CIFAR-100"), every test image of the seen classes. Strategies (training-free, on the same
frozen features, computed once): scripts/reproduce/definitions/nmc-vit-b16-in21k.toml (Euclidean distance to
the means of L2-normalised features) and simplecil-vit-b16-in21k.toml (cosine to the means of raw features).
Backbone: timm's vit_base_patch16_224.augreg_in21k — the ImageNet-21k ViT-B/16 that PILOT's SimpleCIL loads as
"vit_base_patch16_224_in21k" (timm 0.6.12; the tagged name in timm >= 0.9) — on 224 x 224 inputs in [0, 1],
768-d features. The weights come from the Hugging Face hub through timm (its cache: $HF_HOME); offline, pass
--backbone 'timm:vit_base_patch16_224.augreg_in21k@FILE?size=224&norm=none&batch=64' with FILE a local state
dict in the models root. Data: CIFAR-100's python version in <data root>/torchvision.

GPU budget (estimated, not measured): under 10 min on one V100-class GPU and about 2 GB of GPU memory — one
forward pass of the 60 000 images (~17.6 GFLOP each, ~1 PFLOP); both strategies and both CIFAR-100 scripts
(B0-Inc10, B0-Inc5) share the cached features. On the CPU (the default; `--device cuda`
runs it on a GPU, not tried here): ~6 h on 2 cores at ~50 GFLOP/s, then seconds.

Paper figures: NMC final accuracy 88.53 % on 10-split CIFAR-100 with ViT-B/16 (ImageNet-21k) — Janson, Zhang,
Aljundi & Elhoseiny 2022 (NeurIPS 2022 workshop), as quoted in issue 14; the paper's table was not re-read
here (its text is not available offline). NMC's final accuracy does not depend on the class order (the class
means at the end are the same), so PyCIL's order is comparable to the paper's. SimpleCIL on B0-Inc10: no
figure found (its paper's CIFAR-100 row is B0-Inc5: vit_cifar100_b0_inc5.py). Tolerance: 1.5 points
(training-free and deterministic; the resize differs from the papers').
Exit code: 0 reproduced, 1 a figure outside its tolerance, 2 bad input (e.g. the dataset or the weights missing).
"""

from __future__ import annotations

import sys

from _common import SCENARIOS, Figure, Reproduction, main
from _vit import NMC, RESIZE, SIMPLECIL, SMOKE, TIMM, budget

JANSON = "Janson et al. 2022, NMC ViT-B/16 in21k, 10-split CIFAR-100 (as quoted in issue 14; table not re-read here)"
NO_SIMPLECIL = "not found: SimpleCIL's paper reports CIFAR-100 B0-Inc5 only (Zhou et al. 2023, Table 1)"
NO_AVG = "not found: Janson et al. report the final accuracy only (as quoted in issue 14)"

REPRODUCTION = Reproduction(
    name="vit-cifar100-b0-inc10",
    paper="NMC (Janson et al. 2022) and SimpleCIL (Zhou et al. 2023)",
    scenario=SCENARIOS / "cifar100-b0-inc10.toml",
    strategies=(NMC, SIMPLECIL),
    figures={
        "nmc-vit-b16-in21k": (Figure("final", 88.53, JANSON, 1.5), Figure("avg_inc", None, NO_AVG, 1.5)),
        "simplecil-vit-b16-in21k": (Figure("final", None, NO_SIMPLECIL, 1.5), Figure("avg_inc", None, NO_SIMPLECIL, 1.5)),
    },
    budget=budget("then seconds"),
    deviations=(RESIZE + "; Janson et al.'s preprocessing was not checked", TIMM),
    smoke=SMOKE,
    replaceable_backbone=True,
)

if __name__ == "__main__":
    sys.exit(main(REPRODUCTION, __doc__))
