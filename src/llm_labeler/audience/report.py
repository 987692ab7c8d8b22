"""The audience report: one self-contained HTML page (inline SVG, no script, no external resource) a product
manager can read: segment sizes with intervals, what each segment is, exemplar users, confidence, and what moved
since a baseline run."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..store import Store
from ..store import audience as aq
from ..store import student as sq
from ..student import load_student
from .population import Population, SharesResult, estimate_shares, run_population
from .shares import Interval, naive_interval
from .terms import distinctive_terms

__all__ = ["AudiencePage", "render_audience_report"]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2rem;color:#1b1f24;max-width:1200px}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #d0d7de}h3{font-size:1.05rem;margin:.2rem 0}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem}
th,td{border:1px solid #d0d7de;padding:.25rem .5rem;text-align:right}th{background:#f6f8fa}
td.l,th.l{text-align:left}.muted{color:#57606a}.note{background:#fff8e5;padding:.4rem .6rem;border-radius:4px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:1rem}
.card{border:1px solid #d0d7de;border-radius:6px;padding:.8rem}.card p{margin:.3rem 0}
.terms span{display:inline-block;background:#eef6ff;border-radius:3px;padding:0 .3rem;margin:.1rem;font-size:.85rem}
.feats span{display:inline-block;background:#f1f8ec;border-radius:3px;padding:0 .3rem;margin:.1rem;font-size:.85rem}
.user{border-top:1px dashed #d0d7de;padding-top:.3rem;margin-top:.3rem;font-size:.85rem}
.snip{color:#57606a;overflow-wrap:anywhere}.up{color:#1a7f37}.down{color:#cf222e}
"""
_COLORS = ("#0969da", "#8250df", "#1a7f37", "#bf8700", "#cf222e", "#1b7c83", "#953800", "#57606a")
_EXEMPLARS = 3
_RULE = re.compile(r"([^\w\s])\1{3,}")
_TERM_USERS = 5000  # distinctive terms are counted over at most this many users (the first by id)


@dataclass
class AudiencePage:
    """The rendered page and what the reader should know about it."""

    run_id: str
    html: str
    notes: list[str] = field(default_factory=list)


@dataclass
class _Sizes:
    """A run's segment sizes: PPI with gold, naive counts with a label-trusting interval without."""

    pop: Population
    result: SharesResult | None
    naive: dict[str, Interval]

    def best(self, seg: str) -> Interval:
        if self.result is None:
            return self.naive[seg]
        return next(s.ppi for s in self.result.segments if s.segment == seg)


def _sizes(store: Store, run: str, gold: str, level: float, notes: list[str]) -> _Sizes:
    pop = run_population(store, run)
    users = sorted(pop.predicted)
    matrix = pop.matrix(users)
    naive = {s: naive_interval(matrix[:, k], level) for k, s in enumerate(pop.taxonomy.ids)}
    try:
        result: SharesResult | None = estimate_shares(store, pop, gold, level)
    except InputError as exc:
        if "taxonomy mismatch" in str(exc):
            raise
        notes.append(f"{pop.source}: label counts only, without valid intervals: {exc}")
        result = None
    return _Sizes(pop, result, naive)


def render_audience_report(
    store: Store, run: str, baseline: str | None = None, gold: str = aq.GOLD_REVIEWED, level: float = 0.95
) -> AudiencePage:
    """The audience page of a label run (and what moved since `baseline`, a run with the same taxonomy)."""
    notes: list[str] = []
    cur = _sizes(store, run, gold, level, notes)
    base = _sizes(store, baseline, gold, level, notes) if baseline else None
    if base is not None and base.pop.taxonomy.content_hash() != cur.pop.taxonomy.content_hash():
        raise InputError(
            f"taxonomy mismatch: {base.pop.source} used taxonomy {base.pop.taxonomy.content_hash()[:12]}, "
            f"{cur.pop.source} {cur.pop.taxonomy.content_hash()[:12]}: compare runs of one taxonomy"
        )
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Audience of {escape(cur.pop.ref)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Audience: <code>{escape(cur.pop.taxonomy.name)}</code> segments of run <code>"
        f"{escape(cur.pop.ref)}</code></h1>",
        _summary(cur, level),
        *[f"<p class='note'>{escape(n)}</p>" for n in notes],
        "<h2 id='sizes'>How big is each segment</h2>",
        _sizes_section(cur, level),
        "<h2 id='segments'>What each segment is</h2>",
        _segment_cards(store, cur, notes),
        "<h2 id='confidence'>How sure the labeler was</h2>",
        _confidence_section(cur.pop),
    ]
    if base is not None:
        parts += ["<h2 id='changes'>What moved since the baseline</h2>", _changes(cur, base, level)]
    parts.append("</body></html>")
    return AudiencePage(cur.pop.ref, "\n".join(parts), notes)


def _summary(s: _Sizes, level: float) -> str:
    labels = s.pop.labels
    abstained = sum(1 for lab in labels if lab.get("abstained") or lab.get("error"))
    gold = (
        f"{s.result.n_gold} reviewed users ({escape(s.result.gold)}) correct the labels: sizes are "
        f"prediction-powered estimates with {level:.0%} intervals"
        if s.result
        else "no reviewed users: sizes are label counts"
    )
    model = labels[0]["model_id"] if labels else ""
    return (
        f"<p>{len(s.pop.predicted):,} users labeled; {abstained:,} abstained or failed. {gold}.</p>"
        f"<p class='muted'>taxonomy {escape(s.pop.taxonomy.name)} ({s.pop.taxonomy.content_hash()[:12]}) · "
        f"model {escape(str(model))}</p>"
    )


def _sizes_section(s: _Sizes, level: float) -> str:
    segs = s.pop.taxonomy.ids
    rows = []
    for seg in segs:
        naive = s.naive[seg].estimate
        if s.result is None:
            rows.append(f"<tr><td class='l'>{escape(seg)}</td><td>{naive:.1%}</td><td>-</td><td>-</td></tr>")
            continue
        share = next(x for x in s.result.segments if x.segment == seg)
        rows.append(
            f"<tr><td class='l'>{escape(seg)}</td><td>{naive:.1%}</td><td>{_iv(share.classical)}</td>"
            f"<td><b>{_iv(share.ppi)}</b></td></tr>"
        )
    table = (
        "<table class='sizes'><tr><th class='l'>segment</th><th>label counts</th>"
        f"<th>reviewed users only ({level:.0%})</th><th>estimate ({level:.0%}, PPI)</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    legend = (
        "<p class='muted'>Grey bar: share of users the labeler put in the segment. Dot and whisker: the estimated "
        "share and its interval (labels corrected by the reviewed users); thin line: the reviewed users alone.</p>"
    )
    return _share_chart(s) + legend + table


def _iv(iv: Interval) -> str:
    return f"{iv.estimate:.1%} [{iv.lo:.1%}, {iv.hi:.1%}]"


def _share_chart(s: _Sizes) -> str:
    segs = s.pop.taxonomy.ids
    top = max([s.naive[x].hi for x in segs] + [s.best(x).hi for x in segs] + [0.05])
    if s.result:
        top = max(top, *[x.classical.hi for x in s.result.segments])
    scale, left, row = 560 / top, 190, 34
    height = row * len(segs) + 30
    out = [
        f"<svg class='shares' width='{left + 600}' height='{height}' role='img' aria-label='segment sizes'>"
    ]
    for i, seg in enumerate(segs):
        y = 10 + i * row
        out.append(f"<text x='{left - 8}' y='{y + 17}' text-anchor='end' font-size='13'>{escape(seg)}</text>")
        out.append(
            f"<rect x='{left}' y='{y + 4}' width='{s.naive[seg].estimate * scale:.1f}' height='18' fill='#d0d7de'/>"
        )
        if s.result:
            cl = next(x.classical for x in s.result.segments if x.segment == seg)
            out.append(_whisker(left, y + 6, cl, scale, "#8c959f", 1))
        iv = s.best(seg)
        out.append(_whisker(left, y + 13, iv, scale, _COLORS[i % len(_COLORS)], 3))
        out.append(
            f"<circle cx='{left + iv.estimate * scale:.1f}' cy='{y + 13}' r='5' fill='{_COLORS[i % len(_COLORS)]}'/>"
        )
        out.append(
            f"<text x='{left + iv.hi * scale + 8:.1f}' y='{y + 17}' font-size='12'>{iv.estimate:.1%}</text>"
        )
    for tick in _ticks(top):
        x = left + tick * scale
        out.append(
            f"<line x1='{x:.1f}' x2='{x:.1f}' y1='{height - 22}' y2='{height - 16}' stroke='#57606a'/>"
        )
        out.append(
            f"<text x='{x:.1f}' y='{height - 4}' font-size='11' text-anchor='middle'>{tick:.0%}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def _whisker(left: int, y: float, iv: Interval, scale: float, color: str, width: int) -> str:
    x0, x1 = left + iv.lo * scale, left + iv.hi * scale
    return (
        f"<line x1='{x0:.1f}' x2='{x1:.1f}' y1='{y}' y2='{y}' stroke='{color}' stroke-width='{width}'/>"
        f"<line x1='{x0:.1f}' x2='{x0:.1f}' y1='{y - 4}' y2='{y + 4}' stroke='{color}'/>"
        f"<line x1='{x1:.1f}' x2='{x1:.1f}' y1='{y - 4}' y2='{y + 4}' stroke='{color}'/>"
    )


def _ticks(top: float) -> list[float]:
    step = next(s for s in (0.01, 0.02, 0.05, 0.1, 0.2, 0.25) if top / s <= 8)
    return [i * step for i in range(int(top / step) + 1)]


def _segment_cards(store: Store, s: _Sizes, notes: list[str]) -> str:
    labels = [lab for lab in s.pop.labels if s.pop.predicted[lab["user_id"]]]
    groups = {lab["user_id"]: s.pop.predicted[lab["user_id"]][0] for lab in labels}
    users = sorted(s.pop.predicted)[:_TERM_USERS]
    docs = {u: d for u, (d, _) in sq.docs_for(store, users).items()}
    terms = distinctive_terms(docs, groups)
    features = _student_features(store, s, labels, notes)
    cards = []
    for seg in s.pop.taxonomy.segments:
        mine = sorted(
            (lab for lab in labels if seg.id in s.pop.predicted[lab["user_id"]]),
            key=lambda lab: (-float(lab["confidence"]), lab["user_id"]),
        )
        iv = s.best(seg.id)
        cards.append(
            f"<div class='card' id='seg-{escape(seg.id)}'><h3>{escape(seg.name)} <span class='muted'>"
            f"({escape(seg.id)})</span></h3><p><b>{iv.estimate:.1%}</b> of users "
            f"<span class='muted'>[{iv.lo:.1%}, {iv.hi:.1%}] · {len(mine):,} labeled</span></p>"
            f"<p>{escape(seg.description)}</p>"
            + _chips("distinctive terms", "terms", [t for t, _ in terms.get(seg.id, [])])
            + _chips("student features", "feats", features.get(seg.id, []))
            + "".join(_exemplar(store, lab) for lab in mine[:_EXEMPLARS])
            + "</div>"
        )
    return f"<div class='cards'>{''.join(cards)}</div>"


def _chips(title: str, cls: str, items: list[str]) -> str:
    if not items:
        return ""
    return f"<p class='{cls}'><b>{title}:</b> " + "".join(f"<span>{escape(t)}</span>" for t in items) + "</p>"


def _student_features(
    store: Store, s: _Sizes, labels: list[dict[str, Any]], notes: list[str]
) -> dict[str, list[str]]:
    """The n-grams a student distilled from this run weighs most, over each segment's most confident users."""
    models = aq.run_models(store, s.pop.ref)
    path = next((m["path"] for m in models if Path(m["path"]).is_file()), None)
    if path is None:
        notes.append("no student distilled from this run (llm-labeler distill): no student features")
        return {}
    est, _ = load_student(path)
    out = {}
    for seg in s.pop.taxonomy.ids:
        if seg not in list(est.classes_):
            continue
        top = sorted(
            (lab for lab in labels if s.pop.predicted[lab["user_id"]][:1] == [seg]),
            key=lambda lab: -float(lab["confidence"]),
        )[:20]
        docs = sq.docs_for(store, [lab["user_id"] for lab in top])
        text = " \n ".join(d for d, _ in docs.values())
        out[seg] = [t for t, _ in est.top_features(text, "", seg, 8)] if text else []
    return out


def _tidy(text: Any) -> str:
    """One line, without the rules of repeated punctuation that posts are full of."""
    return escape(" ".join(_RULE.sub(r"\1\1\1", str(text or "")).split()))


def _exemplar(store: Store, lab: dict[str, Any]) -> str:
    evidence = [str(e) for e in (lab.get("evidence") or [])][:3]
    snippets = store.event_snippets(lab["user_id"], evidence, chars=140) if evidence else []
    body = "".join(
        f"<div class='snip'>“{_tidy(sn.get('item_title'))}” {_tidy(sn.get('text'))}</div>" for sn in snippets
    )
    why = escape(str(lab.get("rationale") or ""))[:300]
    return (
        f"<div class='user'><b>{escape(lab['user_id'])}</b> <span class='muted'>confidence "
        f"{float(lab['confidence']):.2f}</span>{f'<div>{why}</div>' if why else ''}{body}</div>"
    )


def _confidence_section(pop: Population) -> str:
    conf = [float(lab["confidence"]) for lab in pop.labels if not lab.get("error")]
    bins = Counter(min(int(c * 20), 19) for c in conf)
    peak = max(bins.values() or [1])
    w, h, left = 30, 160, 40
    out = [
        f"<svg class='confidence' width='{left + 20 * w + 20}' height='{h + 40}' role='img' aria-label='confidence'>"
    ]
    for b in range(20):
        bh = bins.get(b, 0) / peak * h
        out.append(
            f"<rect x='{left + b * w}' y='{10 + h - bh:.1f}' width='{w - 2}' height='{bh:.1f}' fill='#0969da'>"
            f"<title>{b / 20:.2f}-{(b + 1) / 20:.2f}: {bins.get(b, 0)} users</title></rect>"
        )
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        out.append(
            f"<text x='{left + t * 20 * w:.0f}' y='{h + 28}' font-size='11' text-anchor='middle'>{t:.2f}</text>"
        )
    out.append(f"<text x='4' y='20' font-size='11'>{peak}</text></svg>")
    mean = sum(conf) / len(conf) if conf else 0.0
    low = sum(1 for c in conf if c < 0.5)
    return (
        "".join(out)
        + f"<p>Users per confidence band: mean confidence {mean:.2f}; {low:,} of {len(conf):,} users below 0.5 "
        "(the ones to check first; to size segments, review a random sample instead).</p>"
    )


def _changes(cur: _Sizes, base: _Sizes, level: float) -> str:
    rows = []
    for seg in cur.pop.taxonomy.ids:
        a, b = base.best(seg), cur.best(seg)
        delta = b.estimate - a.estimate
        # Independent intervals combine in quadrature; two runs corrected by the same reviewed users err together,
        # so this is conservative for them.
        half = ((a.hi - a.lo) ** 2 + (b.hi - b.lo) ** 2) ** 0.5 / 2
        moved = delta - half > 0 or delta + half < 0
        cls = ("up" if delta > 0 else "down") if moved else "muted"
        rows.append(
            f"<tr><td class='l'>{escape(seg)}</td><td>{a.estimate:.1%}</td><td>{b.estimate:.1%}</td>"
            f"<td class='{cls}'>{delta:+.1%} [{delta - half:+.1%}, {delta + half:+.1%}]</td></tr>"
        )
    table = (
        f"<p class='muted'>baseline {escape(base.pop.source)} → {escape(cur.pop.source)}; change with its "
        f"{level:.0%} interval (coloured when the interval excludes 0)</p><table class='changes'><tr>"
        "<th class='l'>segment</th><th>baseline</th><th>now</th><th>change</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    return table + _switchers(cur.pop, base.pop)


def _switchers(cur: Population, base: Population) -> str:
    both = sorted(set(cur.predicted) & set(base.predicted))
    moves = Counter(
        (_first(base.predicted[u]), _first(cur.predicted[u]))
        for u in both
        if _first(base.predicted[u]) != _first(cur.predicted[u])
    )
    head = f"<h3>Users that switched segment: {sum(moves.values()):,} of {len(both):,} in both runs</h3>"
    if not moves:
        return head
    rows = "".join(
        f"<tr><td class='l'>{escape(a)}</td><td class='l'>{escape(b)}</td><td>{n:,}</td></tr>"
        for (a, b), n in moves.most_common(15)
    )
    return (
        head
        + f"<table class='switchers'><tr><th class='l'>from</th><th class='l'>to</th><th>users</th></tr>{rows}</table>"
    )


def _first(segs: list[str]) -> str:
    return segs[0] if segs else "(none)"
