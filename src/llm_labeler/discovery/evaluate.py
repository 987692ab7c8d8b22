"""A proposed partition against gold segments: NMI, ARI and purity, and, after the best one-to-one mapping of
proposed to gold segments (Hungarian, scipy), accuracy and macro-F1.

Users without a proposed segment (left out, or abstained by `label`) count as misses in every figure: they are a
cluster of their own for NMI / ARI / purity, and map to no gold segment.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    f1_score,
    normalized_mutual_info_score,
)
from sklearn.metrics.cluster import contingency_matrix

from ..errors import InputError

__all__ = [
    "LEFT_OUT",
    "cluster_scores",
    "hungarian_mapping",
    "mapped_scores",
    "read_gold_csv",
    "write_mapped_gold",
]

LEFT_OUT = "(none)"


def _pairs(pred: Mapping[str, str | None], gold: Mapping[str, str]) -> tuple[list[str], list[str]]:
    users = sorted(u for u in gold if u in pred)
    return [pred[u] or LEFT_OUT for u in users], [gold[u] for u in users]


def cluster_scores(pred: Mapping[str, str | None], gold: Mapping[str, str]) -> dict[str, Any]:
    """NMI, ARI and purity of the proposed segments on the users that have gold."""
    p, g = _pairs(pred, gold)
    if not p:
        return {"n": 0, "nmi": None, "ari": None, "purity": None}
    table = contingency_matrix(g, p)
    return {
        "n": len(p),
        "nmi": float(normalized_mutual_info_score(g, p)),
        "ari": float(adjusted_rand_score(g, p)),
        "purity": float(table.max(axis=0).sum() / table.sum()),
        "clusters": len(set(p) - {LEFT_OUT}),
        "gold_segments": len(set(g)),
    }


def hungarian_mapping(pred: Mapping[str, str | None], gold: Mapping[str, str]) -> dict[str, str]:
    """Proposed segment -> gold segment, one to one, maximising the users they share."""
    p, g = _pairs(pred, gold)
    ps = sorted(set(p) - {LEFT_OUT})
    gs = sorted(set(g))
    if not ps or not gs:
        return {}
    overlap = np.zeros((len(ps), len(gs)))
    pi, gi = {s: i for i, s in enumerate(ps)}, {s: i for i, s in enumerate(gs)}
    for a, b in zip(p, g):
        if a in pi:
            overlap[pi[a], gi[b]] += 1
    rows, cols = linear_sum_assignment(-overlap)
    return {ps[r]: gs[c] for r, c in zip(rows, cols)}


def mapped_scores(pred: Mapping[str, str | None], gold: Mapping[str, str]) -> dict[str, Any]:
    """Accuracy and macro-F1 (over the gold segments) once proposed segments are mapped one to one onto gold."""
    mapping = hungarian_mapping(pred, gold)
    p, g = _pairs(pred, gold)
    if not p:
        return {"n": 0, "accuracy": None, "macro_f1": None, "mapping": {}}
    mapped = [mapping.get(x, LEFT_OUT) for x in p]
    return {
        "n": len(p),
        "accuracy": float(accuracy_score(g, mapped)),
        "macro_f1": float(f1_score(g, mapped, labels=sorted(set(g)), average="macro", zero_division=0)),
        "mapping": mapping,
    }


def read_gold_csv(spec: str) -> dict[str, str]:
    """Gold from `FILE.csv` or `FILE.csv#COLUMN`: user_id and a segment column (default `segment`)."""
    path, _, column = spec.partition("#")
    column = column or "segment"
    try:
        with Path(path).open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "user_id" not in reader.fieldnames or column not in reader.fieldnames:
                raise InputError(f"{path}: needs columns user_id and {column!r}; has {reader.fieldnames}")
            return {r["user_id"]: r[column] for r in reader if r[column].strip()}
    except FileNotFoundError as exc:
        raise InputError(f"gold file not found: {path}") from exc


def write_mapped_gold(path: str | Path, gold: Mapping[str, str], mapping: Mapping[str, str]) -> int:
    """Gold in the proposed taxonomy's ids (user_id,segment), for an eval suite on the proposed taxonomy: each
    gold segment becomes the proposed segment mapped onto it; users of unmapped gold segments are left out."""
    inverse = {g: p for p, g in mapping.items()}
    rows = [(u, inverse[g]) for u, g in sorted(gold.items()) if g in inverse]
    with Path(path).open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["user_id", "segment"])
        writer.writerows(rows)
    return len(rows)
