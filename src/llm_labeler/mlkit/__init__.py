"""scikit-learn lives in this one package: metrics (metrics.py) and the student model's pieces."""

from __future__ import annotations

from .metrics import classification_metrics, confusion, per_segment

__all__ = ["classification_metrics", "confusion", "per_segment"]
