"""The HTML report is one self-contained file, and it renders in headless Chromium (skipped without it)."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess

import numpy as np
import pytest
from PIL import Image

from clproto.reports.build import write_report
from clproto.reports.html import render_html
from clproto.reports.pooling import identity, pool
from clproto.reports.tables import all_tables
from test_reports import class_incremental_results, few_shot_results, make_result

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars"]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("html-report")
    paths = write_report(class_incremental_results() + few_shot_results(), out, title="test report")
    return paths


def test_page_is_self_contained(report):
    text = report["html"].read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>") and "<script" not in text
    assert not re.search(r"(src|href)=\"(?!data:|#)", text)  # nothing fetched: no file, no URL (only in-page links)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    assert len(images) == len([k for k in report if k.startswith("figure")])
    assert all(base64.b64decode(b)[:8] == PNG_MAGIC for b in images)
    assert '<td class="best">85.00 ± 7.07</td>' in text  # the bold best cell of the final-accuracy table
    assert "fs: accuracy on all seen classes per session" in text


def test_report_is_reproducible(report, tmp_path):
    again = write_report(class_incremental_results() + few_shot_results(), tmp_path, title="test report")
    assert again["html"].read_bytes() == report["html"].read_bytes()  # same results -> same tables and PNG bytes


def _saturated_fraction(path) -> float:
    rgb = np.asarray(Image.open(path).convert("RGB")).astype(int)  # (H, W, 3)
    return float(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).mean())


def test_page_renders_in_headless_chromium(report, tmp_path):
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("chromium is not installed (apt-get install chromium)")
    shot = tmp_path / "report.png"
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,3000",
           f"--screenshot={shot}", report["html"].resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    assert Image.open(shot).size == (1280, 3000)
    # the embedded figures were decoded and drawn: coloured plot pixels (text and tables are grey/black)
    assert _saturated_fraction(shot) > 0.01
    # ... and the same page without its images has (almost) none: the colour comes from the figures
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r'alt="[^"]*" src="data:image/png;base64,[^"]+"', 'alt="" src=""',
                           report["html"].read_text(encoding="utf-8")), encoding="utf-8")  # no image, no alt text
    bare_shot = tmp_path / "bare.png"
    subprocess.run([*cmd[:-2], f"--screenshot={bare_shot}", bare.as_uri()], capture_output=True, timeout=90)
    assert _saturated_fraction(bare_shot) < 0.001


def test_each_row_shows_its_resolved_parameters():
    config = {"scenario": {"name": "ci", "train_per_class": 20},
              "strategy": {"name": "a", "backbone": "pixels", "params": {"alpha": 0.5},
                           "description": "<script>alert(1)</script>"}}
    other = {**config, "strategy": {**config["strategy"], "params": {"alpha": 0.25}}}
    results = [make_result("ci", "a", s, [[1.0, None], [0.5, 1.0]], config=c) for c in (config, other) for s in (0, 1)]
    rows = pool(results, split_configs=True).results
    text = render_html(rows, all_tables(rows), [], title="params")  # no figures: fast
    details = re.findall(r"<details>.*?</details>", text, flags=re.S)
    assert len(details) == 2  # one per row label of scenario ci
    cosine = next(d for d in details if "a@alpha=0.25" in d)
    assert "seeds 0, 1" in cosine and "configuration " + identity(results[2]) in cosine
    assert '<th scope="row">strategy.params.alpha</th><td>0.25</td>' in cosine
    assert '<th scope="row">scenario.train_per_class</th><td>20</td>' in cosine
    assert '<th scope="row">strategy.backbone</th><td>pixels</td>' in cosine
    assert "<script" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in cosine  # values are escaped
