"""A self-contained HTML report of an eval run: matrix, confusion heatmaps and reliability plots as inline SVG."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from ..store import Store
from ..store import evals as sql
from .metrics import HEADLINE

__all__ = ["render_report"]

# The matrix shows these and the suite's own metrics (up to _SHOWN columns); the rest sit behind a toggle, so the
# table fits a laptop screen without a horizontal scroll.
_ALWAYS = ("accuracy", "macro_f1")
_SHOWN = 6
_EVERY = (*HEADLINE, "covered.accuracy", "covered.macro_f1")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;color:#1b1f24}
.scroll{overflow-x:auto}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:right}th{background:#f6f8fa}
td.l,th.l{text-align:left}td.wrap{overflow-wrap:anywhere}
.pass{color:#1a7f37;font-weight:bold}.fail{color:#cf222e;font-weight:bold}
.row{display:flex;flex-wrap:wrap;gap:2rem;align-items:flex-start}.muted{color:#57606a}
tr.primary td{background:#eef6ff}tr.baseline td{background:#fff8e5}
details.more{margin:.5rem 0}details.more summary{cursor:pointer;color:#0969da}
"""


def render_report(store: Store, eval_id: str) -> str:
    """The HTML page of one eval run (no external resources: it opens offline)."""
    run = sql.get_eval(store, eval_id)
    cells = sql.eval_cells(store, eval_id)
    summary = run["summary"] or {}
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Eval {escape(eval_id)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Eval suite <code>{escape(run['suite_name'])}</code></h1>",
        _header(run, summary),
        "<h2>Matrix</h2>",
        _matrix(cells, (run["suite"] or {}).get("metrics") or []),
    ]
    for cell in cells:
        parts.append(_cell_section(cell))
    parts.append("</body></html>")
    return "\n".join(parts)


def _header(run: Mapping[str, Any], summary: Mapping[str, Any]) -> str:
    gate = summary.get("gate") or {}
    verdict = (
        "<span class='pass'>passed</span>"
        if gate.get("passed")
        else "<span class='fail'>failed: " + escape("; ".join(gate.get("failures", []))) + "</span>"
        if gate
        else "<span class='muted'>not evaluated</span>"
    )
    rows = [
        ("eval run", run["eval_id"]),
        ("status", run["status"]),
        ("started", str(run["started_at"])),
        ("users", str(run["n_users"])),
        ("data", summary.get("source", "")),
        ("taxonomy", f"{run['taxonomy_name']} ({str(run['taxonomy_hash'])[:12]})"),
        ("LLM / scorer calls", str(summary.get("calls", ""))),
        ("cache hits", str(summary.get("cache_hits", ""))),
    ]
    body = "".join(
        f"<tr><th class='l'>{escape(k)}</th><td class='l wrap'>{escape(str(v))}</td></tr>" for k, v in rows
    )
    return f"<table>{body}<tr><th class='l'>gate</th><td class='l'>{verdict}</td></tr></table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:.0f}"
    return escape(str(value))


def _matrix(cells: Sequence[Mapping[str, Any]], named: Sequence[str]) -> str:
    shown = _shown_metrics(named)
    rest = [m for m in dict.fromkeys([*named, *_EVERY]) if m not in shown]
    note = "<p class='muted'>Headline metrics count an abstention as a miss; covered = users that got a label.</p>"
    more = (
        f"<details class='more'><summary>Show {len(rest) + 2} more columns: prompt, backend, {escape(', '.join(rest))}"
        f"</summary><div class='scroll'>{_table(cells, ['prompt', 'backend'], rest, 'matrix-more')}</div></details>"
    )
    return _table(cells, [], shown, "matrix") + more + note


def _shown_metrics(named: Sequence[str]) -> list[str]:
    """accuracy, macro_f1, then the metrics the suite names, in its order, without repeats."""
    shown: list[str] = []
    for name in (*_ALWAYS, *named):
        if name not in shown and len(shown) < _SHOWN:
            shown.append(name)
    return shown


def _table(cells: Sequence[Mapping[str, Any]], text_cols: list[str], metrics: list[str], klass: str) -> str:
    head = "<tr><th class='l'>cell</th>" + "".join(f"<th class='l'>{escape(c)}</th>" for c in text_cols)
    head += "".join(f"<th>{_breakable(m)}</th>" for m in metrics) + "</tr>"
    rows = []
    for c in cells:
        role = "primary" if c["is_primary"] else "baseline" if c["is_baseline"] else ""
        texts = "".join(f"<td class='l'>{_breakable(str(c[k]))}</td>" for k in text_cols)
        values = "".join(f"<td>{_fmt(_metric(c['metrics'], m))}</td>" for m in metrics)
        rows.append(f"<tr class='{role}'><td class='l'>{_breakable(c['cell'])}</td>{texts}{values}</tr>")
    return f"<table class='{klass}'>{head}{''.join(rows)}</table>"


def _breakable(text: str) -> str:
    """Escaped text that may wrap after _ . | : / # @, so long ids and metric names do not widen the table."""
    parts = re.split(r"([_.|:/#@])", text)  # odd items are the separators
    return "".join(escape(part) + ("<wbr>" if i % 2 else "") for i, part in enumerate(parts))


def _metric(metrics: Mapping[str, Any], name: str) -> Any:
    """A metric by (dotted) name as stored; one this cell does not have is an empty cell."""
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, Mapping) or node.get(part) is None:
            return ""
        node = node[part]
    return node


def _cell_section(cell: Mapping[str, Any]) -> str:
    m = cell["metrics"]
    role = " (primary)" if cell["is_primary"] else " (baseline)" if cell["is_baseline"] else ""
    return (
        f"<h2>{escape(cell['cell'])}{role}</h2><p class='muted'>labeling run {escape(cell['run_id'])}</p>"
        f"<div class='row'><div><h3>Per segment</h3>{_per_segment(m['per_segment'])}</div>"
        f"<div><h3>Confusion matrix</h3>{_heatmap(m['confusion'])}</div>"
        f"<div><h3>Reliability (ECE {m['ece']:.3f})</h3>{_reliability(m['reliability'])}"
        f"{_thresholds(m['reliability']['thresholds'])}</div></div>"
    )


def _per_segment(per: Mapping[str, Mapping[str, float]]) -> str:
    head = "<tr><th class='l'>segment</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
    rows = "".join(
        f"<tr><td class='l'>{escape(s)}</td><td>{v['precision']:.3f}</td><td>{v['recall']:.3f}</td>"
        f"<td>{v['f1']:.3f}</td><td>{int(v['support'])}</td></tr>"
        for s, v in per.items()
    )
    return f"<table>{head}{rows}</table>"


def _heatmap(conf: Mapping[str, Any]) -> str:
    labels, matrix = conf["labels"], conf["matrix"]
    n = len(labels)
    longest = max((len(lab) for lab in labels), default=4)
    cell, left, top = max(18, min(44, 360 // max(n, 1))), 6 * longest + 14, int(5 * longest) + 16
    size_w, size_h = left + cell * n + 10, top + cell * (n - 1) + 30
    peak = max((max(row) for row in matrix), default=1) or 1
    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{size_w}' height='{size_h}' role='img' "
        "aria-label='confusion matrix heatmap' font-size='11' font-family='sans-serif'>"
    ]
    for j, lab in enumerate(labels):
        x = left + j * cell + cell / 2
        out.append(f"<text transform='translate({x},{top - 6}) rotate(-55)'>{escape(lab)}</text>")
    for i, row in enumerate(matrix[: n - 1]):  # gold never abstains: no abstain row
        y = top + i * cell
        out.append(
            f"<text x='{left - 6}' y='{y + cell / 2 + 4}' text-anchor='end'>{escape(labels[i])}</text>"
        )
        for j, value in enumerate(row):
            shade = value / peak
            fill = f"rgb({int(255 - 200 * shade)},{int(255 - 140 * shade)},{int(255 - 40 * shade)})"
            colour = "#fff" if shade > 0.6 else "#1b1f24"
            out.append(
                f"<rect x='{left + j * cell}' y='{y}' width='{cell}' height='{cell}' fill='{fill}' stroke='#d0d7de'/>"
            )
            if value:
                out.append(
                    f"<text x='{left + j * cell + cell / 2}' y='{y + cell / 2 + 4}' text-anchor='middle' "
                    f"fill='{colour}'>{value}</text>"
                )
    out.append(
        f"<text x='{left}' y='{size_h - 6}' fill='#57606a'>rows: gold · columns: predicted</text></svg>"
    )
    return "".join(out)


def _reliability(rel: Mapping[str, Any]) -> str:
    w = h = 260
    pad = 36

    def px(x: float) -> float:
        return pad + x * (w - 2 * pad)

    def py(y: float) -> float:
        return h - pad - y * (h - 2 * pad)

    out = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{h}' role='img' "
        "aria-label='reliability diagram' font-size='11' font-family='sans-serif'>",
        f"<rect x='{pad}' y='{pad}' width='{w - 2 * pad}' height='{h - 2 * pad}' fill='#fff' stroke='#8c959f'/>",
        f"<line x1='{px(0)}' y1='{py(0)}' x2='{px(1)}' y2='{py(1)}' stroke='#8c959f' stroke-dasharray='4 3'/>",
    ]
    for b in rel["bins"]:
        x0, x1 = px(b["lo"]), px(b["hi"])
        out.append(
            f"<rect x='{x0 + 1}' y='{py(b['accuracy'])}' width='{max(x1 - x0 - 2, 1)}' "
            f"height='{py(0) - py(b['accuracy'])}' fill='#54aeff' opacity='0.8'><title>{b['n']} users, "
            f"confidence {b['confidence']:.2f}, accuracy {b['accuracy']:.2f}</title></rect>"
        )
    points = " ".join(f"{px(b['confidence'])},{py(b['accuracy'])}" for b in rel["bins"])
    out.append(f"<polyline points='{points}' fill='none' stroke='#0969da' stroke-width='2'/>")
    out.append(f"<text x='{w / 2}' y='{h - 8}' text-anchor='middle'>confidence</text>")
    out.append(f"<text transform='translate(12,{h / 2}) rotate(-90)' text-anchor='middle'>accuracy</text>")
    for t in (0, 0.5, 1):
        out.append(f"<text x='{px(t)}' y='{py(0) + 14}' text-anchor='middle'>{t:g}</text>")
        out.append(f"<text x='{pad - 4}' y='{py(t) + 4}' text-anchor='end'>{t:g}</text>")
    out.append("</svg>")
    return "".join(out)


def _thresholds(rows: Sequence[Mapping[str, float]]) -> str:
    head = "<tr><th>confidence ≥</th><th>coverage</th><th>accuracy</th><th>users</th></tr>"
    body = "".join(
        f"<tr><td>{r['threshold']:.2f}</td><td>{r['coverage']:.3f}</td><td>{r['accuracy']:.3f}</td>"
        f"<td>{int(r['n'])}</td></tr>"
        for r in rows
    )
    return f"<table>{head}{body}</table>"
