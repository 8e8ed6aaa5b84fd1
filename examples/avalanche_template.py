"""The example strategy of examples/my_strategy.py inside Avalanche's own training loop.

A clproto scenario becomes an Avalanche benchmark (`to_avalanche`), the strategy runs in an
Avalanche `SupervisedTemplate` (`ClprotoTemplate`) with an `EvaluationPlugin` and a logger, and
the numbers Avalanche's metrics report are checked against clproto's own runner.

    python examples/avalanche_template.py
"""

import sys
from pathlib import Path

from avalanche.evaluation.metrics import accuracy_metrics, forgetting_metrics
from avalanche.logging import TextLogger
from avalanche.training.plugins import EvaluationPlugin

import clproto
from clproto.avalanche import ClprotoTemplate, read_metrics, to_avalanche
from clproto.features.backbone import load_backbone

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import my_strategy  # noqa: E402  (the strategy module of the first example)

scenario_config = clproto.load_scenario(HERE.parent / "scenarios" / "split-digits.toml")
scenario = clproto.Runner(progress=False).scenario(scenario_config, seed=0)
benchmark = to_avalanche(scenario)  # uint8 8x8x1 digit images, 5 experiences of 2 classes

evaluator = EvaluationPlugin(
    accuracy_metrics(experience=True, stream=True),
    forgetting_metrics(experience=True, stream=True),
    loggers=[TextLogger(sys.stdout)],
)
template = ClprotoTemplate(
    strategy=my_strategy.SLDA(num_classes=scenario.num_classes),
    num_classes=scenario.num_classes,
    backbone=load_backbone("pixels"),  # the strategy consumes features: flattened pixels
    evaluator=evaluator,
)
for t, experience in enumerate(benchmark.train_stream):
    template.train(experience)  # fit_experience once, zero SGD steps
    template.eval(benchmark.test_stream[: t + 1])  # the experiences seen so far

avalanche = read_metrics(evaluator, num_experiences=len(scenario))

# The same strategy through clproto's runner (registered by the plugin function of example (a)).
registry = clproto.REGISTRY.copy()
my_strategy.register(registry)
strategy = clproto.load_strategy(HERE / "my_strategy.toml", registry=registry)
result = clproto.Runner(registry=registry, progress=False).run(scenario_config, strategy, seed=0)

print(f"\n{'':28}{'Avalanche':>12}{'clproto':>12}")
rows = [("stream accuracy, last step", avalanche.stream_accuracy[-1], result.metrics.final_accuracy),
        ("forgetting (first - last)", avalanche.stream_forgetting, result.metrics.forgetting_from_first)]
for label, a, c in rows:
    print(f"{label:<28}{100 * a:>11.2f}%{100 * c:>11.2f}%")
print(f"{'forgetting (max - last)':<28}{'-':>12}{100 * result.metrics.forgetting:>11.2f}%")
if any(abs(a - c) > 1e-6 for _, a, c in rows):
    sys.exit("Avalanche's metrics and clproto's disagree")
