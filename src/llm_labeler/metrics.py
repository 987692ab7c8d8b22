"""Classification metrics (scikit-learn) for evals and the demo.

Headline metrics count an abstention (a None prediction) as a miss: the gold segment loses a true positive and no
segment gains a false positive. `covered_metrics` computes the same on the users that got a label, so a run that
abstains a lot shows both its reach and its precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    f1_score,
    hamming_loss,
    jaccard_score,
)
from sklearn.metrics import precision_recall_fscore_support as _prfs
from sklearn.preprocessing import MultiLabelBinarizer

__all__ = [
    "DEFAULT_THRESHOLDS",
    "NONE",
    "calibration",
    "classification_metrics",
    "confusion",
    "coverage",
    "covered_metrics",
    "multilabel_metrics",
    "per_segment",
    "percentiles",
]

NONE = "(abstain)"
DEFAULT_THRESHOLDS = (0.0, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95)


def _clean(labels: Sequence[str | None]) -> list[str]:
    return [lab if lab is not None else NONE for lab in labels]


def classification_metrics(
    gold: Sequence[str], pred: Sequence[str | None], segments: Sequence[str]
) -> dict[str, Any]:
    """Headline single-label metrics; an abstention counts as a miss."""
    y, p = list(gold), _clean(pred)
    if not y:
        return {"n": 0, "accuracy": 0.0, "macro_f1": 0.0, "micro_f1": 0.0, "kappa": 0.0}
    labels = list(segments)
    return {
        "n": len(y),
        "accuracy": float(accuracy_score(y, p)),
        "macro_f1": float(f1_score(y, p, labels=labels, average="macro", zero_division=0)),
        "micro_f1": float(f1_score(y, p, labels=labels, average="micro", zero_division=0)),
        "kappa": _kappa(y, p),
    }


def _kappa(y: list[str], p: list[str]) -> float:
    # sklearn returns nan when both sides hold one and the same label: no agreement beyond chance to measure.
    if len(set(y) | set(p)) < 2:
        return 0.0
    value = float(cohen_kappa_score(y, p))
    return 0.0 if np.isnan(value) else value


def covered_metrics(
    gold: Sequence[str], pred: Sequence[str | None], segments: Sequence[str]
) -> dict[str, Any]:
    """The headline metrics on the users that got a label (abstentions left out)."""
    pairs = [(g, p) for g, p in zip(gold, pred) if p is not None]
    return classification_metrics([g for g, _ in pairs], [p for _, p in pairs], segments)


def coverage(pred: Sequence[str | None]) -> dict[str, float]:
    """Share of users labeled, and its complement (the abstain rate)."""
    n = len(pred)
    covered = sum(p is not None for p in pred) / n if n else 0.0
    return {"coverage": covered, "abstain_rate": 1.0 - covered if n else 0.0}


def per_segment(
    gold: Sequence[str], pred: Sequence[str | None], segments: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support per segment."""
    prec, rec, f1, sup = _prfs(list(gold), _clean(pred), labels=list(segments), zero_division=0)
    return {
        s: {"precision": float(a), "recall": float(b), "f1": float(c), "support": int(d)}
        for s, a, b, c, d in zip(segments, prec, rec, f1, sup)
    }


def confusion(gold: Sequence[str], pred: Sequence[str | None], segments: Sequence[str]) -> np.ndarray:
    """Confusion matrix (rows gold, columns predicted) over segments plus a final abstain column."""
    labels = [*segments, NONE]
    return np.asarray(confusion_matrix(list(gold), _clean(pred), labels=labels))


def calibration(
    confidence: Sequence[float],
    correct: Sequence[bool],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    bins: int = 10,
) -> dict[str, Any]:
    """Expected calibration error over equal-width bins, and threshold -> (coverage, accuracy) rows."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    hit = np.asarray(correct, dtype=np.float64)
    n = len(conf)
    if n == 0:
        return {"ece": 0.0, "bins": [], "thresholds": []}
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = index == b
        if not mask.any():
            continue
        acc, mean_conf = float(hit[mask].mean()), float(conf[mask].mean())
        ece += mask.sum() / n * abs(acc - mean_conf)
        rows.append(
            {
                "lo": float(edges[b]),
                "hi": float(edges[b + 1]),
                "n": int(mask.sum()),
                "confidence": mean_conf,
                "accuracy": acc,
            }
        )
    return {"ece": float(ece), "bins": rows, "thresholds": _threshold_rows(conf, hit, thresholds)}


def _threshold_rows(conf: np.ndarray, hit: np.ndarray, thresholds: Sequence[float]) -> list[dict[str, float]]:
    out = []
    for t in thresholds:
        mask = conf >= t
        out.append(
            {
                "threshold": float(t),
                "coverage": float(mask.mean()),
                "accuracy": float(hit[mask].mean()) if mask.any() else 0.0,
                "n": int(mask.sum()),
            }
        )
    return out


def multilabel_metrics(
    gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], segments: Sequence[str]
) -> dict[str, float]:
    """Sample-averaged Jaccard similarity and Hamming loss of label sets (an abstention is an empty set)."""
    if not gold:
        return {"jaccard": 0.0, "hamming": 0.0}
    binarizer = MultiLabelBinarizer(classes=list(segments))
    y = binarizer.fit_transform([list(g) for g in gold])
    p = binarizer.transform([list(x) for x in pred])
    return {
        "jaccard": float(jaccard_score(y, p, average="samples", zero_division=0)),
        "hamming": float(hamming_loss(y, p)),
    }


def percentiles(values: Sequence[float], qs: Sequence[float] = (50, 95)) -> list[float]:
    """Percentiles of a sample (zeros when it is empty)."""
    if not len(values):
        return [0.0 for _ in qs]
    return [float(x) for x in np.percentile(np.asarray(values, dtype=np.float64), list(qs))]
