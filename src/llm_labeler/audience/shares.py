"""Segment shares with confidence intervals: naive label counts, gold-only (classical), and prediction-powered.

Prediction-powered inference (Angelopoulos, Bates, Fannjiang, Jordan, Zrnic, Science 2023) combines the model's
labels on every user with gold labels on a random sample of them: the share of the model's labels, corrected by the
mean error on the gold users, with an interval valid whatever the labeler's errors. As in PPI++ (Angelopoulos,
Duchi, Zrnic 2023) the correction is power-tuned: the labels get the weight lambda in [0, 1] that minimises the
variance (lambda = 0 is the gold-only estimate, lambda = 1 the original PPI).

The question is "what share of *these* N users", every one of which the model labeled, so the estimand is a
finite population's share and the estimator is survey sampling's difference estimator: the only randomness is which
n users were reviewed (a simple random sample), hence the finite-population factor (1 - n/N). And since a small gold
sample often holds no labeler error at all for a small segment, the variance of the correction is never taken below
that of the sample with one pseudo-error each way added (as Agresti and Coull add pseudo-counts to a proportion).
`ppi_py` (the paper authors' package: the same estimator for an infinite population, without the floor) is the
reference in the tests and benchmarks/bench_shares.py (README: its coverage and ours). The classical interval gets
both corrections too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import norm

from ..errors import InputError

__all__ = [
    "METHODS",
    "Interval",
    "SegmentShare",
    "classical_interval",
    "naive_interval",
    "power_tuning",
    "ppi_interval",
    "shares",
]

METHODS = ("ppi", "classical", "naive")


@dataclass(frozen=True)
class Interval:
    """A share (a fraction in [0, 1]) and its confidence interval."""

    estimate: float
    lo: float
    hi: float

    @property
    def width(self) -> float:
        """hi - lo."""
        return self.hi - self.lo

    def covers(self, value: float) -> bool:
        """Whether the interval holds `value`."""
        return self.lo <= value <= self.hi


@dataclass(frozen=True)
class SegmentShare:
    """One segment's share three ways: naive (label counts), classical (gold only) and prediction-powered."""

    segment: str
    n: int
    n_gold: int
    naive: Interval
    classical: Interval
    ppi: Interval

    def as_json(self) -> dict[str, Any]:
        """The `shares --json` object."""
        return {
            "segment": self.segment,
            "n": self.n,
            "n_gold": self.n_gold,
            "naive": _round(self.naive.estimate),
            "classical": _interval_json(self.classical),
            "ppi": _interval_json(self.ppi),
        }


def _round(x: float) -> float:
    return round(float(x), 6)


def _interval_json(iv: Interval) -> dict[str, float]:
    return {"estimate": _round(iv.estimate), "lo": _round(iv.lo), "hi": _round(iv.hi)}


def _z(level: float) -> float:
    return float(norm.ppf(0.5 + level / 2))


def _interval(estimate: float, se: float, level: float) -> Interval:
    """estimate +- z * se, clipped to [0, 1] (shares live there: clipping never loses coverage)."""

    def c(x: float) -> float:
        return min(1.0, max(0.0, float(x)))

    half = _z(level) * se
    return Interval(c(estimate), c(estimate - half), c(estimate + half))


def naive_interval(yhat: np.ndarray, level: float) -> Interval:
    """The share of users the model put in the segment, with the binomial (Wald) interval of trusting the labels."""
    p = float(np.mean(yhat))
    return _interval(p, math.sqrt(p * (1 - p) / len(yhat)), level)


def _floored_var(values: np.ndarray, pseudo: tuple[float, float]) -> float:
    """The sample variance, or that of the sample with the two pseudo-observations added if larger."""
    return max(float(np.var(values)), float(np.var(np.append(values, pseudo))))


def _se(var: float, n: int, population: int | None) -> float:
    """The standard error of a mean of n draws without replacement from `population` users (None: infinite)."""
    fpc = max(0.0, 1 - n / population) if population else 1.0
    return math.sqrt(fpc * var / n)


def classical_interval(y: np.ndarray, level: float, population: int | None = None) -> Interval:
    """The share among the n gold users alone, for a population of N users (default: infinite)."""
    y = np.asarray(y, float)
    var = _floored_var(y, (0.0, 1.0))
    return _interval(float(y.mean()), _se(var, len(y), population), level)


def power_tuning(y: np.ndarray, yhat: np.ndarray, predicted: np.ndarray) -> float:
    """The weight lambda of the labels that minimises the variance: Cov(Y, Yhat) on the gold users over the
    variance of the labels of all users, clipped to [0, 1]."""
    var = float(np.var(predicted))
    if var == 0:
        return 0.0  # constant labels carry no information
    cov = float(np.mean((y - y.mean()) * (yhat - yhat.mean())))
    return min(1.0, max(0.0, cov / var))


def ppi_interval(
    y: np.ndarray, yhat: np.ndarray, predicted: np.ndarray, level: float, lam: float | None = None
) -> Interval:
    """The prediction-powered share of N users: `predicted` the model's 0/1 labels of all N, `y` and `yhat` the
    gold and the model's labels of the n reviewed users among them; `lam` fixed, or power-tuned when None."""
    y, yhat, predicted = (np.asarray(a, float) for a in (y, yhat, predicted))
    lam = power_tuning(y, yhat, predicted) if lam is None else lam
    rectifier = y - lam * yhat
    estimate = lam * float(predicted.mean()) + float(rectifier.mean())
    var = _floored_var(rectifier, (1.0, -lam))  # a missed user (Y=1, Yhat=0), a false one (Y=0, Yhat=1)
    return _interval(estimate, _se(var, len(y), len(predicted)), level)


def shares(
    segments: list[str],
    predicted: np.ndarray,
    gold_rows: np.ndarray,
    gold: np.ndarray,
    level: float = 0.95,
) -> list[SegmentShare]:
    """Each segment's share among N users, three ways.

    `predicted` (N x K, 0/1): the model's segments for every user; `gold_rows`: the row numbers of the n gold users
    (a simple random sample of the N: a least-confident review sample is not one); `gold` (n x K, 0/1): their gold
    segments. Multi-label taxonomies simply have rows
    with several ones: each segment's share is then its prevalence.
    """
    _check(segments, predicted, gold_rows, gold, level)
    out = []
    for k, seg in enumerate(segments):
        y, yhat = gold[:, k], predicted[gold_rows, k]
        out.append(
            SegmentShare(
                seg,
                len(predicted),
                len(gold_rows),
                naive_interval(predicted[:, k], level),
                classical_interval(y, level, len(predicted)),
                ppi_interval(y, yhat, predicted[:, k], level),
            )
        )
    return out


def _check(
    segments: list[str], predicted: np.ndarray, gold_rows: np.ndarray, gold: np.ndarray, level: float
) -> None:
    if not 0 < level < 1:
        raise InputError(f"--level must be between 0 and 1 (e.g. 0.95), not {level}")
    if (
        predicted.ndim != 2
        or predicted.shape[1] != len(segments)
        or gold.shape != (len(gold_rows), len(segments))
    ):
        raise InputError(
            f"shapes do not match: {len(segments)} segments, predictions {predicted.shape}, gold {gold.shape}"
        )
    if len(gold_rows) < 2:
        raise InputError(f"{len(gold_rows)} gold user(s): an interval needs at least 2 reviewed users")
    if len(set(np.asarray(gold_rows).tolist())) != len(gold_rows):
        raise InputError("a gold user is listed twice")
