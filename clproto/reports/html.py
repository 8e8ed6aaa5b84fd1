"""One self-contained HTML page: tables and figures (PNG embedded as base64), no script, no external file.

It opens from disk in any browser with no server and no network access. Each scenario's section
ends with the resolved parameters behind every row label (one collapsible ``<details>`` per row:
the scenario's and the strategy's fields as recorded in the results), so a label hides no value.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from clproto.evaluation.results import RunResult, write_text_atomic
from clproto.reports.figures import Figure
from clproto.reports.pooling import flatten, identity, without_seed
from clproto.reports.tables import Table, to_html

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
.figures { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 0.8em; color: #555; max-width: 560px; }
.small img { max-width: 300px; }
details { margin: 0.3em 0; } summary { cursor: pointer; } summary .note { color: #555; font-size: 0.9em; }
table.params { margin: 0.3em 0 0.8em 1.2em; } table.params td { text-align: left; white-space: normal; font-family: monospace; }
"""


def _img(fig: Figure) -> str:
    data = base64.b64encode(fig.path.read_bytes()).decode("ascii")
    cls = ' class="small"' if fig.kind == "accuracy_matrix" else ""
    return (f'<figure{cls}><img alt="{html.escape(fig.title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(fig.title)}</figcaption></figure>")


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
        parts.append(f'<details><summary>{html.escape(label)} <span class="note">· seed{"s" if len(runs) > 1 else ""} '
                     f"{html.escape(seeds)} · configuration {identity(runs[0])}</span></summary>"
                     f'<table class="params"><tbody>{body}</tbody></table></details>')
    return "\n".join(parts)


def render_html(results: list[RunResult], tables: list[Table], figures: list[Figure], *, title: str = "clproto report") -> str:
    scenarios = sorted({r.scenario for r in results})
    strategies = sorted({r.strategy for r in results})
    seeds = sorted({r.seed for r in results})
    versions = results[0].versions if results else {}
    meta = (f"{len(results)} runs · {len(scenarios)} scenario(s) · {len(strategies)} strateg{'y' if len(strategies) == 1 else 'ies'}"
            f" · seeds {', '.join(map(str, seeds))} · {sum(r.timings.total_s for r in results):.0f} s of run time · "
            + ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("clproto", "torch", "python")))
    parts = [f"<h1>{html.escape(title)}</h1>", f'<p class="meta">{html.escape(meta)}</p>', "<h2>Comparison</h2>"]
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
        parts.append(_parameters(results, s))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n{body}\n</body></html>\n")


def write_html(path: Path, results: list[RunResult], tables: list[Table], figures: list[Figure], **kw) -> Path:
    write_text_atomic(path, render_html(results, tables, figures, **kw))
    return path
