"""From scorer results to labels: calibrate each scorer, combine, and build the stored record. Pure functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict

import numpy as np

from ..schemas import SegmentAssignment
from ..segments import JsonScoreResult, NextTokenScorer, Scorer, ScoreResult, combine
from ..store import LabelRecord
from .prepare import RunSetup

__all__ = ["MIN_BATCH_FOR_CALIBRATION", "calibration", "make_labels"]

MIN_BATCH_FOR_CALIBRATION = 20
Results = Mapping[str, Mapping[str, ScoreResult]]  # user -> scorer name -> result


def calibration(
    scorers: Mapping[str, Scorer], results: Results, stored: Callable[[Scorer], list[list[float]]]
) -> dict[str, np.ndarray]:
    """Per scorer: the mean score over this batch of users, or over stored calls, or an empty-history prompt."""
    out: dict[str, np.ndarray] = {}
    for name, scorer in scorers.items():
        rows = [r[name].scores for r in results.values() if name in r and r[name].scores]
        if len(rows) < MIN_BATCH_FOR_CALIBRATION:
            rows += stored(scorer)
        if len(rows) >= MIN_BATCH_FOR_CALIBRATION:
            out[name] = np.asarray(rows, dtype=np.float64).mean(axis=0)
        elif isinstance(scorer, NextTokenScorer):
            out[name] = np.asarray(scorer.calibration_scores())
    return out


def make_labels(
    setup: RunSetup,
    run_id: str,
    user_ids: Sequence[str],
    results: Results,
    cal: Mapping[str, np.ndarray],
    empty: set[str],
    call_ids: Mapping[str, list[str]],
) -> list[LabelRecord]:
    """One label per user: combined, or an abstention that says why (empty history, every scorer failed)."""
    out = []
    for uid in user_ids:
        reason: str | None
        got = results.get(uid, {})
        if not got:
            reason = "empty history" if uid in empty else "every scorer failed"
            nothing = SegmentAssignment(primary=None, probabilities={}, confidence=0.0, abstained=True)
            out.append(_record(setup, run_id, uid, nothing, reason, got, call_ids.get(uid, [])))
            continue
        cfg = setup.config
        assignment = combine(setup.taxonomy, got, setup.specs, cal, cfg.temperature, cfg.threshold)
        assignment.evidence = _evidence(got, assignment.primary)
        reason = "below confidence threshold" if assignment.abstained else None
        out.append(_record(setup, run_id, uid, assignment, reason, got, call_ids.get(uid, [])))
    return out


def _evidence(results: Mapping[str, ScoreResult], primary: str | None) -> list[str]:
    emb = results.get("embedding") or results.get("multilingual")
    if emb is not None and primary:
        return list(emb.evidence.get(primary, []))
    return []


def _record(
    setup: RunSetup,
    run_id: str,
    uid: str,
    a: SegmentAssignment,
    reason: str | None,
    results: Mapping[str, ScoreResult],
    call_ids: list[str],
) -> LabelRecord:
    prompt = setup.primary.prompt
    failed = reason == "every scorer failed"
    return LabelRecord(
        run_id=run_id,
        user_id=uid,
        primary_segment=a.primary,
        segments=a.segments,
        probabilities=a.probabilities,
        confidence=a.confidence,
        abstained=a.abstained,
        model_id=setup.primary.model_id,
        prompt_name=prompt.name if prompt else "",
        prompt_version=prompt.version if prompt else "",
        prompt_hash=prompt.hash if prompt else "",
        taxonomy_name=setup.taxonomy.name,
        taxonomy_hash=setup.tax_hash,
        abstain_reason=reason,
        rationale=a.rationale,
        evidence=a.evidence,
        scorers={
            "specs": [asdict(s) for s in setup.specs],
            "models": {n: s.model_id for n, s in setup.scorers.items()},
            "confidence": {
                n: r.confidence_source for n, r in results.items() if isinstance(r, JsonScoreResult)
            },
        },
        call_ids=call_ids,
        error="every scorer failed" if failed else None,
    )
