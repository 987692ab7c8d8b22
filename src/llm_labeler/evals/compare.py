"""Compare two runs on the users both labeled: metric deltas and the users whose label flipped."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..schemas import Taxonomy
from ..store import Store
from ..store import evals as sql
from .metrics import HEADLINE, LOWER_IS_BETTER, run_metrics

__all__ = ["Comparison", "compare_runs"]


@dataclass
class Comparison:
    """Deltas (B - A) of the headline metrics, and label flips between A and B."""

    run_a: str
    run_b: str
    n: int
    n_gold: int
    metrics: list[dict[str, Any]]
    flips: list[dict[str, Any]]
    flip_rate: float
    fixed: int = 0
    broken: int = 0
    warnings: list[str] = field(default_factory=list)

    def as_dict(self, max_flips: int | None = None) -> dict[str, Any]:
        """JSON form (optionally only the first flips)."""
        return {
            "run_a": self.run_a,
            "run_b": self.run_b,
            "n": self.n,
            "n_gold": self.n_gold,
            "flip_rate": self.flip_rate,
            "n_flips": len(self.flips),
            "fixed": self.fixed,
            "broken": self.broken,
            "metrics": self.metrics,
            "flips": self.flips[:max_flips] if max_flips is not None else self.flips,
            "warnings": self.warnings,
        }


def _gold(store: Store, eval_ids: list[str | None], taxonomy: Taxonomy) -> dict[str, list[str]]:
    for eval_id in eval_ids:
        if eval_id:
            return sql.eval_gold(store, eval_id)
    return store.gold(taxonomy.name)


def compare_runs(store: Store, ref_a: str, ref_b: str) -> Comparison:
    """Compare runs given as eval ids (their primary cell), 'EVAL_ID#CELL', or labeling run ids."""
    eval_a, run_a = sql.resolve_run(store, ref_a)
    eval_b, run_b = sql.resolve_run(store, ref_b)
    tax_a, tax_b = store.run_taxonomy(run_a), store.run_taxonomy(run_b)
    warnings = []
    if tax_a.ids != tax_b.ids:
        raise InputError(
            f"runs {run_a} and {run_b} label different taxonomies ({tax_a.name} vs {tax_b.name})"
        )
    if tax_a.content_hash() != tax_b.content_hash():
        warnings.append("the taxonomies differ in wording (same segment ids): deltas include that change")
    labels_a = {r["user_id"]: r for r in store.labels(run_a)}
    labels_b = {r["user_id"]: r for r in store.labels(run_b)}
    common = sorted(set(labels_a) & set(labels_b))
    if not common:
        raise InputError(f"runs {run_a} and {run_b} have no labeled user in common")
    gold_all = _gold(store, [eval_b, eval_a], tax_b)
    gold = {u: gold_all[u] for u in common if u in gold_all}
    rows = _metric_rows(store, run_a, run_b, gold, tax_b) if gold else []
    if not gold:
        warnings.append("no gold labels for these users: only flips are compared")
    flips = _flips(common, labels_a, labels_b, gold)
    fixed = sum(f["change"] == "fixed" for f in flips)
    broken = sum(f["change"] == "broken" for f in flips)
    return Comparison(
        run_a, run_b, len(common), len(gold), rows, flips, len(flips) / len(common), fixed, broken, warnings
    )


def _metric_rows(
    store: Store, run_a: str, run_b: str, gold: dict[str, list[str]], taxonomy: Taxonomy
) -> list[dict[str, Any]]:
    ma, mb = run_metrics(store, run_a, gold, taxonomy), run_metrics(store, run_b, gold, taxonomy)
    rows = []
    for name in HEADLINE:
        a, b = float(ma[name]), float(mb[name])
        delta = b - a
        better = -delta if name in LOWER_IS_BETTER else delta
        rows.append({"metric": name, "a": a, "b": b, "delta": delta, "better": better > 1e-12})
    for seg, stats in mb["per_segment"].items():
        a, b = ma["per_segment"][seg]["f1"], stats["f1"]
        rows.append({"metric": f"f1:{seg}", "a": a, "b": b, "delta": b - a, "better": b - a > 1e-12})
    return rows


def _flips(
    users: list[str],
    labels_a: dict[str, dict[str, Any]],
    labels_b: dict[str, dict[str, Any]],
    gold: dict[str, list[str]],
) -> list[dict[str, Any]]:
    out = []
    for u in users:
        a, b = labels_a[u]["primary_segment"], labels_b[u]["primary_segment"]
        if a == b:
            continue
        truth = gold.get(u)
        if truth is None:
            change = "unknown"
        else:
            ok_a, ok_b = a in truth, b in truth
            change = "fixed" if ok_b and not ok_a else "broken" if ok_a and not ok_b else "both wrong"
        out.append(
            {
                "user_id": u,
                "gold": "|".join(truth) if truth else None,
                "a": a,
                "b": b,
                "confidence_a": labels_a[u]["confidence"],
                "confidence_b": labels_b[u]["confidence"],
                "change": change,
            }
        )
    return out
