"""Users' vectors into clusters: k-means with k chosen by silhouette, or density-based (HDBSCAN) with outliers out.

Both live in scikit-learn, on the centred vectors (see `center`). The automatic k is the one with the highest silhouette (cosine on unit vectors) over
K_MIN .. min(auto_k_max, n / min_size): the standard internal criterion, it needs no labels, and it says how
separated the proposal is (reported with the run). Clusters smaller than min_size are dissolved into the nearest
remaining centroid (k-means) or left out (density); centroids closer than merge_similarity are merged.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from sklearn.cluster import HDBSCAN, KMeans
from sklearn.metrics import silhouette_score

from ..errors import InputError
from .config import K_MIN, DiscoverConfig

__all__ = ["Clustering", "center", "central_members", "cluster_users", "merge_close"]

OUTLIER = -1
_SILHOUETTE_SAMPLE = 3000  # users the silhouette is computed on (it is quadratic in users)


@dataclass
class Clustering:
    """Cluster index per user (OUTLIER: left out), and how k was chosen."""

    labels: np.ndarray
    k: int
    how: str  # "given", "auto (silhouette ...)", "density"
    silhouettes: dict[int, float] = field(default_factory=dict)


def center(matrix: np.ndarray) -> np.ndarray:
    """Unit vectors less their mean, renormalised. Sentence embeddings share a common direction (all of e5's
    cosines sit above 0.7): removed, cosines and the merge threshold mean the same for every model."""
    if matrix.shape[0] == 0:
        return matrix
    centred = matrix - matrix.mean(axis=0, keepdims=True)
    out: np.ndarray = centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)
    return out


def cluster_users(matrix: np.ndarray, config: DiscoverConfig) -> Clustering:
    """Cluster unit vectors as the config says; too few users for the segments asked for is an error."""
    n = matrix.shape[0]
    if config.method == "density":
        return _density(matrix, config)
    wanted = config.k or K_MIN
    if n < wanted * config.min_size:
        raise InputError(
            f"{n} users with a history cannot make {wanted} segments of at least {config.min_size} users "
            f"(--min-size): select more users or ask for fewer segments"
        )
    if config.k is not None:
        return Clustering(_kmeans(matrix, config.k, config.seed, config.min_size), config.k, "given")
    top = max(K_MIN, min(config.auto_k_max, n // config.min_size))
    scores = {
        k: _silhouette(matrix, _kmeans(matrix, k, config.seed, config.min_size), config.seed)
        for k in range(K_MIN, top + 1)
    }
    best = max(scores, key=lambda k: (scores[k], -k))
    labels = _kmeans(matrix, best, config.seed, config.min_size)
    return Clustering(
        labels, best, f"auto (best silhouette {scores[best]:.3f} over k={K_MIN}..{top})", scores
    )


def _kmeans(matrix: np.ndarray, k: int, seed: int, min_size: int) -> np.ndarray:
    labels: np.ndarray = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(matrix)
    return _renumber(_dissolve_small(matrix, labels, min_size))


def _dissolve_small(matrix: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Members of clusters under min_size move to the nearest centroid of a large enough cluster."""
    ids, counts = np.unique(labels, return_counts=True)
    big = ids[counts >= min_size]
    if len(big) == len(ids) or len(big) == 0:
        return labels
    centroids = np.stack([_unit(matrix[labels == c].mean(axis=0)) for c in big])
    small = ~np.isin(labels, big)
    labels = labels.copy()
    labels[small] = big[np.argmax(matrix[small] @ centroids.T, axis=1)]
    return labels


def _density(matrix: np.ndarray, config: DiscoverConfig) -> Clustering:
    if matrix.shape[0] < 2 * config.min_size:
        raise InputError(
            f"{matrix.shape[0]} users with a history are too few for density clusters of at least "
            f"{config.min_size} users (--min-size)"
        )
    labels = HDBSCAN(min_cluster_size=max(config.min_size, 2), metric="euclidean", copy=True).fit_predict(
        matrix
    )
    labels = _renumber(labels)
    k = int(labels.max()) + 1 if (labels >= 0).any() else 0
    return Clustering(labels, k, "density (HDBSCAN)")


def _silhouette(matrix: np.ndarray, labels: np.ndarray, seed: int) -> float:
    if len(np.unique(labels)) < 2:
        return -1.0
    sample = min(matrix.shape[0], _SILHOUETTE_SAMPLE)
    return float(silhouette_score(matrix, labels, metric="cosine", sample_size=sample, random_state=seed))


def merge_close(
    matrix: np.ndarray, labels: np.ndarray, similarity: float, first: int = 0
) -> tuple[np.ndarray, int]:
    """Merge clusters whose centroids are at least `similarity` cosine-similar; (labels, merges made).

    Clusters numbered below `first` (kept segments of --from) are neither merged nor renumbered."""
    labels, merges = labels.copy(), 0
    while True:
        ids = [int(c) for c in np.unique(labels) if c >= first]
        if len(ids) < 2:
            return labels, merges
        cents = np.stack([_unit(matrix[labels == c].mean(axis=0)) for c in ids])
        sims = cents @ cents.T
        np.fill_diagonal(sims, -1.0)
        i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
        if sims[i, j] < similarity:
            return labels, merges
        labels[labels == ids[j]] = ids[i]
        labels, merges = _renumber(labels, first), merges + 1


def central_members(matrix: np.ndarray, rows: np.ndarray, n: int) -> list[int]:
    """Row indices of the `n` members closest to their cluster's centroid."""
    centroid = _unit(matrix[rows].mean(axis=0))
    order = np.argsort(-(matrix[rows] @ centroid), kind="stable")
    return [int(rows[i]) for i in order[:n]]


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (np.linalg.norm(v) or 1.0)


def _renumber(labels: np.ndarray, first: int = 0) -> np.ndarray:
    """Clusters from `first` on numbered by decreasing size (ties by first member); those below and outliers
    keep their numbers."""
    ids = [int(c) for c in np.unique(labels) if c >= first]
    order = sorted(ids, key=lambda c: (-int((labels == c).sum()), int(np.argmax(labels == c))))
    out = labels.copy()
    for new, old in enumerate(order, start=first):
        out[labels == old] = new
    return out
