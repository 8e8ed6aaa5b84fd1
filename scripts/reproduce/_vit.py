"""What the two ViT-B/16 (ImageNet-21k) CIFAR-100 reproductions share: the definitions, the budget of one forward
pass over the 60 000 images, the deviations from PILOT's preprocessing and the smoke cut (vit_cifar100_b0_inc10.py,
vit_cifar100_b0_inc5.py)."""

from __future__ import annotations

from _common import DEFINITIONS, Budget, Smoke

NMC = DEFINITIONS / "nmc-vit-b16-in21k.toml"  # Euclidean distance to the means of L2-normalised features
SIMPLECIL = DEFINITIONS / "simplecil-vit-b16-in21k.toml"  # cosine to the means of raw features (PILOT)

RESIZE = ("images are resized 32 -> 224 (bilinear, antialiased) with no crop; PILOT resizes to 256 (bicubic) and "
          "centre-crops 224")
TIMM = ("timm >= 0.9 serves the in21k weights as vit_base_patch16_224.augreg_in21k; PILOT used timm 0.6.12's "
        "vit_base_patch16_224_in21k (the same weights as far as timm's deprecation map says)")
SMOKE = Smoke(scenario=("scenario.train_per_class=3", "scenario.test_per_class=2"))


def budget(cpu_note: str) -> Budget:
    """One ViT-B/16 pass over CIFAR-100's 60 000 images (~17.6 GFLOP each); ``cpu_note`` says what the cache saves."""
    return Budget(gpu="< 10 min on one V100-class GPU, ~2 GB (estimated: one ViT-B/16 pass over 60 000 images)",
                  cpu=f"~6 h on 2 cores for the features (estimated; {cpu_note})")
