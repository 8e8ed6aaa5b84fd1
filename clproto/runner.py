"""Running strategies on scenarios: the loop every entry point (CLI, Python, sweeps) shares.

    runner = Runner()
    result = runner.run(scenario_config, resolved_strategy, seed=0, out_dir="runs")

For each experience ``t`` the strategy's ``fit_experience`` is called, then the evaluator
fills row ``t`` of the accuracy matrices. Datasets and backbone features are loaded once
per runner and shared by every run that needs them. A run writes ``config.json`` (the fully
resolved configuration) and ``results.json`` into ``<out>/<scenario>/<strategy>/seed<k>/``,
both atomically; a failed run writes no ``results.json``. Strategies with
``state_dict``/``load_state_dict`` are checkpointed after every experience (unless the class sets
``checkpoint_runs = False``, as NMC does: refitting is cheaper), and a run restarted with the same
configuration resumes from its last checkpoint.

Each run gets a :class:`~clproto.context.RunContext` (its seed, the runner's progress setting and
listeners), handed to strategies whose constructor takes a ``context`` and through them to their
training loops. A run draws from the global torch RNG (seeded with the run seed, restored on resume)
inside :func:`torch.random.fork_rng`: the caller's generator state is the same after the run.

Every run with a folder also writes ``log.csv`` (per-epoch losses, per-experience accuracies,
timings; see :mod:`clproto.loggers`), just before ``results.json``, and mirrors it to TensorBoard
or W&B when asked (``loggers``). ``keep_model`` keeps the strategy's state (weights-only loadable,
see :mod:`clproto.kept_models`): ``"last"`` as ``model.pt``, ``"every"`` as ``model-exp<k>.pt``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from clproto.config import ResolvedStrategy, run_hash
from clproto.context import RunContext
from clproto.devices import compute_record, context_identity, fork_rng, prepare_run
from clproto.data.dataset import Dataset
from clproto.data.sources import load_dataset
from clproto.errors import ConfigError
from clproto.evaluation.evaluator import Evaluator, StepEvaluation
from clproto.evaluation.results import RunResult, Timings
from clproto.features.backbone import BuildContext, as_backbone
from clproto.features.extraction import Extraction
from clproto.features.store import FeatureStore
from clproto.kept_models import KEEP_MODEL, model_files, save_model
from clproto.loggers import LOG_FILE, TENSORBOARD_DIR, LoggerSettings, RunLog
from clproto.run_folder import CHECKPOINT, run_dir, write_config, write_finished
from clproto.run_folder import load_checkpoint as _load_checkpoint, save_checkpoint as _save_checkpoint
from clproto.run_identity import built_scenario_identity, resolved_config, versions
from clproto.run_setup import build_model, check_kind
from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import Scenario, build_scenario
from clproto.strategies import REGISTRY, Registry
from clproto.strategies.base import ScenarioDescription
from clproto.training.loop import epochs_only

# run_dir, build_model, check_kind, resolved_config, built_scenario_identity and versions were defined here
# before the runner was split (issue 11): they stay importable from clproto.runner
__all__ = ["Runner", "build_model", "built_scenario_identity", "check_kind", "resolved_config", "run_dir", "versions"]

@dataclass
class Runner:
    """Runs (scenario, strategy, seed) triples: trains each experience, evaluates, writes the results.

    One runner loads each dataset and extracts each backbone's features once, and shares them
    with every run that needs them (the CLI, sweeps and the Python API all run through it).
    Keyword-only fields, each optional:

    * ``registry`` — where a definition's ``implementation`` is looked up (default:
      :data:`clproto.REGISTRY`; pass a copy with your own strategies registered);
    * ``data_root``, ``models_root``, ``cache_dir`` — folders of datasets, backbone files and the
      feature cache (default: ``CLPROTO_DATA`` / ``CLPROTO_MODELS`` / ``CLPROTO_CACHE``, else the
      user cache), as ``--data-root`` / ``--models-root`` / ``--cache-dir``;
    * ``progress`` — show progress bars; ``eval_batch_size`` — test samples per ``predict_scores`` call;
    * ``keep_model`` — ``None``, ``"last"`` (``model.pt``) or ``"every"`` (``model-exp<k>.pt``);
    * ``loggers`` — mirrors of ``log.csv`` (TensorBoard, W&B), see :mod:`clproto.loggers`;
    * ``datasets`` — already loaded datasets by the ``dataset`` string scenarios name them with, used
      instead of loading (e.g. ``{"tiny": dataset}`` for tests and data built in Python);
    * ``listeners`` — callables told every training event of trained strategies' loops;
    * ``device``, ``precision``, ``deterministic`` — where and how trained strategies compute (default cpu, fp32:
      the recorded numbers; README "Devices and precision"), resolved once per run.

    :meth:`run` returns a :class:`~clproto.evaluation.RunResult` (and, given ``out_dir``, writes
    ``config.json``, ``log.csv`` and ``results.json`` under ``<out_dir>/<scenario>/<strategy>/seed<k>/``);
    :meth:`check` validates a run without running it.

    Example (from the repository root)::

        import clproto

        scenario = clproto.load_scenario("scenarios/split-digits.toml")
        strategy = clproto.load_strategy("strategies/nmc-pixels.toml")
        runner = clproto.Runner(progress=False)
        result = runner.run(scenario, strategy, seed=0)  # out_dir="runs" would also write the files
        print(result.metrics.final_accuracy, result.accuracy_matrix[-1])
    """

    registry: Registry = REGISTRY  # where strategy implementations are looked up
    data_root: Optional[str] = None  # --data-root / CLPROTO_DATA / user cache
    models_root: Optional[str] = None  # --models-root / CLPROTO_MODELS / user cache
    cache_dir: Optional[str] = None  # --cache-dir / CLPROTO_CACHE / user cache
    progress: bool = True  # show progress bars
    eval_batch_size: int = 1024  # test samples scored per call to predict_scores
    keep_model: Optional[str] = None  # --keep-model: None, "last" (model.pt) or "every" (model-exp<k>.pt)
    loggers: LoggerSettings = LoggerSettings()  # --logger: mirrors of log.csv (TensorBoard, W&B)
    # datasets given by the caller, by the `dataset` string scenarios name them with (e.g. {"tiny": dataset}):
    # used instead of loading; any other spec is loaded through the dataset kinds (clproto.data.sources)
    datasets: Mapping[str, Dataset] = field(default_factory=dict)
    listeners: tuple[Callable[[Any], None], ...] = ()  # told every TrainingEvent of trained strategies' loops
    device: str = "cpu"  # --device: auto | cpu | cuda | cuda:N | mps (clproto.devices; cpu keeps results as they were)
    precision: str = "fp32"  # --precision: fp32 | bf16 | fp16 (autocast) of trained strategies
    deterministic: bool = False  # --deterministic: torch's deterministic algorithms on CUDA (slower)

    def __post_init__(self) -> None:
        if self.keep_model not in KEEP_MODEL:
            raise ConfigError("unknown --keep-model value", where="--keep-model", value=self.keep_model,
                              expected="last or every")
        self.last_log: Optional[RunLog] = None  # the log of the latest run
        for spec, given in self.datasets.items():
            if not isinstance(spec, str) or not isinstance(given, Dataset):
                raise TypeError(f"Runner(datasets=...): {spec!r} must map a dataset string to a clproto Dataset, "
                                f"not {type(given).__name__}")
        self.run_context(0).resolved()  # checks the listeners and the device now rather than at the first run
        self._datasets: dict[str, Dataset] = dict(self.datasets)  # loaded (or given) once, by spec
        self.feature_store = FeatureStore()  # every backbone's features, computed once per runner

    def run_context(self, seed: int) -> RunContext:
        """How a run with ``seed`` executes: passed to its strategy, which passes it to its loops."""
        return RunContext(seed=seed, progress=self.progress, listeners=tuple(self.listeners), device=self.device,
                          precision=self.precision, deterministic=self.deterministic)

    # ------------------------------------------------------------------ data
    def dataset(self, spec: str, *, where: str = "scenario") -> Dataset:
        """The dataset ``spec`` names (see :mod:`clproto.data.sources`), loaded once per runner."""
        if spec not in self._datasets:
            self._datasets[spec] = load_dataset(spec, data_root=self.data_root, cache_dir=self.cache_dir,
                                                where=where, progress=self.progress)
        return self._datasets[spec]

    def scenario(self, config: ScenarioConfig, *, seed: int, where: str = "scenario") -> Scenario:
        """The :class:`~clproto.scenarios.Scenario` that ``config`` and ``seed`` define, on this runner's dataset."""
        return build_scenario(config, self.dataset(config.dataset, where=where), seed=seed, where=where)

    def features(self, dataset: Dataset, backbone: Any, *, where: str = "strategy",
                 scenario: Optional[Scenario] = None) -> Extraction:
        """``backbone``'s features of ``dataset`` (a table, its shorthand, or a typed table), via the feature store.

        A kind that needs_scenario (``base-trained``) is built from ``scenario`` (and extracts the features
        of its dataset); the others ignore it.
        """
        spec = as_backbone(backbone, where=where)
        return self.feature_store.get(dataset, spec, context=self._build_context(where, scenario))

    def _build_context(self, where: str, scenario: Optional[Scenario] = None) -> BuildContext:
        return BuildContext(models_root=self.models_root, cache_dir=self.cache_dir, progress=self.progress,
                            where=where, scenario=scenario, run=self.run_context(0))  # run: device, precision

    def check(self, scenario: ScenarioConfig, strategy: ResolvedStrategy, seed: int, *, where: str = "scenario") -> None:
        """Validate a run without running it (builds the scenario, resolves the backbone).

        A strategy class may define ``check_scenario(scenario, params, where=...)`` to reject a
        scenario it cannot learn from (e.g. PRD on single-sample experiences) before any training.
        """
        entry = self.registry.get(strategy.config.implementation, where=strategy.where)
        check_kind(entry, strategy, scenario.kind, self.registry, where=where)
        sc = self.scenario(scenario, seed=seed, where=where)
        if hasattr(entry.cls, "check_scenario"):
            entry.cls.check_scenario(sc, strategy.params, where=where)
        context = self.run_context(seed).resolved()
        with fork_rng(context.torch_device):  # a constructor drawing from the global RNG leaves the caller's alone
            model = build_model(entry, strategy, num_classes=sc.num_classes, seed=seed,  # its own parameter checks
                                context=context)
        if self.keep_model and not (hasattr(model, "state_dict") and hasattr(model, "load_state_dict")):
            raise ConfigError(f"--keep-model cannot keep strategy {strategy.name!r}: its class "
                              f"{type(model).__qualname__} has no state_dict()/load_state_dict()",
                              where=strategy.where, expected="a strategy with state_dict(), or no --keep-model")
        if entry.cls.input_kind == "features":
            self.feature_store.check(strategy.backbone, context=self._build_context(strategy.where))

    # ------------------------------------------------------------------ run
    def run(self, scenario: ScenarioConfig | Scenario, strategy: ResolvedStrategy, *, seed: int,
            out_dir: str | os.PathLike | None = None, where: str = "scenario", record: bool = True) -> RunResult:
        """Run ``strategy`` on ``scenario`` with ``seed`` and return its :class:`~clproto.evaluation.RunResult`.

        ``scenario``: a scenario definition (:func:`clproto.load_scenario`), or a :class:`Scenario` built in Python
        (e.g. by ``clproto.avalanche.from_avalanche``: run as given, identified by its content); ``strategy``: a resolved
        strategy definition (:func:`clproto.load_strategy`); ``seed``: every random choice of the run
        (class order, samples, initialisation) derives from it, so the same arguments give the same
        numbers. For each experience the strategy's ``fit_experience`` is called, then the
        :class:`~clproto.evaluation.Evaluator` fills row ``t`` of the accuracy matrices.

        ``out_dir``: if given, the run writes ``config.json``, ``log.csv`` and ``results.json`` into
        ``<out_dir>/<scenario>/<strategy>/seed<k>/`` (atomically; a failed run writes no
        ``results.json``), and a strategy with ``state_dict`` is checkpointed after every experience,
        so a restarted run of the same configuration resumes from its last checkpoint. ``where``: the name bad scenario input is reported under.
        ``record=False``: leave ``log.csv`` and ``results.json`` to the caller (the sweep driver records what
        its workers return with :func:`clproto.run_folder.write_finished`, as this method does).
        Raises :class:`~clproto.errors.ConfigError` for bad input (unknown implementation, a
        scenario kind the strategy refuses, a missing backbone, ...). The global torch RNG is forked for the
        run: seeded with ``seed`` inside, the caller's state untouched after.
        """
        context = self.run_context(seed).resolved()  # once per run: "auto" becomes the device it runs on
        with fork_rng(context.torch_device):
            return self._run(scenario, strategy, seed=seed, out_dir=out_dir, where=where, record=record,
                             context=context)

    def _run(self, given: ScenarioConfig | Scenario, strategy: ResolvedStrategy, *, seed: int,
             out_dir: str | os.PathLike | None, where: str, record: bool, context: RunContext) -> RunResult:
        t_start = time.perf_counter()
        timings = Timings()
        notes: list[str] = []
        # `given`: a definition, or a Scenario built in Python; `sc`: the built scenario the run goes through;
        # `identity`: what the run's configuration records of it (the definition, or the built one's content)
        if isinstance(given, Scenario):  # built in Python: run as given, identified by its content
            sc, identity = given, built_scenario_identity(given)
        else:
            sc, identity = self.scenario(given, seed=seed, where=where), given
        timings.data_s = time.perf_counter() - t_start
        entry = self.registry.get(strategy.config.implementation, where=strategy.where)
        check_kind(entry, strategy, sc.kind, self.registry, where=where)
        if entry.cls.input_kind == "features":
            got = self.features(sc.dataset, strategy.backbone, where=strategy.where, scenario=sc)
            sc = sc.with_dataset(got.features)
            notes.append(f"backbone {strategy.backbone_label}: {got.note}")
            timings.features_s = 0.0 if got.cache_hit else got.seconds
        config = resolved_config(identity, strategy, seed, compute=context_identity(context))
        chash = run_hash(config)
        folder = run_dir(out_dir, sc.name, strategy.name, seed) if out_dir is not None else None
        if folder is not None:
            write_config(folder, config, chash)

        torch.manual_seed(seed)  # inside run's fork_rng: strategies drawing from the global RNG get the run seed's stream
        prepare_run(context)  # CUDA: deterministic algorithms or cuDNN autotuning
        model = build_model(entry, strategy, num_classes=sc.num_classes, seed=seed, context=context)
        if hasattr(model, "begin_scenario"):  # the stream's public shape, before any experience (base.py)
            model.begin_scenario(ScenarioDescription.of(sc))
        evaluator = Evaluator(sc, batch_size=self.eval_batch_size)
        steps: list[StepEvaluation] = []
        start = 0
        checkpointed = hasattr(model, "state_dict") and getattr(model, "checkpoint_runs", True)
        ckpt = folder / CHECKPOINT if folder is not None and checkpointed else None
        state = _load_checkpoint(ckpt, notes) if ckpt is not None and ckpt.exists() else None
        log_rows: list = []
        if state is not None:
            if state.get("config_hash") == chash:
                model.load_state_dict(state["strategy"])
                steps = [StepEvaluation(**s) for s in state["steps"]]
                timings = Timings(**state["timings"])
                torch.set_rng_state(state["torch_rng"])
                log_rows = list(state.get("log", []))
                start = len(steps)
                notes.append(f"resumed from checkpoint after experience {start - 1}")
        initial = state.get("initial_task_accuracy") if start else None
        if not start and getattr(model, "scores_unseen_classes", False):  # GEM's b_j: the untrained model, task-IL
            initial = evaluator.initial_task_accuracy(model.predict_scores)
        if folder is not None and start == 0:  # a fresh run: no log or kept model of an earlier one stays
            for stale in [folder / LOG_FILE, *model_files(folder)]:
                stale.unlink(missing_ok=True)
            shutil.rmtree(folder / TENSORBOARD_DIR, ignore_errors=True)  # else TensorBoard would mix both runs
        label = f"{sc.name}/{strategy.name}/seed{seed}"
        log = RunLog.open(self.loggers, folder=folder, label=label, config=config, rows=log_rows)
        loop_listeners = getattr(getattr(model, "loop", None), "listeners", None)

        @epochs_only  # wants no step events: the loop need not read the loss back every step
        def on_training(event) -> None:  # per-epoch mean loss of trained strategies
            if event.kind == "epoch_end":
                log.loss(event.experience, event.epoch, event.loss)

        if loop_listeners is not None:
            loop_listeners.append(on_training)
        ok = False
        try:
            for exp in list(sc)[start:]:
                t0 = time.perf_counter()
                try:
                    model.fit_experience(exp)
                except ConfigError as exc:  # e.g. training diverged: name the strategy definition
                    raise exc.located(strategy.where) from None
                timings.fit_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                steps.append(evaluator.evaluate(model.predict_scores, exp.index))
                timings.eval_s.append(time.perf_counter() - t0)
                log.step(exp.index, steps[-1], fit_s=timings.fit_s[-1], eval_s=timings.eval_s[-1])
                if folder is not None and self.keep_model is not None:
                    last = exp.index == len(sc) - 1
                    if self.keep_model == "every" or last:
                        name = "model.pt" if self.keep_model == "last" else f"model-exp{exp.index}.pt"
                        save_model(folder / name, model, config=config, config_hash=chash, experience=exp.index,
                                   classes_seen=list(exp.seen_classes))
                if ckpt is not None:
                    _save_checkpoint(ckpt, {
                        "config_hash": chash, "strategy": model.state_dict(),
                        "steps": [dataclasses.asdict(s) for s in steps], "timings": dataclasses.asdict(timings),
                        "torch_rng": torch.get_rng_state(), "log": [list(r) for r in log.rows],
                        "initial_task_accuracy": initial,
                    })
            timings.total_s = time.perf_counter() - t_start
            log.run_timings(timings)
            ok = True
        finally:
            if loop_listeners is not None:
                loop_listeners.remove(on_training)
            log.close(ok)
        self.last_log = log  # the rows of the latest run (a remote worker returns them to the driver)
        if hasattr(model, "run_notes"):  # what the strategy chose while fitting (e.g. TEEN's validated α, τ)
            notes.extend(model.run_notes())
        result = RunResult.from_steps(
            steps,
            few_shot=sc.is_few_shot,
            initial_task_accuracy=initial,
            scenario=sc.name,
            strategy=strategy.name,
            seed=seed,
            kind=sc.kind,
            config=config,
            config_hash=chash,
            versions=versions(),
            class_order=list(sc.class_order),
            experience_classes=[list(e.classes) for e in sc],
            test_sizes=[len(e.test_indices) for e in sc],
            timings=timings,
            notes=notes,
            compute=compute_record(context),
        )
        if folder is not None and record:
            write_finished(folder, result, log_csv=log.csv_text())  # log.csv, results.json; the checkpoint goes
        return result
