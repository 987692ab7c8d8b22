"""What `discover` keeps in the store: the users it selects, their cached embeddings, its run's taxonomy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from . import Store

__all__ = ["cached_vectors", "failed_before", "select_users", "set_run_taxonomy", "write_vectors"]


def select_users(store: Store, users_sql: str | None, limit: int | None) -> list[tuple[str, str]]:
    """(user_id, history_hash) of the users a --users SQL condition (checked) and --limit select, by user id."""
    where = store.condition(users_sql, "--users") if users_sql and users_sql.strip() else "TRUE"
    sql = f"SELECT user_id, coalesce(history_hash, '') FROM users WHERE {where} ORDER BY user_id"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [(r[0], r[1]) for r in store.con.execute(sql).fetchall()]


def cached_vectors(
    store: Store, model_id: str, params: str, users: Mapping[str, str]
) -> dict[str, tuple[np.ndarray, int]]:
    """The stored vector (and its number of texts) of each user whose history is unchanged since it was made."""
    if not users:
        return {}
    rows = store.con.execute(
        "SELECT user_id, history_hash, n_texts, vector FROM user_vectors WHERE model_id = ? AND params = ? "
        "AND user_id IN (SELECT unnest(?))",
        [model_id, params, list(users)],
    ).fetchall()
    return {
        uid: (np.asarray(vec, dtype=np.float32), int(n))
        for uid, h, n, vec in rows
        if h == users[uid] and vec is not None
    }


def write_vectors(
    store: Store,
    model_id: str,
    params: str,
    rows: Sequence[tuple[str, str, int, Any]],
) -> None:
    """Store (user_id, history_hash, n_texts, vector: floats or an array) rows, replacing older ones of the same user and model."""
    if not rows:
        return
    with store.transaction():
        store.con.executemany(
            "INSERT OR REPLACE INTO user_vectors (user_id, model_id, params, history_hash, n_texts, vector) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                [u, model_id, params, h, n, None if v is None else [float(x) for x in v]]
                for u, h, n, v in rows
            ],
        )


def set_run_taxonomy(store: Store, run_id: str, name: str, taxonomy_hash: str, body: dict[str, Any]) -> None:
    """Point a discover run at the taxonomy it proposed (kept in the taxonomies table like every label's)."""
    store.remember_taxonomy(taxonomy_hash, name, body)
    store.con.execute(
        "UPDATE runs SET taxonomy_name = ?, taxonomy_hash = ? WHERE run_id = ?", [name, taxonomy_hash, run_id]
    )


def failed_before(store: Store, cache_key: str, prefix: str) -> str | None:
    """The error of the newest paid call of this key when it failed with an error starting `prefix`, else None."""
    row = store.con.execute(
        "SELECT error FROM calls WHERE cache_key = ? AND NOT cache_hit ORDER BY created_at DESC LIMIT 1",
        [cache_key],
    ).fetchone()
    return str(row[0]) if row and row[0] and str(row[0]).startswith(prefix) else None
