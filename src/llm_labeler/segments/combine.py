"""The combination: calibrate each scorer, z-score it within the user, weight, softmax."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..schemas import SegmentAssignment, Taxonomy
from .base import ScoreResult, ScorerSpec

__all__ = ["DEFAULT_TEMPERATURE", "combine", "zscore"]

# Softmax sharpness of the combined z-scores; only confidences move with it, never the labels. Chosen on the tune
# split by evals/20ng_coarse_tune.yaml (expected calibration error).
DEFAULT_TEMPERATURE = 1.5


def zscore(v: np.ndarray) -> np.ndarray:
    """Standardise a score vector within one user."""
    std = float(v.std())
    return (v - v.mean()) / (std if std > 1e-9 else 1.0)


def combine(
    taxonomy: Taxonomy,
    results: Mapping[str, ScoreResult | None],
    specs: Sequence[ScorerSpec],
    calibration: Mapping[str, np.ndarray],
    temperature: float = DEFAULT_TEMPERATURE,
    threshold: float = 0.0,
) -> SegmentAssignment:
    """Calibrate, standardise, weight and softmax the scorers' outputs into one assignment."""
    ids = taxonomy.ids
    total, used, firsts = np.zeros(len(ids)), [], {}
    for spec in specs:
        res = results.get(spec.name)
        if res is None or res.scores is None or spec.weight == 0:
            continue
        v = np.asarray(res.scores, dtype=np.float64)
        if spec.calibration == "batch" and spec.name in calibration:
            v = v - calibration[spec.name]
        total += spec.weight * zscore(v)
        used.append(spec.name)
        firsts[spec.name] = ids[int(np.argmax(v))]
    if not used:
        return SegmentAssignment(
            primary=None,
            probabilities={},
            confidence=0.0,
            abstained=True,
            rationale="no scorer produced a score",
        )
    probs = np.exp(temperature * (total - total.max()))
    probs /= probs.sum()
    order = np.argsort(-probs)
    top = int(order[0])
    confidence = float(probs[top])
    multi = (
        [ids[i] for i in order if probs[i] >= max(threshold, 0.5 * confidence)]
        if taxonomy.multi_label
        else []
    )
    abstained = confidence < threshold
    rationale = _rationale(taxonomy, firsts, results, probs, order)
    return SegmentAssignment(
        primary=None if abstained else ids[top],
        segments=[] if abstained else (multi or [ids[top]]),
        probabilities={sid: round(float(p), 6) for sid, p in zip(ids, probs)},
        confidence=round(confidence, 6),
        abstained=abstained,
        rationale=rationale,
    )


def _rationale(
    taxonomy: Taxonomy,
    firsts: Mapping[str, str],
    results: Mapping[str, ScoreResult | None],
    probs: np.ndarray,
    order: np.ndarray,
) -> str:
    """Why: which segment each scorer put first (agreeing or not), the margin, and a generated answer's own words."""
    ids, names = taxonomy.ids, {s.id: s.name for s in taxonomy.segments}
    top, second = ids[int(order[0])], ids[int(order[1])] if len(order) > 1 else None
    agree = [n for n, sid in firsts.items() if sid == top]
    other = [f"{n} put {names[sid]} first" for n, sid in firsts.items() if sid != top]
    parts = [
        f"{' and '.join(agree) or 'no single scorer'} put {names[top]} first"
        + (f"; {', '.join(other)}" if other else "")
    ]
    if second is not None:
        parts.append(
            f"combined {probs[order[0]]:.2f} for {names[top]} against {probs[order[1]]:.2f} for {names[second]}"
        )
    said = getattr(results.get("json"), "rationale", "")
    if said and not said.startswith("votes:"):
        parts.append(f"the model said: {said}")
    return "; ".join(parts)
