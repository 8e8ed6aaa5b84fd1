"""PRD, fine-tuning and joint training: losses against hand-computed values, gradient flow, masking,
learning on the shared tiny fixture, resume after an interruption, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clproto.config import strategy_from_dict
from clproto.errors import ConfigError
from clproto.losses import prototype_loss, relation_distillation, relation_scores, supcon_loss
from clproto.runner import CHECKPOINT, Runner, run_dir
from clproto.scenarios.config import ScenarioConfig
from clproto.scenarios.scenario import build_scenario
from clproto.strategies import REGISTRY, FineTune, PRD, PRDConfig
from clproto.training.loop import DivergedError, TrainingConfig, to_input

TINY = dict(architecture="convnet-small", batch_size=16, lr=0.05, crop_padding=1, flip=False)  # fast on 8x8 images
SCENARIO = ScenarioConfig(name="tiny-ci", dataset="tiny", increment=2)


def _runner(dataset, registry=REGISTRY) -> Runner:
    return Runner(registry=registry, progress=False, datasets={"tiny": dataset})  # the shared synthetic fixture


def _strategy(impl: str, registry=REGISTRY, **params):
    return strategy_from_dict({"name": impl, "implementation": impl, "params": {**TINY, **params}}, registry)


# --------------------------------------------------------------------------- losses, by hand
E = math.e


def test_supcon_two_samples_two_classes():
    # sample 0: both views (1, 0); sample 1: both views (0, 1). For every anchor the other view of its own
    # sample has similarity 1, the two views of the other sample 0, so with tau = tau_b = 1
    # L = -log(e / (e + 2)) = log(e + 2) - 1.
    z = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])  # (N=2, V=2, D=2)
    loss = supcon_loss(z, torch.tensor([0, 1]), temperature=1.0, base_temperature=1.0)
    assert loss.item() == pytest.approx(math.log(E + 2) - 1)  # 0.55144...


def test_supcon_same_class_averages_over_all_positives():
    # both samples share a label: each anchor has 3 positives with log-probabilities
    # 1 - log(e + 2), -log(e + 2), -log(e + 2), so L = log(e + 2) - 1/3.
    z = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    loss = supcon_loss(z, torch.tensor([3, 3]), temperature=1.0, base_temperature=1.0)
    assert loss.item() == pytest.approx(math.log(E + 2) - 1 / 3)


def test_supcon_temperature_and_base_temperature_scaling():
    # tau = 0.5: similarities become 2 and 0, L = (tau / tau_b) * (log(e^2 + 2) - 2) with tau_b = 0.25
    z = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [0.0, 1.0]]])
    loss = supcon_loss(z, torch.tensor([0, 1]), temperature=0.5, base_temperature=0.25)
    assert loss.item() == pytest.approx(2.0 * (math.log(E ** 2 + 2) - 2))


def test_prototype_loss_is_one_minus_cosine():
    f = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    p = torch.tensor([[2.0, 0.0], [0.0, 3.0]])
    # cos(f0, p0) = 1, cos(f1, p1) = 1/sqrt(2)
    assert prototype_loss(f, p, torch.tensor([0, 1])).item() == pytest.approx((0 + 1 - 1 / math.sqrt(2)) / 2)


def test_relation_scores_normalise_prototypes_only():
    s = relation_scores(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    assert s.tolist() == [pytest.approx([11 / 5, 2.0])]


def test_relation_distillation_kl_by_hand_both_axes():
    # teacher softmax (3/4, 1/4), student (1/2, 1/2): KL = 3/4 log(3/2) + 1/4 log(1/2)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    new, old = torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]])
    assert relation_distillation(new, old, axis="prototypes").item() == pytest.approx(expected)
    # over samples: the same numbers laid out as 2 samples x 1 prototype
    assert relation_distillation(new.T, old.T, axis="samples").item() == pytest.approx(expected)
    # temperature T divides both score matrices: T = 2 with doubled scores is the same distribution
    assert relation_distillation(2 * new, 2 * old, temperature=2.0).item() == pytest.approx(expected)
    assert relation_distillation(old, old).item() == pytest.approx(0.0, abs=1e-7)


def test_relation_axes_differ_on_a_general_matrix():
    new = torch.tensor([[0.0, 1.0], [2.0, 0.5]])
    old = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    a = relation_distillation(new, old, axis="prototypes").item()
    b = relation_distillation(new, old, axis="samples").item()
    # prototypes axis by hand: row-wise softmax, KL per row, mean over rows
    q, p = F.softmax(old, 1), F.softmax(new, 1)
    assert a == pytest.approx(float((q * (q / p).log()).sum(1).mean()))
    q, p = F.softmax(old, 0), F.softmax(new, 0)
    assert b == pytest.approx(float((q * (q / p).log()).sum(0).mean()))
    assert a != pytest.approx(b)


def test_kl_has_the_gradient_of_the_codes_cross_entropy():
    new = torch.tensor([[0.3, -1.0, 2.0], [1.0, 0.0, 0.5]], requires_grad=True)
    old = torch.tensor([[1.0, 0.0, -1.0], [0.2, 0.1, 0.0]])
    relation_distillation(new, old).backward()
    g_kl = new.grad.clone()
    new.grad = None
    (-(F.softmax(old, 1) * F.log_softmax(new, 1)).sum(1).mean()).backward()  # the official code's form
    assert torch.allclose(g_kl, new.grad, atol=1e-6)


# --------------------------------------------------------------------------- gradient flow
def test_gradients_reach_backbone_head_and_old_prototypes(tiny_dataset):
    sc = build_scenario(SCENARIO, tiny_dataset, seed=0)
    prd = PRD(config=PRDConfig(**TINY, epochs=1), num_classes=6, seed=0)
    prd.fit_experience(sc[0])
    old, new = list(sc[0].classes), list(sc[1].classes)
    exp = sc[1]
    current = torch.tensor(exp.classes)
    local = torch.full((6,), -1, dtype=torch.long)
    local[current] = torch.arange(2)
    views = prd.loop.views(exp.train_x[:8], 2)
    prd.backbone.train(), prd.head.train()
    loss = prd.loss(views, exp.train_y[:8], current=current, local=local)
    loss.backward()
    assert prd.last_losses["distill"] >= 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in prd.backbone.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in prd.head.parameters())
    g = prd.prototypes.grad  # (6, D)
    assert g[old].abs().sum() > 0, "relation distillation must move the old prototypes"
    assert g[new].abs().sum() > 0, "the prototype loss must move the new prototypes"
    unseen = sorted(set(range(6)) - set(old) - set(new))
    assert g[unseen].abs().sum() == 0
    assert all(p.grad is None for p in prd.teacher.parameters())


def test_without_distillation_old_prototypes_get_no_gradient(tiny_dataset):
    sc = build_scenario(SCENARIO, tiny_dataset, seed=0)
    prd = PRD(config=PRDConfig(**TINY, epochs=1, lambda_distill=0.0), num_classes=6, seed=0)
    prd.fit_experience(sc[0])
    current = torch.tensor(sc[1].classes)
    local = torch.full((6,), -1, dtype=torch.long)
    local[current] = torch.arange(2)
    prd.loss(prd.loop.views(sc[1].train_x[:8], 2), sc[1].train_y[:8], current=current, local=local).backward()
    assert prd.prototypes.grad[list(sc[0].classes)].abs().sum() == 0


def test_prototype_loss_does_not_reach_the_backbone(tiny_dataset):
    sc = build_scenario(SCENARIO, tiny_dataset, seed=0)
    prd = PRD(config=PRDConfig(**TINY, epochs=1), num_classes=6, seed=0)
    prd._build(3)
    f = prd.backbone(prd.loop.views(sc[0].train_x[:4], 1)[0])
    prototype_loss(f.detach(), prd.prototypes[:2], torch.tensor([0, 1, 0, 1])).backward()
    assert all(p.grad is None for p in prd.backbone.parameters())
    assert prd.prototypes.grad[:2].abs().sum() > 0


# --------------------------------------------------------------------------- prediction
@pytest.mark.parametrize("impl", ["prd", "finetune", "joint"])
def test_unseen_classes_score_minus_inf(tiny_dataset, impl):
    sc = build_scenario(SCENARIO, tiny_dataset, seed=0)
    entry = REGISTRY.get(impl)
    model = entry.cls(config=entry.cls.Config(**TINY, epochs=1), num_classes=6, seed=0)
    model.fit_experience(sc[0])
    with torch.inference_mode():
        scores = model.predict_scores(sc[0].test_x)
    seen = list(sc[0].classes)
    unseen = sorted(set(range(6)) - set(seen))
    assert scores.shape == (len(sc[0].test_indices), 6)
    assert torch.isneginf(scores[:, unseen]).all()
    assert torch.isfinite(scores[:, seen]).all()


def test_prd_scores_are_cosines_to_seen_prototypes(tiny_dataset):
    sc = build_scenario(SCENARIO, tiny_dataset, seed=0)
    prd = PRD(config=PRDConfig(**TINY, epochs=1), num_classes=6, seed=0)
    prd.fit_experience(sc[0])
    x = sc[0].test_x[:3]
    with torch.inference_mode():
        scores = prd.predict_scores(x)
        f = prd.backbone(to_input(x))  # no augmentation at test time
    c = list(sc[0].classes)
    expected = F.cosine_similarity(f[:, None, :], prd.prototypes.detach()[None, c, :], dim=2)
    assert torch.allclose(scores[:, c], expected, atol=1e-5)


# --------------------------------------------------------------------------- learning
def test_short_runs_learn_on_the_tiny_fixture(tiny_dataset):
    runner = _runner(tiny_dataset)
    prd = runner.run(SCENARIO, _strategy("prd", epochs=6, prototype_lr=0.1), seed=0).metrics
    ft = runner.run(SCENARIO, _strategy("finetune", epochs=3), seed=0).metrics
    joint = runner.run(SCENARIO, _strategy("joint", epochs=3), seed=0).metrics
    chance = 1 / 6
    assert prd.final_accuracy > chance and prd.task_il_final_accuracy > 0.5
    assert ft.task_il_final_accuracy > 0.5
    assert joint.final_accuracy > 0.8  # the upper bound sees everything
    assert joint.final_accuracy > ft.final_accuracy


# --------------------------------------------------------------------------- resume
class _Interrupted(RuntimeError):
    pass


def _crashing(cls, at: int):
    class Crashing(cls):
        """Trains experience ``at`` and dies before the runner can checkpoint it."""

        def fit_experience(self, experience):
            super().fit_experience(experience)
            if experience.index == at:
                raise _Interrupted(f"simulated crash in experience {at}")

    return Crashing


@pytest.mark.parametrize("impl", ["prd", "finetune", "joint"])
def test_resume_after_an_interrupted_experience_gives_identical_results(tiny_dataset, tmp_path, impl):
    entry = REGISTRY.get(impl)
    crashing = REGISTRY.copy()
    crashing._entries[impl] = type(entry)(impl, _crashing(entry.cls, at=1), entry.description, entry.scenario_kinds)
    strategy = _strategy(impl, epochs=1)
    full = _runner(tiny_dataset).run(SCENARIO, strategy, seed=1, out_dir=tmp_path / "full")

    out = tmp_path / "interrupted"
    with pytest.raises(_Interrupted):
        _runner(tiny_dataset, crashing).run(SCENARIO, strategy, seed=1, out_dir=out)
    folder = run_dir(out, SCENARIO.name, impl, 1)
    assert (folder / CHECKPOINT).exists() and not (folder / "results.json").exists()
    resumed = _runner(tiny_dataset).run(SCENARIO, strategy, seed=1, out_dir=out)
    assert any("resumed" in n for n in resumed.notes)
    assert resumed.accuracy_matrix == full.accuracy_matrix
    assert resumed.task_accuracy_matrix == full.task_accuracy_matrix
    assert resumed.per_class_accuracy == full.per_class_accuracy


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("field, value", [("lambda_prototype", 0.0), ("lambda_distill", -1.0),
                                          ("supcon_temperature", 0.0), ("distill_temperature", -0.5),
                                          ("base_temperature", 0.0), ("prototype_lr", 0.0),
                                          ("relation_axis", "classes"), ("projection_dim", 0)])
def test_bad_prd_params_are_config_errors_naming_file_and_field(field, value):
    with pytest.raises(ConfigError) as info:
        strategy_from_dict({"name": "prd", "implementation": "prd", "params": {field: value}}, REGISTRY,
                           where="strategies/prd.toml")
    assert "strategies/prd.toml" in str(info.value) and f"params.{field}" in str(info.value)


def test_lambda_distill_zero_is_the_allowed_ablation():
    assert PRDConfig(lambda_distill=0.0).lambda_distill == 0.0


def test_single_sample_experiences_are_rejected_before_training(tiny_dataset):
    one_shot = ScenarioConfig(name="one-shot", dataset="tiny", kind="few-shot", base_classes=2, ways=1, shots=1)
    runner = _runner(tiny_dataset)
    with pytest.raises(ConfigError, match="experience 1 has 1 training sample"):
        runner.check(one_shot, _strategy("prd"), seed=0)
    runner.check(one_shot, _strategy("finetune"), seed=0)  # cross-entropy has no such requirement


def test_nan_loss_stops_the_run_and_keeps_the_last_checkpoint(tiny_dataset, tmp_path):
    class NaNAfterFirst(FineTune):
        def fit_experience(self, experience):
            if experience.index == 0:
                return super().fit_experience(experience)
            self.loop.run(modules=[self.backbone], groups=[{"params": list(self.backbone.parameters())}],
                          x=experience.train_x, y=experience.train_y, experience=experience.index,
                          loss_fn=lambda v, y: self.backbone(v[0]).sum() * float("nan"))

    registry = REGISTRY.copy()
    entry = REGISTRY.get("finetune")
    registry._entries["finetune"] = type(entry)("finetune", NaNAfterFirst, entry.description, entry.scenario_kinds)
    with pytest.raises(DivergedError, match="experience 1, epoch 0, step 0"):
        _runner(tiny_dataset, registry).run(SCENARIO, _strategy("finetune", registry, epochs=1), seed=0, out_dir=tmp_path)
    folder = run_dir(tmp_path, SCENARIO.name, "finetune", 0)
    assert not (folder / "results.json").exists()
    state = torch.load(folder / CHECKPOINT, weights_only=False)
    assert len(state["steps"]) == 1  # experience 0 is kept


def test_training_config_fields_are_shared_by_all_three():
    names = {f for f in TrainingConfig.__dataclass_fields__}
    for impl in ("prd", "finetune", "joint"):
        assert names <= set(REGISTRY.get(impl).cls.Config.__dataclass_fields__)


def test_joint_trains_on_every_sample_seen_so_far(tiny_dataset):
    sc = build_scenario(SCENARIO, tiny_dataset, seed=0)
    joint = REGISTRY.get("joint").cls(config=REGISTRY.get("joint").cls.Config(**TINY, epochs=1), num_classes=6, seed=0)
    for exp in sc[:2]:
        joint.fit_experience(exp)
    assert np.array_equal(np.sort(joint.indices), np.sort(np.concatenate([sc[0].train_indices, sc[1].train_indices])))
