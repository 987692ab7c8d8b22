"""scikit-learn lives in this one package: metrics (metrics.py) and the student model's pieces."""

from __future__ import annotations

from ..metrics import classification_metrics, confusion, per_segment
from .estimator import HashedTfidf, StudentClassifier, cross_val_predict_student
from .persist import library_versions, load_student, model_version, save_student

__all__ = [
    "HashedTfidf",
    "StudentClassifier",
    "classification_metrics",
    "confusion",
    "cross_val_predict_student",
    "library_versions",
    "load_student",
    "model_version",
    "per_segment",
    "save_student",
]
