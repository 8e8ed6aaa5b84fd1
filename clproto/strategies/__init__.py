"""Strategies and the default registry.

``REGISTRY`` lists every built-in implementation explicitly, here and only here. Add your own
with ``clproto.REGISTRY.register(name, cls)`` (or a copy of it), see the README.
"""

from clproto.strategies.avalanche_strategy import AvalancheConfig, AvalancheStrategy
from clproto.strategies.base import Registered, Registry, Strategy, build_strategy
from clproto.strategies.fecam import FeCAM, FeCAMConfig
from clproto.strategies.fetril import FeTrIL, FeTrILConfig
from clproto.strategies.finetune import FineTune, FineTuneConfig
from clproto.strategies.joint import Joint, JointConfig
from clproto.strategies.nmc import NMC, NMCConfig
from clproto.strategies.prd import PRD, PRDConfig
from clproto.strategies.ranpac import RanPAC, RanPACConfig
from clproto.strategies.slda import SLDA, SLDAConfig
from clproto.strategies.teen import TEEN, TEENConfig


def default_registry() -> Registry:
    reg = Registry()
    reg.register("nmc", NMC, description="nearest-mean classifier on frozen features (Janson et al. 2022; SimpleCIL)")
    reg.register("prd", PRD, description="prototype-sample relation distillation, replay-free (Asadi et al. 2023)",
                 scenario_kinds=("class-incremental",))
    reg.register("finetune", FineTune, description="fine-tuning with cross-entropy, no protection (lower bound)",
                 scenario_kinds=("class-incremental",))
    reg.register("joint", Joint, description="joint training on all data seen so far (upper bound)",
                 scenario_kinds=("class-incremental",))
    reg.register("teen", TEEN, description="prototypes with training-free calibration toward base classes (Wang et al. 2023)",
                 scenario_kinds=("few-shot",))
    reg.register("slda", SLDA, description="streaming LDA: running class means, one shared streaming covariance (Hayes & Kanan 2020)")
    reg.register("fecam", FeCAM, description="Mahalanobis distance with per-class shrunk covariances, Tukey transform (Goswami et al. 2023)")
    reg.register("ranpac", RanPAC, description="random ReLU projection + ridge class prototypes, training-free (McDonnell et al. 2023)")
    reg.register("fetril", FeTrIL, description="linear classifier on features + translated pseudo-features of past classes (Petit et al. 2023)")
    reg.register("avalanche", AvalancheStrategy, description="a strategy of avalanche.training (EWC, iCaRL, ...) on clproto's network and budget",
                 scenario_kinds=("class-incremental",))
    return reg


REGISTRY = default_registry()

__all__ = ["AvalancheConfig", "AvalancheStrategy", "FeCAM", "FeCAMConfig", "FeTrIL", "FeTrILConfig", "FineTune", "FineTuneConfig", "Joint", "JointConfig", "NMC", "NMCConfig", "PRD", "PRDConfig", "REGISTRY", "RanPAC", "RanPACConfig", "Registered", "Registry", "SLDA", "SLDAConfig", "Strategy", "TEEN", "TEENConfig", "build_strategy", "default_registry"]
