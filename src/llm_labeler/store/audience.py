"""SQL for segment shares: gold users (reviewed, or chosen by a condition on the gold table) and student scores."""

from __future__ import annotations

import json

from . import Store

__all__ = ["GOLD_REVIEWED", "gold_segments", "reviews_trained_on", "run_models", "score_segments"]

GOLD_REVIEWED = (
    "reviewed"  # `--gold reviewed`: corrections stored by `review import` (source 'review:<file>')
)


def gold_segments(store: Store, taxonomy_name: str, which: str = GOLD_REVIEWED) -> dict[str, list[str]]:
    """user -> gold segments for a taxonomy: the reviewed ones, or those a condition on the gold table picks
    (e.g. "source LIKE 'eval suite%'"; checked by store.conditions)."""
    if which.strip().lower() == GOLD_REVIEWED:
        where = "source LIKE 'review:%'"
    else:
        where = store.condition(which, "--gold", "gold")
    rows = store.con.execute(
        f"SELECT user_id, segments FROM gold WHERE taxonomy_name = ? AND {where} ORDER BY user_id",
        [taxonomy_name],
    ).fetchall()
    return {r[0]: list(json.loads(r[1]) or []) for r in rows}


def score_segments(store: Store, model_version: str) -> dict[str, str | None]:
    """user -> the segment a student (or its LLM fallback) gave, for every user scored by this model."""
    rows = store.con.execute(
        "SELECT user_id, segment FROM scores WHERE model_version = ? ORDER BY user_id", [model_version]
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def run_models(store: Store, run_id: str) -> list[dict[str, str]]:
    """Students distilled from a run (newest first): model_version and path."""
    rows = store.con.execute(
        "SELECT model_version, path FROM student_models WHERE source_run = ? ORDER BY created_at DESC",
        [run_id],
    ).fetchall()
    return [{"model_version": r[0], "path": r[1]} for r in rows]


def reviews_trained_on(store: Store, taxonomy_name: str, source_run: str) -> set[str]:
    """Reviewed users of a student's source run: those a student made before it recorded its `reviewed_users`
    may have trained on (distill replaces the LLM's label with the correction)."""
    rows = store.con.execute(
        "SELECT g.user_id FROM gold g JOIN labels l ON l.user_id = g.user_id AND l.run_id = ? "
        "WHERE g.taxonomy_name = ? AND g.source LIKE 'review:%'",
        [source_run, taxonomy_name],
    ).fetchall()
    return {r[0] for r in rows}
