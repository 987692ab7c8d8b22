"""Who is counted: the users of a label run or of a student's scores, their predicted segments, and the gold ones."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError, StoreError
from ..schemas import Taxonomy
from ..store import Store
from ..store import audience as aq
from ..store import student as sq
from .shares import SegmentShare, shares

__all__ = [
    "Population",
    "SharesResult",
    "estimate_shares",
    "indicators",
    "run_population",
    "scores_population",
]


@dataclass
class Population:
    """Every user of a run (or of a student's scores) with the segments the model gave them."""

    source: str  # "run RUN" or "student MODEL_VERSION"
    ref: str  # the run id or model version
    taxonomy: Taxonomy
    predicted: dict[str, list[str]]  # user -> segments (empty: abstained or failed)
    labels: list[dict[str, Any]] = field(default_factory=list)  # a run's stored labels (empty for scores)
    trained_on: set[str] = field(default_factory=set)  # users whose gold the model learned from (in-sample)

    def matrix(self, users: list[str]) -> np.ndarray:
        """The model's segments of these users as 0/1 indicators (see `indicators`)."""
        return indicators(self.taxonomy.ids, self.predicted, users)


def indicators(segments: list[str], assigned: dict[str, list[str]], users: list[str]) -> np.ndarray:
    """0/1 indicators, one row per user, one column per segment (in `segments` order)."""
    col = {s: j for j, s in enumerate(segments)}
    out = np.zeros((len(users), len(col)))
    for i, u in enumerate(users):
        for s in assigned[u]:
            out[i, col[s]] = 1.0
    return out


@dataclass
class SharesResult:
    """Segment shares of one population, with what they were computed from."""

    source: str
    taxonomy: Taxonomy
    level: float
    gold: str
    n: int
    n_gold: int
    segments: list[SegmentShare]


def _label_segments(lab: dict[str, Any], tax: Taxonomy) -> list[str]:
    if lab.get("error") or lab.get("abstained"):
        return []
    chosen = (lab.get("segments") or []) if tax.multi_label else [lab.get("primary_segment")]
    return [s for s in chosen if s in tax.ids]


def run_population(store: Store, run_ref: str) -> Population:
    """A label run (or the labeling run behind an eval run) as a population."""
    run_id = sq.labeling_run(store, run_ref)
    tax = store.run_taxonomy(run_id)
    labels = store.labels(run_id)
    if not labels:
        raise InputError(f"run {run_id} has no labels")
    predicted = {lab["user_id"]: _label_segments(lab, tax) for lab in labels}
    return Population(f"run {run_id}", run_id, tax, predicted, labels)


def scores_population(store: Store, model_version: str | None = None) -> Population:
    """The users a student scored (the `scores` table), by model version; the newest model by default."""
    model = sq.get_model(store, model_version) if model_version else sq.latest_model(store)
    if model is None:
        raise StoreError(f"no distilled model {model_version!r} in {store.path} (distill prints its version)")
    found = store.taxonomy(model["taxonomy_hash"] or "")
    if found is None:
        raise StoreError(f"model {model['model_version']} points at a taxonomy the store lacks")
    scored = aq.score_segments(store, model["model_version"])
    if not scored:
        raise InputError(f"model {model['model_version']} has scored no user: run llm-labeler score first")
    predicted = {u: [s] if s in found.ids else [] for u, s in scored.items()}
    return Population(
        f"student {model['model_version']}",
        model["model_version"],
        found,
        predicted,
        trained_on=_seen(store, model),
    )


def _seen(store: Store, model: dict[str, Any]) -> set[str]:
    """The users whose review corrections the student trained on."""
    meta, report = model.get("metadata") or {}, model.get("report") or {}
    if "reviewed_users" in meta:
        return set(meta["reviewed_users"])
    if not report.get("reviewed"):
        return set()
    return aq.reviews_trained_on(store, model["taxonomy_name"], model["source_run"] or "")  # an older model


def _gold(store: Store, pop: Population, which: str) -> dict[str, list[str]]:
    tax = pop.taxonomy
    gold = aq.gold_segments(store, tax.name, which)
    if not gold:
        raise InputError(
            f"no gold users ({which}) for taxonomy {tax.name} in {store.path}: review a random sample "
            "(review export --sample random, fill in correct_segment, review import) or pass --gold SQL"
        )
    missing = sorted(set(gold) - set(pop.predicted))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise InputError(
            f"{len(missing)} of {len(gold)} gold users are not in {pop.source}: {shown}; "
            "pick gold users of this run with --gold SQL (a condition on the gold table)"
        )
    seen = pop.trained_on & set(gold)
    if seen:
        raise InputError(
            f"{pop.source} was distilled on the review corrections of {len(seen)} of these {len(gold)} gold users, "
            "so its scores of them are in-sample and PPI would trust it blindly: review a fresh random sample "
            "of users it did not train on and pick it with --gold \"source = 'review:FILE'\""
        )
    unknown = sorted({s for segs in gold.values() for s in segs} - set(tax.ids))
    if unknown:
        raise InputError(
            f"taxonomy mismatch: gold segments {', '.join(unknown)} are not in {pop.source}'s taxonomy "
            f"{tax.name} ({tax.content_hash()[:12]}); the gold was made for another version of it"
        )
    return gold


def estimate_shares(
    store: Store, pop: Population, gold: str = aq.GOLD_REVIEWED, level: float = 0.95
) -> SharesResult:
    """Each segment's share of the population: naive, gold-only and prediction-powered, at this level."""
    found = _gold(store, pop, gold)
    users = sorted(pop.predicted)
    row = {u: i for i, u in enumerate(users)}
    gold_users = sorted(found)
    rows = np.array([row[u] for u in gold_users], int)
    gold_matrix = indicators(pop.taxonomy.ids, found, gold_users)
    result = shares(pop.taxonomy.ids, pop.matrix(users), rows, gold_matrix, level)
    return SharesResult(pop.source, pop.taxonomy, level, gold, len(users), len(gold_users), result)
