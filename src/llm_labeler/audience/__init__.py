"""Audience sizes: segment shares with valid intervals from many model labels and a few reviewed users, and the
audience report.

shares.py      the statistics: naive counts, gold-only (classical) and prediction-powered intervals (ppi_py)
population.py  who is counted (a label run, or a student's scores), their segments and the gold users
terms.py       distinctive terms of each segment
report.py      the audience page (self-contained HTML, inline SVG)
"""

from __future__ import annotations

from .population import (
    Population,
    SharesResult,
    estimate_shares,
    indicators,
    run_population,
    scores_population,
)
from .report import AudiencePage, render_audience_report
from .shares import METHODS, Interval, SegmentShare, shares

__all__ = [
    "METHODS",
    "AudiencePage",
    "Interval",
    "Population",
    "SegmentShare",
    "SharesResult",
    "estimate_shares",
    "indicators",
    "render_audience_report",
    "run_population",
    "scores_population",
    "shares",
]
