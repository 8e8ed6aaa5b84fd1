"""One self-contained HTML page: tables and figures (PNG embedded as base64), no script, no external file.

It opens from disk in any browser with no server and no network access. The page starts with the
command that regenerates it; figures are shown at their natural size (narrowed only to fit the
page) and a click on one shows it over the whole window (CSS ``:target``, no script; its "close"
link returns to the page). Each scenario's section ends with the per-class accuracy after the
last experience (collapsible) and the resolved parameters behind every row label (one collapsible
``<details>`` per row, its summary naming the backbone: the scenario's and the strategy's fields as
recorded in the results), so a label hides no value. The page ends with the list of the report
folder's files.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Optional

from clproto.evaluation.results import RunResult
from clproto.reports.figures import Figure
from clproto.reports.pooling import flatten, identity, without_seed
from clproto.reports.tables import Cell, Table, to_html
from clproto.storage import write_text_atomic

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ccc; }
.meta { color: #555; font-size: 0.9em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.85em; }
caption { text-align: left; font-weight: bold; padding-bottom: 0.3em; } caption .note { font-weight: normal; color: #555; }
th, td { padding: 0.25em 0.6em; border-bottom: 1px solid #ddd; text-align: right; white-space: nowrap; }
thead th { border-bottom: 2px solid #444; } thead th:first-child { text-align: left; } tbody th { text-align: left; font-weight: normal; }
td.best { font-weight: bold; background: #eef6ee; }
.figures { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
figure { margin: 0; max-width: 100%; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; cursor: zoom-in; }
figcaption { font-size: 0.8em; color: #555; max-width: 640px; } figcaption code { font-size: 0.95em; }
figure .close { display: none; }
figure:target { position: fixed; inset: 0; z-index: 10; background: #fff; padding: 1em;
                overflow: auto; text-align: center; }
figure:target img { width: calc(100vw - 3em); height: calc(100vh - 6em); max-width: none; object-fit: contain;
                    border: none; cursor: default; }
figure:target .close { display: inline; font-size: 0.9em; margin-left: 1em; }
figure:target figcaption { max-width: none; }
pre.command { background: #f6f6f6; padding: 0.5em 0.8em; overflow-x: auto; font-size: 0.85em; }
.backbone { font-family: monospace; background: #eef3fb; padding: 0 0.3em; }
ul.files { font-family: monospace; font-size: 0.85em; columns: 2; }
details { margin: 0.3em 0; } summary { cursor: pointer; } summary .note { color: #555; font-size: 0.9em; }
table.params { margin: 0.3em 0 0.8em 1.2em; } table.params td { text-align: left; white-space: normal; font-family: monospace; }
"""


def _img(fig: Figure) -> str:
    """The PNG at its natural size; a click on it shows it over the whole window (closed by its "close" link)."""
    data = base64.b64encode(fig.png).decode("ascii")
    anchor = "fig-" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in fig.path.stem)
    title = html.escape(fig.title)
    return (f'<figure id="{anchor}"><a href="#{anchor}" title="zoom"><img alt="{title}" '
            f'src="data:image/png;base64,{data}"></a>'
            f"<figcaption>{title} <code>{html.escape(fig.path.name)}</code>"
            f'<a class="close" href="#figures-{anchor}">close ✕</a></figcaption></figure>'
            f'<span id="figures-{anchor}"></span>')


def _value(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)


def _parameters(results: list[RunResult], scenario: str) -> str:
    """One ``<details>`` per row label of ``scenario``: its resolved configuration (seed aside) as a table."""
    rows: dict[str, list[RunResult]] = {}
    for r in sorted(results, key=lambda r: (r.strategy, r.seed)):
        if r.scenario == scenario:
            rows.setdefault(r.strategy, []).append(r)
    parts = ["<h3>Resolved parameters</h3>"]
    for label, runs in rows.items():
        flat = flatten(without_seed(runs[0].config))
        body = "".join(f'<tr><th scope="row">{html.escape(k)}</th><td>{html.escape(_value(v))}</td></tr>'
                       for k, v in flat.items()) or '<tr><td>no resolved configuration recorded</td></tr>'
        seeds = ", ".join(str(r.seed) for r in runs)
        parts.append(f'<details><summary>{html.escape(label)} · backbone <span class="backbone">'
                     f'{html.escape(backbone(runs[0].config))}</span> <span class="note">· '
                     f'seed{"s" if len(runs) > 1 else ""} {html.escape(seeds)} · configuration {identity(runs[0])}'
                     f'</span></summary><table class="params"><tbody>{body}</tbody></table></details>')
    return "\n".join(parts)


def backbone(config: dict) -> str:
    """What computes a row's features: the strategy's ``backbone`` (a frozen or base-trained network, or
    pixels), else the network it trains end to end (``params.architecture``)."""
    strategy = config.get("strategy") if isinstance(config, dict) else None
    strategy = strategy if isinstance(strategy, dict) else {}
    if isinstance(strategy.get("backbone"), dict):  # a [strategy.backbone] table: shown as its shorthand
        from clproto.features.backbone import parse_backbone, shorthand

        try:
            return shorthand(parse_backbone(strategy["backbone"]))
        except (ValueError, TypeError):  # a table this clproto cannot read (e.g. an unknown kind): as recorded
            return _value(strategy["backbone"])
    if strategy.get("backbone"):
        return _value(strategy["backbone"])
    params = strategy.get("params") if isinstance(strategy.get("params"), dict) else {}
    if params.get("architecture"):
        return f"{_value(params['architecture'])} (trained by the strategy)"
    return "none recorded"


def _per_class(results: list[RunResult], scenario: str) -> str:
    """Accuracy on each class after the last experience: rows classes, columns strategies (mean ± std over seeds)."""
    rows: dict[str, list[RunResult]] = {}
    for r in sorted(results, key=lambda r: (r.strategy, r.seed)):
        if r.scenario == scenario and r.per_class_accuracy and r.per_class_accuracy[-1]:
            rows.setdefault(r.strategy, []).append(r)
    if not rows:
        return ""
    n_classes = max(len(r.per_class_accuracy[-1]) for runs in rows.values() for r in runs)
    cells = {name: [Cell.of([r.per_class_accuracy[-1][c] if c < len(r.per_class_accuracy[-1]) else None for r in runs])
                    for c in range(n_classes)] for name, runs in rows.items()}
    classes = [c for c in range(n_classes) if any(cells[name][c].mean is not None for name in cells)]
    head = "".join(f"<th>{html.escape(name)}</th>" for name in cells)
    body = "".join(f'<tr><th scope="row">{c}</th>' + "".join(f"<td>{html.escape(cells[name][c].text())}</td>"
                                                          for name in cells) + "</tr>" for c in classes)
    return (f'<details class="per-class"><summary>Per-class accuracy after the last experience '
            f'<span class="note">({len(classes)} classes; accuracies in %, mean ± std over seeds)</span></summary>'
            f'<table id="{html.escape(scenario)}__per_class"><thead><tr><th>Class (dataset index)</th>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></details>")


def render_html(results: list[RunResult], tables: list[Table], figures: list[Figure], *, title: str = "clproto report",
                command: Optional[str] = None, files: Optional[list[str]] = None) -> str:
    """The page; ``command``: the command line that regenerates the report; ``files``: the report folder's files."""
    scenarios = sorted({r.scenario for r in results})
    strategies = sorted({r.strategy for r in results})
    seeds = sorted({r.seed for r in results})
    versions = results[0].versions if results else {}
    meta = (f"{len(results)} runs · {len(scenarios)} scenario(s) · {len(strategies)} strateg{'y' if len(strategies) == 1 else 'ies'}"
            f" · seeds {', '.join(map(str, seeds))} · {sum(r.timings.total_s for r in results):.0f} s of run time · "
            + ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("clproto", "torch", "python")))
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(meta)}</p>']
    if command:
        parts.append(f'<p class="meta">Regenerate this report (from the folder it was run in):</p>'
                     f'<pre class="command">{html.escape(command)}</pre>')
    parts.append("<h2>Comparison</h2>")
    scenario_keys = {f"{s}__" for s in scenarios}
    parts += [to_html(t) for t in tables if not any(t.key.startswith(k) for k in scenario_keys)]
    parts.append('<div class="figures">' + "".join(_img(f) for f in figures if f.scenario is None) + "</div>")
    for s in scenarios:
        parts.append(f'<h2 id="{html.escape(s)}">{html.escape(s)}</h2>')
        parts += [to_html(t) for t in tables if t.key.startswith(f"{s}__")]
        main = [f for f in figures if f.scenario == s and f.kind != "accuracy_matrix"]
        mats = [f for f in figures if f.scenario == s and f.kind == "accuracy_matrix"]
        parts.append('<div class="figures">' + "".join(_img(f) for f in main) + "</div>")
        if mats:
            parts.append("<h3>Accuracy matrices</h3>")
            parts.append('<div class="figures">' + "".join(_img(f) for f in mats) + "</div>")
        parts.append(_per_class(results, s))
        parts.append(_parameters(results, s))
    if files:
        parts.append("<h2>Files</h2><p class=\"meta\">This report's folder (written by clproto; "
                     "<code>manifest.json</code> lists them and each figure's strategy colours):</p>")
        parts.append('<ul class="files">' + "".join(f"<li>{html.escape(f)}</li>" for f in files) + "</ul>")
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_html(path: Path, results: list[RunResult], tables: list[Table], figures: list[Figure], **kw) -> Path:
    write_text_atomic(path, render_html(results, tables, figures, **kw))
    return path
