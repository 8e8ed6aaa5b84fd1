"""Issue 15 (figures and report.html): a report of a mixed run folder — class-incremental and few-shot,
3 strategies, 2 seeds, real runs on the embedded digits — has one colour per strategy in every figure
(read back from the drawn artists into manifest.json), no unreferenced file, each row's backbone, and
renders in headless Chromium (skipped without it)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clproto.cli import main
from clproto.config import load_scenario, strategy_from_dict
from clproto.reports.build import write_report
from clproto.reports.figures import PALETTE, strategy_styles
from clproto.runner import Runner
from clproto.strategies import REGISTRY
from test_html_report import CHROMIUM_FLAGS
from test_reports import class_incremental_results

ROOT = Path(__file__).resolve().parents[2]
STRATEGIES = {  # nmc-cosine-pixels and nmc-pixels give (nearly) identical curves on split-digits
    "nmc-pixels": {"name": "nmc-pixels", "implementation": "nmc", "backbone": "pixels", "params": {"metric": "euclidean"}},
    "nmc-cosine-pixels": {"name": "nmc-cosine-pixels", "implementation": "nmc", "backbone": "pixels",
                          "params": {"metric": "cosine"}},
    "teen-pixels": {"name": "teen-pixels", "implementation": "teen", "backbone": "pixels", "params": {"alpha": 0.5}},
}
GRID = {"split-digits": ("nmc-pixels", "nmc-cosine-pixels"), "fscil-digits": ("nmc-pixels", "teen-pixels")}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """8 runs (2 scenarios x 2 strategies x 2 seeds), then `clproto report RUNS --out REPORT`."""
    tmp = tmp_path_factory.mktemp("mixed")
    runs, report = tmp / "runs", tmp / "report"
    runner = Runner(progress=False)
    for scenario, names in GRID.items():
        sc = load_scenario(ROOT / "scenarios" / f"{scenario}.toml")
        for name in names:
            for seed in (0, 1):
                runner.run(sc, strategy_from_dict(STRATEGIES[name], REGISTRY), seed=seed, out_dir=runs)
    assert main(["report", str(runs), "--out", str(report), "--no-progress"]) == 0
    manifest = json.loads((report / "manifest.json").read_text(encoding="utf-8"))
    return report, manifest, (report / "report.html").read_text(encoding="utf-8")


def test_a_strategy_has_one_colour_in_every_figure(mixed):
    report, manifest, _ = mixed
    seen: dict[str, set] = {}
    for name, figure in manifest["figures"].items():
        for strategy, style in figure["strategies"].items():
            seen.setdefault(strategy, set()).add((style["colour"], style["marker"] or ""))
    assert set(seen) == set(STRATEGIES)  # every strategy is drawn in some coloured figure
    colours = {s: {c for c, _ in v} for s, v in seen.items()}
    assert all(len(c) == 1 for c in colours.values()), colours  # one colour per strategy across figures
    assert len({next(iter(c)) for c in colours.values()}) == 3  # three strategies, three colours
    styles = strategy_styles(STRATEGIES)
    assert all(colours[s] == {styles[s].colour} for s in STRATEGIES)  # drawn as assigned
    markers = {s: {m for _, m in v if m} for s, v in seen.items()}
    assert all(markers[s] == {styles[s].marker} for s in STRATEGIES)
    lines = {(s, st["linestyle"]) for f in manifest["figures"].values() for s, st in f["strategies"].items()
             if st["linestyle"]}
    assert lines == {(s, styles[s].linestyle) for s in STRATEGIES}  # one line style each ...
    assert len({styles[s].linestyle for s in STRATEGIES}) == 3  # ... and distinct: overlapping curves stay visible
    # the forgetting figure has a panel per scenario with only that scenario's strategies
    assert set(manifest["figures"]["forgetting.png"]["strategies"]) == set(STRATEGIES)
    kinds = {f["kind"] for f in manifest["figures"].values()}
    assert {"accuracy_vs_classes", "old_new", "base_novel", "accuracy_matrix", "forgetting"} <= kinds
    assert all("mean ± std over seeds" in f["caption"] or f["kind"] == "accuracy_matrix"
               for f in manifest["figures"].values())  # one uncertainty convention, stated in every caption
    assert all("2 seeds" in f["caption"] for f in manifest["figures"].values())


def test_no_file_in_the_report_folder_is_unreferenced(mixed):
    report, manifest, text = mixed
    on_disk = sorted(p.name for p in report.iterdir())
    assert on_disk == sorted(manifest["files"])  # the manifest lists exactly what is there
    for name in on_disk:
        assert html_mentions(text, name), name
    figures = [n for n in on_disk if n.endswith(".png")]
    assert len(re.findall(r'src="data:image/png;base64,', text)) == len(figures) == len(manifest["figures"])
    assert f"clproto report {report.parent / 'runs'} --out {report}" in text  # the regenerating command


def html_mentions(text: str, name: str) -> bool:
    return f"<code>{name}</code>" in text or f"<li>{name}</li>" in text


def test_the_config_section_lists_each_runs_backbone(mixed):
    _, _, text = mixed
    for scenario, names in GRID.items():
        section = text.split(f'<h2 id="{scenario}">', 1)[1].split("<h2", 1)[0]
        summaries = re.findall(r"<details><summary>(.*?)</summary>", section)
        assert len(summaries) == len(names)
        for name in names:
            (summary,) = [s for s in summaries if s.startswith(name + " ")]
            assert 'backbone <span class="backbone">pixels</span>' in summary and "seeds 0, 1" in summary
        per_class = re.search(r'<details class="per-class">.*?</details>', section, flags=re.S).group(0)
        assert len(re.findall(r'<tr><th scope="row">\d+</th>', per_class)) == 10  # digits: 10 classes
        assert all(f"<th>{name}</th>" in per_class for name in names)


def _saturated_fraction(path) -> float:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)  # (H, W, 3)
    return float(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).mean())


def test_the_report_renders_in_headless_chromium(mixed, tmp_path):
    report, _, _ = mixed
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    base = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    uri = (report / "report.html").resolve().as_uri()
    dom = subprocess.run([*base, "--dump-dom", uri], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0 and "</html>" in dom.stdout, dom.stderr[-2000:]
    assert dom.stdout.count("<figure") == len(list(report.glob("*.png")))
    shot = tmp_path / "page.png"
    proc = subprocess.run([*base, "--window-size=1280,2400", f"--screenshot={shot}", uri],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    assert _saturated_fraction(shot) > 0.01  # the figures were decoded and drawn
    # click-to-zoom: with a figure targeted, it covers the window (mostly the figure's own pixels)
    zoom = tmp_path / "zoom.png"
    subprocess.run([*base, "--window-size=1280,900", f"--screenshot={zoom}", uri + "#fig-forgetting"],
                   capture_output=True, timeout=90)
    assert _saturated_fraction(zoom) > 0.02


# --------------------------------------------------------------------------- fast: hand-made results
def test_styles_come_from_the_name_and_differ_within_a_report():
    one = strategy_styles(["nmc-pixels", "teen"])
    assert strategy_styles(["teen", "nmc-pixels"]) == one  # order does not matter
    many = [f"s{i}" for i in range(len(PALETTE))]
    styles = strategy_styles(many)
    assert len({s.colour for s in styles.values()}) == len(PALETTE)  # no shared colour while the palette lasts
    more = strategy_styles(many + ["extra"])
    assert len({(s.colour, s.marker) for s in more.values()}) == len(PALETTE) + 1  # then no shared colour+marker
    alone = {name: strategy_styles([name])[name] for name in many}
    assert sum(styles[n] == alone[n] for n in many) >= 3  # most keep their own style (collisions move)


def test_pdf_figures_and_stale_files_of_an_earlier_report(tmp_path):
    results = class_incremental_results()  # scenarios ci and other
    (tmp_path / "notes.txt").write_text("mine")  # not written by clproto: never removed
    (tmp_path / "ci__seen_accuracy.png").write_bytes(b"old")  # an earlier clproto's figure name
    first = write_report(results, tmp_path, fmt="pdf")
    pdfs = sorted(tmp_path.glob("*.pdf"))
    assert pdfs and all(p.read_bytes().startswith(b"%PDF") for p in pdfs)
    assert not list(tmp_path.glob("*.png"))  # the stale PNG is gone; PDF figures only on disk ...
    text = first["html"].read_text(encoding="utf-8")
    assert len(re.findall(r'src="data:image/png;base64,', text)) == len(pdfs)  # ... PNG in the page
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not any(b"/CreationDate" in p.read_bytes() for p in pdfs)  # no date: same results, same bytes
    # a smaller report into the same folder: only its files remain (and the foreign one)
    write_report([r for r in results if r.scenario == "ci"], tmp_path)
    left = {p.name for p in tmp_path.iterdir()}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert left == set(manifest["files"]) | {"notes.txt"}
    assert not any(n.endswith(".pdf") or n.startswith("other__") for n in left) and "ci__old_new.png" in left
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert all(html_mentions(text, n) for n in left - {"notes.txt"})
