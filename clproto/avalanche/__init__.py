"""Avalanche (avalanche-lib 0.6) interop: scenarios both ways, clproto strategies inside Avalanche.

    from clproto.avalanche import ClprotoTemplate, from_avalanche, to_avalanche

    benchmark = to_avalanche(scenario)                  # train_stream / test_stream, one experience each
    template = ClprotoTemplate(strategy=NMC(num_classes=10), num_classes=10, evaluator=my_eval_plugin)
    for t, exp in enumerate(benchmark.train_stream):
        template.train(exp)                              # Avalanche's own loop, plugins and loggers
        template.eval(benchmark.test_stream[: t + 1])   # the seen experiences, as clproto evaluates
    back = from_avalanche(benchmark, dataset=scenario.dataset)   # the same scenario again

Everything here is an adapter over clproto's public API; no clproto class inherits from Avalanche.

The package: :mod:`~clproto.avalanche.to_benchmark` (clproto → Avalanche),
:mod:`~clproto.avalanche.from_benchmark` (Avalanche → clproto), :mod:`~clproto.avalanche.samples`
(the sample readers both share), :mod:`~clproto.avalanche.template` (clproto strategies inside
Avalanche) and :mod:`~clproto.avalanche.metrics` (reading Avalanche's metrics); import every name
from ``clproto.avalanche``.

**Scenarios.** :func:`to_avalanche` keeps the clproto inputs unchanged (uint8 ``H×W×C`` images or
float feature vectors), one Avalanche experience per clproto experience (few-shot sessions
included), task label 0 everywhere (class-incremental), and a per-sample data attribute
``clproto_index`` (:data:`INDEX_ATTRIBUTE`): the sample's index into the clproto dataset's train
or test split. Experiences also carry ``clproto_classes`` (their classes in clproto's order) and
``clproto_base_classes``; the benchmark carries ``clproto_info`` (:class:`ScenarioInfo`).
:func:`from_avalanche` reads any class-incremental Avalanche benchmark whose experiences hold
classification datasets (``targets``), e.g. from ``class_incremental_benchmark`` or
``benchmark_from_datasets``; with ``dataset=`` it maps samples back onto that clproto dataset
through ``clproto_index``, so the round trip keeps every index.

**Strategies.** :class:`ClprotoTemplate` is a ``SupervisedTemplate`` whose model scores with
``strategy.predict_scores`` and whose per-experience training step calls
``strategy.fit_experience`` once. It runs **zero template epochs**: frozen-feature strategies
(NMC, TEEN) waste no SGD step, and trained strategies (PRD, fine-tuning, joint) run their own
optimiser inside that training hook. Their loss still goes through the template: while it fits,
the template listens to the strategy's :class:`~clproto.training.loop.TrainingLoop` and, after
every optimiser step, sets ``mbatch`` (first augmented view, labels, task 0), ``mb_output`` (the
strategy's training scores) and ``loss``, then fires Avalanche's ``before/after_training_iteration``
callbacks (and ``before/after_training_epoch`` around each epoch), so ``loss_metrics(minibatch=True,
epoch=True)``, training ``accuracy_metrics`` and every logger see the real per-batch loss. Plugins
that change the optimisation itself (e.g. ``LRSchedulerPlugin``, ``EWCPlugin``'s penalty) have no
effect: the template's optimiser is unused. The strategy is fitted on the
template's ``adapted_dataset``, so plugins that replace it (e.g. ``GDumbPlugin``) apply; plugins
that only swap the dataloader (``ReplayPlugin``) do not.

**Metric parity.** ``accuracy_metrics(experience=True)`` equals clproto's ``A[t][j]`` and
``accuracy_metrics(stream=True)`` its seen-class accuracy when ``eval`` gets
``test_stream[: t + 1]`` after training on experience ``t``; ``forgetting_metrics`` equals
:func:`clproto.evaluation.metrics.forgetting_from_first` (``A[j][j] − A[T][j]``), not clproto's
headline ``forgetting`` (``max_l A[l][j] − A[T][j]``, Chaudhry et al. 2018). See
``tests/integration/test_avalanche.py``. Exact score ties may break differently (Avalanche's argmax runs over
class ids, clproto's over the seen classes in arrival order).

**Avalanche pitfalls this adapter does not inherit** (checked in the avalanche-lib 0.6.0 sources):

* ``models.NCMClassifier`` stores its means in a ``(max_class + 1, D)`` tensor whose rows for
  missing classes are zero vectors (``_vectorize_means_dict``), and its ``adaptation`` adds zero
  means for the classes of each evaluated experience (``init_missing_classes``); ``forward`` then
  scores those classes by ``−‖x − 0‖``, so an unseen class can win the argmax. clproto strategies
  score unseen classes ``-inf``, which :class:`StrategyModule` passes through unchanged.
  (``update_class_means_dict`` also blends a re-seen class's mean with momentum 0.5 instead of
  weighting by counts; clproto's NMC keeps running sums.)
* ``class_incremental_benchmark(num_experiences=k)`` gives every experience ``C // k`` classes
  and silently drops the last ``C mod k`` classes of the order (the comment says the final
  experience takes the remainder; the code slices ``[start, start + C // k)``).
  :func:`to_avalanche` builds each experience from the clproto experience's own indices instead,
  and :func:`from_avalanche` reports the classes a benchmark holds.
* The same generator concatenates classes in reverse (``data_by_class[c].concat(curr_data)``), so
  sample positions inside an experience say nothing about the source dataset; clproto carries
  ``clproto_index`` instead of relying on positions.
* ``StreamAccuracy`` averages over whatever stream ``eval`` receives; evaluating the full
  ``test_stream`` mixes in the test samples of classes not yet learned.
"""

from clproto.avalanche.from_benchmark import from_avalanche
from clproto.avalanche.metrics import AvalancheMetrics, read_metrics
from clproto.avalanche.samples import INDEX_ATTRIBUTE, SUPPORTED_BENCHMARKS, WHERE  # noqa: F401 (importable as before)
from clproto.avalanche.template import ClprotoTemplate, StrategyModule
from clproto.avalanche.to_benchmark import ScenarioInfo, to_avalanche

__all__ = [
    "INDEX_ATTRIBUTE", "AvalancheMetrics", "ClprotoTemplate", "ScenarioInfo", "StrategyModule", "from_avalanche",
    "read_metrics", "to_avalanche",
]
