"""Fitting the combination: weights from gold (log-loss) or from the scorers' agreement alone (a label model).

Both work on what `combine` sees: each scorer's calibrated scores, z-scored within the user. The combined logit of
segment c is sum_s a_s * z_s[c]; `combine` computes it as temperature * sum_s w_s * z_s[c], so a fitted a is stored
as weights w = a / max(a) and temperature = max(a). A scorer that did not score a user (routed away, failed)
contributes nothing to that user, exactly as in `combine`.

- `fit_weights`: minimise the mean negative log-likelihood of the gold segment over a >= 0, with an L2 pull towards
  the prior weights (so a scorer that scored none of the tune users keeps its prior instead of dropping to 0).
- `label_model`: one-coin Dawid-Skene on the scorers' first choices: EM estimates each scorer's accuracy and the
  segment prior from agreement on unlabeled users (identifiable with three or more scorers), and the weight of a
  scorer is its log-odds of being right, log(acc (K-1) / (1 - acc)), the weight of the optimal weighted vote.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import minimize

from .combine import zscore

__all__ = ["FitResult", "LabelModelResult", "first_choices", "fit_weights", "label_model", "stack_scores"]


def stack_scores(
    rows: Sequence[Mapping[str, Sequence[float] | None]],
    names: Sequence[str],
    calibration: Mapping[str, np.ndarray],
    calibrate: Mapping[str, str],
    n_segments: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Z (scorers x users x segments) of calibrated, within-user z-scores, and a mask of who scored whom."""
    z = np.zeros((len(names), len(rows), n_segments))
    mask = np.zeros((len(names), len(rows)), dtype=bool)
    for i, row in enumerate(rows):
        for s, name in enumerate(names):
            scores = row.get(name)
            if scores is None:
                continue
            v = np.asarray(scores, dtype=np.float64)
            if calibrate.get(name) == "batch" and name in calibration:
                v = v - calibration[name]
            z[s, i], mask[s, i] = zscore(v), True
    return z, mask


def first_choices(z: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Each scorer's first segment for each user (scorers x users), -1 where it did not score the user: the votes
    of the label model."""
    return np.where(mask, z.argmax(axis=2), -1)


@dataclass
class FitResult:
    """Fitted weights (relative, max 1) and temperature, with the fit's log-loss and accuracy on its users."""

    weights: dict[str, float]
    temperature: float
    log_loss: float
    accuracy: float
    n_users: int
    raw: dict[str, float] = field(default_factory=dict)  # a_s: weight x temperature


def _nll_grad(
    a: np.ndarray, z: np.ndarray, y: np.ndarray, prior: np.ndarray, l2: float
) -> tuple[float, np.ndarray]:
    logits = np.einsum("s,suk->uk", a, z)
    logits -= logits.max(axis=1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    n = len(y)
    nll = -float(logp[np.arange(n), y].mean()) + l2 * float(((a - prior) ** 2).sum())
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    grad = np.einsum("uk,suk->s", p - onehot, z) / n + 2 * l2 * (a - prior)
    return nll, grad


def fit_weights(
    z: np.ndarray,
    gold: Sequence[int],
    names: Sequence[str],
    prior: Mapping[str, float],
    prior_temperature: float,
    l2: float = 1e-3,
) -> FitResult:
    """Weights and temperature that minimise the log-loss of the gold segments (indices into the taxonomy)."""
    y = np.asarray(gold, dtype=np.int64)
    if len(y) == 0:
        raise ValueError("no gold users to fit on")
    a0 = np.asarray([prior.get(n, 1.0) * prior_temperature for n in names], dtype=np.float64)
    res = minimize(
        _nll_grad,
        a0,
        args=(z, y, a0, l2),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None)] * len(names),
    )
    a = np.asarray(res.x, dtype=np.float64)
    top = float(a.max())
    if top <= 1e-9:  # nothing carries signal: keep the prior
        a, top = a0, float(a0.max())
    logits = np.einsum("s,suk->uk", a, z)
    nll, _ = _nll_grad(a, z, y, a, 0.0)
    return FitResult(
        weights={n: round(float(x) / top, 4) for n, x in zip(names, a)},
        temperature=round(top, 4),
        log_loss=round(nll, 4),
        accuracy=round(float((logits.argmax(axis=1) == y).mean()), 4),
        n_users=len(y),
        raw={n: round(float(x), 4) for n, x in zip(names, a)},
    )


@dataclass
class LabelModelResult:
    """Each scorer's estimated accuracy and the vote weight derived from it."""

    accuracy: dict[str, float]
    weights: dict[str, float]  # relative, max 1
    prior: list[float]
    n_users: int
    iterations: int


def label_model(
    votes: np.ndarray, n_segments: int, names: Sequence[str], max_iter: int = 200, tol: float = 1e-6
) -> LabelModelResult:
    """One-coin Dawid-Skene from first choices (`votes`: scorers x users, -1 = no vote).

    A scorer that gives nearly every user the same segment (MiniLM on Chinese text) can explain itself through a
    fitted segment prior, as "always right about a population that is all one segment", and that solution has the
    higher likelihood (on the Chinese tune half it crowned MiniLM, 0.44 accurate, the best scorer). So the segment
    prior is held uniform: weights need each scorer's accuracy, not the segment sizes. EM starts from the majority
    vote and from each scorer's own votes taken as the truth; the fit with the highest likelihood wins.
    """
    if len(names) < 3:
        raise ValueError(
            f"a label model needs at least three scorers to tell who is right from agreement; got {len(names)}"
        )
    s_count, n = votes.shape
    voted = votes >= 0
    starts = [np.arange(s_count)] + [np.asarray([s]) for s in range(s_count)]
    best: tuple[float, np.ndarray, np.ndarray, int] | None = None
    for who in starts:
        q = np.full((n, n_segments), 1e-3)
        for s in who:
            q[np.arange(n)[voted[s]], votes[s, voted[s]]] += 1.0
        q /= q.sum(axis=1, keepdims=True)
        fit = _em(votes, voted, q, n_segments, max_iter, tol)
        if best is None or fit[0] > best[0]:
            best = fit
    assert best is not None
    _, acc, q, it = best
    k = n_segments
    log_odds = np.log(acc * (k - 1) / (1 - acc))
    top = float(log_odds.max()) or 1.0
    return LabelModelResult(
        accuracy={nm: round(float(a), 4) for nm, a in zip(names, acc)},
        weights={nm: round(max(float(w), 0.0) / top, 4) for nm, w in zip(names, log_odds)},
        prior=[round(float(p), 4) for p in q.mean(axis=0)],
        n_users=n,
        iterations=it,
    )


def _em(
    votes: np.ndarray,
    voted: np.ndarray,
    q: np.ndarray,
    k: int,
    max_iter: int,
    tol: float,
    uniform_prior: bool = True,
) -> tuple[float, np.ndarray, np.ndarray, int]:
    """EM from posteriors q: (log-likelihood, accuracies, posteriors, iterations)."""
    s_count, n = votes.shape
    acc = np.full(s_count, 0.7)
    loglik, it = -np.inf, 0
    for _ in range(max_iter):
        it += 1
        prior = np.full(k, 1.0 / k) if uniform_prior else q.mean(axis=0).clip(1e-6)
        new_acc = np.empty(s_count)
        for s in range(s_count):
            idx = np.arange(n)[voted[s]]
            new_acc[s] = q[idx, votes[s, idx]].sum() / max(len(idx), 1)
        new_acc = new_acc.clip(1.0 / k + 1e-3, 1 - 1e-3)  # better than chance, never certain
        log_q = np.tile(np.log(prior), (n, 1))
        for s in range(s_count):
            idx = np.arange(n)[voted[s]]
            wrong = np.log((1 - new_acc[s]) / (k - 1))
            log_q[idx] += wrong
            log_q[idx, votes[s, idx]] += np.log(new_acc[s]) - wrong
        top = log_q.max(axis=1, keepdims=True)
        norm = np.log(np.exp(log_q - top).sum(axis=1, keepdims=True)) + top
        loglik = float(norm.sum())
        q = np.exp(log_q - norm)
        done = float(np.abs(new_acc - acc).max()) < tol
        acc = new_acc
        if done:
            break
    return loglik, acc, q, it
