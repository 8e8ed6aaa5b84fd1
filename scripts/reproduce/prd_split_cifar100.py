"""Reproduce PRD (Asadi et al., ICML 2023) on Split-CIFAR-100 (20 tasks) with the official budget.

    python scripts/reproduce/prd_split_cifar100.py --data-root DATA --out runs/reproduce/prd-cifar100

Protocol: scripts/reproduce/definitions/split-cifar100-20tasks.toml — CIFAR-100 as 20 tasks of 5 classes in
label order, as PRD's code builds it (github.com/naderAsadi/Probing-Continual-Learning, data/base.py), every
test image of the seen classes. Strategy: scripts/reproduce/definitions/prd-paper-split-cifar100.toml — the
official command of the code's README ("To reproduce the results in Figure 2"): ResNet-18 (64 filters, 3x3
stem), 100 epochs per task, batch 128, SGD lr 0.01, SupCon tau 0.1, prototype loss x 2, relation
distillation x 4, no stored samples. Class-IL (argmax over every seen class) and task-IL (argmax within the
task) accuracies are both measured. Data: CIFAR-100's python version in <data root>/torchvision.

GPU budget (estimated, not measured): about 2 h per seed on one V100-class GPU and about 3 GB of GPU memory —
20 tasks x 100 epochs x 2 500 images, two augmented views plus the frozen previous model (~11 TFLOP per
task-epoch). Three seeds by default. On the CPU (the default; `--device cuda` runs it on a GPU, not tried here) it takes
~4 min per task-epoch on 2 cores at ~50 GFLOP/s, ~5 days per seed. Each task is checkpointed: an
interrupted run resumes from its last finished task.

Paper figures: not found. The paper reports PRD on Split-CIFAR-100 in its Figure 2 (a plot) and tables whose
text is not available here (arXiv 2303.14771 / PMLR v202 asadi23a); the official repository publishes the
command but no numbers. The script prints the measured final and average incremental accuracies (class-IL) and
the final task-IL accuracy with "no paper figure" and exits 0 unless a run fails; fill in ``FIGURES`` below
from the paper to check them. Split-MiniImageNet, the command's other benchmark, reads the few-shot
meta-learning pickles (mini-imagenet-cache-*.pkl, 500/100 images per class) that clproto does not load; it
has no script.
Exit code: 0 reproduced or nothing to check, 1 a figure outside its tolerance, 2 bad input.
"""

from __future__ import annotations

import sys

from _common import DEFINITIONS, Budget, Figure, Reproduction, Smoke, main

MISSING = ("not found: the paper's PRD numbers (Fig. 2 / tables, arXiv 2303.14771) are not available here; the "
           "official repository publishes none")
FIGURES = (
    Figure("final", None, MISSING, 2.0),
    Figure("avg_inc", None, MISSING, 2.0),
    Figure("task_il_final", None, MISSING, 2.0),
)

REPRODUCTION = Reproduction(
    name="prd-split-cifar100",
    paper="PRD (Asadi et al., ICML 2023)",
    scenario=DEFINITIONS / "split-cifar100-20tasks.toml",
    strategies=(DEFINITIONS / "prd-paper-split-cifar100.toml",),
    figures={"prd-paper-split-cifar100": FIGURES},
    budget=Budget(gpu="~2 h per seed on one V100-class GPU, ~3 GB (estimated: 20 tasks x 100 epochs x 2 500 images, "
                      "two views + the previous model); 3 seeds by default",
                  cpu="~4 min per task-epoch on 2 cores, ~5 days per seed (estimated)"),
    deviations=(
        "the first task trains 100 epochs at a constant lr; the official command adds 120 warm-up epochs to it "
        "(--n_warmup_epochs 120, lr x 0.1 after epochs 120 and 160)",
        "augmentation is crop (pad 4) + flip; the code adds ColorJitter(0.4, 0.4, 0.4, p 0.8) and RandomGrayscale(0.2) "
        "(data/cifar.py)",
        "class-IL prediction scores the prototypes of seen classes only; the code's also scores the untrained "
        "prototypes of future tasks (clproto/strategies/prd.py)",
    ),
    seeds=(0, 1, 2),
    smoke=Smoke(scenario=("scenario.train_per_class=2", "scenario.test_per_class=1"),
                strategy=("strategy.params.epochs=1", "strategy.params.batch_size=10",
                          "strategy.params.architecture=\"convnet-small\"")),
)

if __name__ == "__main__":
    sys.exit(main(REPRODUCTION, __doc__))
