"""The reproduction scripts (scripts/reproduce/): each runs end to end with --smoke on a synthetic stand-in of its
dataset (tests/standins.py, the real layouts) and prints the paper-vs-measured table; the table's verdicts and the
exit code follow the tolerances; a finished run is read back, not run again; missing data is one line and exit 2;
export_resnet18_imagenet.py writes torchvision's ResNet-18 as the TorchScript the CUB definition fine-tunes.

No downloads: the ViT scripts run on a tiny timm ViT with random weights (--backbone), the CUB script fine-tunes a
ResNet-18 TorchScript exported from random torchvision weights by export_resnet18_imagenet.py.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from standins import wnids, write_cifar100, write_cub, write_miniimagenet

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts" / "reproduce"
sys.path.insert(0, str(SCRIPTS))

import _common  # noqa: E402


def _script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def standins(tmp_path_factory):
    """One data root with the three stand-ins (small: the smoke runs need few images) and a models root."""
    root = tmp_path_factory.mktemp("reproduce")
    data, models = root / "data", root / "models"
    write_cifar100(data, np.repeat(np.arange(100), 5), np.repeat(np.arange(100), 2))  # 5 train / 2 test per class
    mini = [f"{w}/{w}{i:08d}.jpg" for c, w in enumerate(wnids(100)) for i in range(2 if c < 60 else 5)]
    write_miniimagenet(data / "miniimagenet", mini, layout="cec", test_per_class=1)
    cub = [f"{c + 1:03d}.Bird_{c}/Bird_{c}_{i}.jpg" for c in range(200) for i in range(1 if c < 100 else 5)]
    write_cub(data, cub)  # data/CUB_200_2011, as scenarios/fscil-cub200.toml names it
    models.mkdir()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        import timm
        import torchvision

        torch.save(timm.create_model("test_vit.r160_in1k", pretrained=False).state_dict(), models / "tiny-vit.pth")
        torch.save(torchvision.models.resnet18(weights=None).state_dict(), models / "resnet18-random.pth")
    export = _script("export_resnet18_imagenet")
    assert export.main(["--models-root", str(models), "--weights", str(models / "resnet18-random.pth")]) == 0
    return SimpleNamespace(root=root, data=data, models=models, cache=root / "cache")


TINY_VIT = "timm:test_vit.r160_in1k@tiny-vit.pth?norm=none&batch=64"
SMOKE = {  # script -> (strategies it runs, its last smoke row label)
    "teen_fscil_cifar100": (["teen-paper-cifar100-smoke"], "PD (first - last session)"),
    "teen_fscil_miniimagenet": (["teen-paper-miniimagenet-smoke"], "PD (first - last session)"),
    "teen_fscil_cub200": (["teen-paper-cub200-smoke"], "PD (first - last session)"),
    "prd_split_cifar100": (["prd-paper-split-cifar100-smoke"], "task-IL final accuracy"),
    "vit_cifar100_b0_inc10": (["nmc-vit-b16-in21k-smoke", "simplecil-vit-b16-in21k-smoke"], "average incremental accuracy"),
    "vit_cifar100_b0_inc5": (["simplecil-vit-b16-in21k-smoke", "nmc-vit-b16-in21k-smoke"], "average incremental accuracy"),
}


def _smoke_args(standins, out: Path, name: str) -> list[str]:
    args = ["--smoke", "--data-root", str(standins.data), "--models-root", str(standins.models), "--out", str(out),
            "--cache-dir", str(standins.cache), "--no-progress"]
    return args + (["--backbone", TINY_VIT] if name.startswith("vit_") else [])


@pytest.mark.parametrize("name", list(SMOKE))
def test_each_script_runs_end_to_end_on_its_stand_in_and_prints_the_comparison(standins, name, capsys):
    module = _script(name)
    out = standins.root / "out" / name
    assert module.main(module.REPRODUCTION, module.__doc__, _smoke_args(standins, out, name)) == 0
    printed = capsys.readouterr().out
    strategies, last = SMOKE[name]
    assert "| strategy | metric | paper | measured (mean ± std) |" in printed and "SMOKE RUN" in printed
    assert "GPU budget: " + module.REPRODUCTION.budget.gpu in printed
    for strategy in strategies:
        assert f"| {strategy} | {last} |" in printed
        assert list(out.glob(f"*/{strategy}/seed0/results.json"))
    saved = json.loads((out / f"comparison-{module.REPRODUCTION.name}.json").read_text())
    assert saved["smoke"] and {r["verdict"] for r in saved["rows"]} == {"smoke: not checked"}
    assert (out / f"comparison-{module.REPRODUCTION.name}.md").read_text() + "\n" == printed
    smoke = module.REPRODUCTION.smoke
    if smoke.fscil_lists:  # index lists of the definition's shape, from the stand-in's first images
        config = _common.clproto.load_scenario(module.REPRODUCTION.scenario)
        folder = out / "smoke-index-lists"
        sessions = [[int(v) for v in (folder / f"session_{k}.txt").read_text().split()]
                    for k in range(1, config.sessions + 2)]
        assert [len(s) for s in sessions] == ([config.base_classes * smoke.base_per_class]
                                              + [config.ways * config.shots] * config.sessions)
        assert len({i for s in sessions for i in s}) == sum(len(s) for s in sessions)  # no image listed twice


def test_every_script_states_its_gpu_budget_in_docstring_and_help(capsys):
    for name in SMOKE:
        module = _script(name)
        assert "GPU budget" in module.__doc__ and "--device cuda" in module.__doc__
        with pytest.raises(SystemExit) as stop:
            module.main(module.REPRODUCTION, module.__doc__, ["--help"])
        assert stop.value.code == 0
        text = capsys.readouterr().out
        assert "GPU budget: " + module.REPRODUCTION.budget.gpu in text and "--smoke" in text
        assert "--device" in text and "--precision" in text  # as `clproto run`


def test_a_script_runs_as_a_file():
    done = subprocess.run([sys.executable, str(SCRIPTS / "vit_cifar100_b0_inc5.py"), "--help"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and "87.57" in done.stdout and "--backbone" in done.stdout


def test_a_finished_run_is_read_back_with_the_same_numbers(standins, capsys):
    module = _script("vit_cifar100_b0_inc10")
    out = standins.root / "out" / "read-back"
    args = _smoke_args(standins, out, "vit_cifar100_b0_inc10")
    assert module.main(module.REPRODUCTION, module.__doc__, args) == 0
    first = capsys.readouterr().out
    assert module.main(module.REPRODUCTION, module.__doc__, args) == 0
    second = capsys.readouterr().out
    assert "(read back)" not in first and second.count("(read back)") == 2
    rows = lambda text: [line for line in text.splitlines() if line.startswith("| nmc") or line.startswith("| simplecil")]
    assert rows(first) == rows(second) and len(rows(first)) == 4


def test_missing_data_is_one_line_and_exit_2(tmp_path, capsys):
    module = _script("teen_fscil_cifar100")
    code = module.main(module.REPRODUCTION, module.__doc__, ["--data-root", str(tmp_path / "nothing"),
                                                             "--out", str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("teen-fscil-cifar100: error:") and str(tmp_path / "nothing") in err
    assert not list((tmp_path / "out").rglob("results.json"))


# --------------------------------------------------------------------------- the comparison, by hand
def _result(seen: list[float], **metrics) -> SimpleNamespace:
    return SimpleNamespace(seen_accuracy=seen, metrics=SimpleNamespace(**metrics))


def test_the_comparison_averages_seeds_and_checks_each_figure_against_its_tolerance():
    runs = [_result([0.70, 0.50], average_incremental_accuracy=0.60, performance_drop=0.20),
            _result([0.74, 0.52], average_incremental_accuracy=0.63, performance_drop=0.22)]
    figures = (_common.Figure("session:0", 73.0, "T3", 2.0),  # measured 72.00: inside
               _common.Figure("session:1", 54.0, "T3", 2.0),  # measured 51.00: 3 points below, outside
               _common.Figure("average", None, "not found", 2.0),
               _common.Figure("pd", 21.0, "T3", 0.0))  # measured 21.00 exactly: inside at tolerance 0
    rows = _common.compare(figures, runs, strategy="s", smoke=False)
    assert [r.label for r in rows] == ["session 0", "session 1", "average over sessions", "PD (first - last session)"]
    assert [round(r.measured, 6) for r in rows] == [72.0, 51.0, 61.5, 21.0]
    assert rows[0].spread == pytest.approx(np.std([70.0, 74.0], ddof=1))  # sample std over seeds
    assert [r.verdict for r in rows] == ["ok", "OUTSIDE", "no paper figure", "ok"]
    assert rows[1].difference == pytest.approx(-3.0)
    assert _common.exit_code(rows) == 1 and _common.exit_code([rows[0], rows[2], rows[3]]) == 0
    smoke = _common.compare(figures, runs, strategy="s", smoke=True)
    assert {r.verdict for r in smoke} == {"smoke: not checked"} and _common.exit_code(smoke) == 0
    text = _common.table(rows)
    assert "| s | session 1 | 54.00 | 51.00 ± 1.41 | -3.00 | ±2.00 | OUTSIDE | T3 |" in text
    assert "| s | average over sessions | — | 61.50 ± 2.12 | — | ±2.00 | no paper figure | not found |" in text


def test_published_figures_are_consistent_with_their_own_summaries():
    """TEEN's miniImageNet row: the average is the mean of the 9 sessions and PD the first minus the last."""
    rows = {f.metric: f.paper for f in _script("teen_fscil_miniimagenet").REPRODUCTION.figures["teen-paper-miniimagenet"]}
    sessions = [rows[f"session:{k}"] for k in range(9)]
    assert round(float(np.mean(sessions)), 2) == rows["average"] == 61.44
    assert round(sessions[0] - sessions[-1], 2) == rows["pd"] == 21.45


# --------------------------------------------------------------------------- the CUB script's pretrained network
def test_the_exported_resnet18_is_torchvisions_network_on_standardised_input(tmp_path, capsys):
    """export_resnet18_imagenet.py writes what base training fine-tunes (architecture "torchscript:PATH"): its
    features on RGB in [0, 1] are torchvision's resnet18 (classifier removed) on ImageNet-standardised input."""
    import torchvision

    from clproto.training.pretrained import load_pretrained

    export = _script("export_resnet18_imagenet")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        reference = torchvision.models.resnet18(weights=None)
    torch.save(reference.state_dict(), tmp_path / "r18.pth")
    assert export.main(["--models-root", str(tmp_path), "--weights", str(tmp_path / "r18.pth")]) == 0
    net = load_pretrained(f"torchscript:{export.OUTPUT}", side=32, models_root=tmp_path).eval()
    reference.fc = torch.nn.Identity()
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor(export.IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(export.IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(net(x), reference.eval()((x - mean) / std), rtol=1e-5, atol=1e-5)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    assert export.main(["--models-root", str(tmp_path), "--weights", str(tmp_path / "wrong.pth")]) == 2
    assert export.main(["--models-root", str(tmp_path), "--weights", str(tmp_path / "absent.pth")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "do not fit torchvision's resnet18" in err[0] and "absent.pth" in err[1] and len(err) == 2
