"""Classification metrics (scikit-learn) for evals and the demo."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score
from sklearn.metrics import precision_recall_fscore_support as _prfs

__all__ = ["classification_metrics", "confusion", "per_segment"]

NONE = "(abstain)"


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
        "kappa": float(cohen_kappa_score(y, p)) if len(set(y) | set(p)) > 1 else 0.0,
    }


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
    """Confusion matrix over segments plus a final abstain column."""
    labels = [*segments, NONE]
    return np.asarray(confusion_matrix(list(gold), _clean(pred), labels=labels))
