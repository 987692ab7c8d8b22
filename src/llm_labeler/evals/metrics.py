"""Metrics of one labeling run against gold: headline, covered-only, per segment, calibration, cost."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .. import metrics as mk
from ..schemas import Taxonomy
from ..store import Store
from ..store.evals import call_costs

__all__ = ["HEADLINE", "LOWER_IS_BETTER", "run_metrics", "score_labels"]

# Flat metrics every cell reports (the columns a gate or a comparison can name).
HEADLINE = (
    "accuracy",
    "macro_f1",
    "micro_f1",
    "kappa",
    "coverage",
    "abstain_rate",
    "invalid_output_rate",
    "ece",
    "latency_p50_ms",
    "latency_p95_ms",
    "tokens_per_user",
    "cost_usd",
)
LOWER_IS_BETTER = {
    "abstain_rate",
    "invalid_output_rate",
    "ece",
    "latency_p50_ms",
    "latency_p95_ms",
    "tokens_per_user",
    "cost_usd",
    "hamming",
}


def score_labels(
    labels: Sequence[Mapping[str, Any]], gold: Mapping[str, Sequence[str]], taxonomy: Taxonomy
) -> dict[str, Any]:
    """Everything that needs only labels and gold (users without gold are left out)."""
    rows = [lab for lab in labels if lab["user_id"] in gold]
    truth = [gold[r["user_id"]][0] for r in rows]
    pred = [r["primary_segment"] for r in rows]
    correct = [p is not None and p in gold[r["user_id"]] for r, p in zip(rows, pred)]
    ids = taxonomy.ids
    cal = mk.calibration([float(r["confidence"] or 0.0) for r in rows], correct)
    out: dict[str, Any] = {
        **mk.classification_metrics(truth, pred, ids),
        **mk.coverage(pred),
        "ece": cal["ece"],
        "covered": mk.covered_metrics(truth, pred, ids),
        "per_segment": mk.per_segment(truth, pred, ids),
        "confusion": {"labels": [*ids, mk.NONE], "matrix": mk.confusion(truth, pred, ids).tolist()},
        "reliability": cal,
    }
    if taxonomy.multi_label or any(len(g) > 1 for g in gold.values()):
        sets = [list(r["segments"] or []) if r["primary_segment"] else [] for r in rows]
        out.update(mk.multilabel_metrics([gold[r["user_id"]] for r in rows], sets, ids))
    return out


def run_metrics(
    store: Store, run_id: str, gold: Mapping[str, Sequence[str]], taxonomy: Taxonomy
) -> dict[str, Any]:
    """score_labels plus invalid-output rate, per-user latency, tokens and cost of the calls behind the labels."""
    out = score_labels(store.labels(run_id), gold, taxonomy)
    per_user: dict[str, dict[str, float]] = {}
    outputs = failed = 0
    for row in call_costs(store, run_id):
        if row["user_id"] not in gold:
            continue
        agg = per_user.setdefault(row["user_id"], {"latency_ms": 0.0, "tokens": 0.0, "cost_usd": 0.0})
        agg["latency_ms"] += float(row["latency_ms"] or 0.0)
        agg["tokens"] += float((row["prompt_tokens"] or 0) + (row["completion_tokens"] or 0))
        agg["cost_usd"] += float(row["cost_usd"] or 0.0)
        outputs += 1  # one scorer's answer for one user
        failed += int(bool(row["failed"]))
    p50, p95 = mk.percentiles([u["latency_ms"] for u in per_user.values()])
    n = max(len(per_user), 1)
    out.update(
        {
            "invalid_output_rate": failed / outputs if outputs else 0.0,
            "latency_p50_ms": p50,
            "latency_p95_ms": p95,
            "tokens_per_user": sum(u["tokens"] for u in per_user.values()) / n,
            "cost_usd": sum(u["cost_usd"] for u in per_user.values()),
        }
    )
    return out
