"""The calls table: the one call writer, the call log, past latencies and tokens (for plans)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from . import CallRecord, Store

__all__ = ["CallMeta", "call_log", "record_call", "scorer_scores", "usage_history"]


@dataclass
class CallMeta:
    """What a hosted call adds to a CallRecord (migration 2)."""

    transport_attempts: int = 1
    reasks: int = 0
    est_prompt_tokens: int = 0
    cost_usd: float | None = None
    redactions: dict[str, int] = field(default_factory=dict)
    confidence_source: str | None = None


def record_call(store: Store, call: CallRecord, meta: CallMeta) -> None:
    """Store one call and its transport figures in one statement (autocommit: a killed run keeps it).

    The one writer of the calls table: every scorer, profile and cache-hit row goes through here.
    """
    data = asdict(call)
    data["parsed"] = json.dumps(call.parsed) if call.parsed is not None else None
    extra = asdict(meta)
    extra["redactions"] = json.dumps(meta.redactions) if meta.redactions else None
    data.update(extra)
    cols = ", ".join(data)
    store.con.execute(
        f"INSERT INTO calls ({cols}) VALUES ({', '.join('?' * len(data))})", list(data.values())
    )


_LOG_COLS = (
    "created_at, run_id, user_id, stage, backend, model_id, prompt_name, prompt_version, prompt_hash, "
    "prompt_tokens, completion_tokens, est_prompt_tokens, latency_ms, attempts, transport_attempts, reasks, "
    "cost_usd, cache_hit, redactions, confidence_source, error"
)


def call_log(
    store: Store,
    run_id: str | None = None,
    user_id: str | None = None,
    errors_only: bool = False,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Calls, newest first, with model, prompt hash, tokens, latency, attempts, cost, cache hit and error."""
    where, params = ["TRUE"], []
    if run_id:
        where.append("run_id = ?")
        params.append(run_id)
    if user_id:
        where.append("user_id = ?")
        params.append(user_id)
    if errors_only:
        where.append("error IS NOT NULL")
    rows = store.query(
        f"SELECT {_LOG_COLS} FROM calls WHERE {' AND '.join(where)} ORDER BY created_at DESC, call_id "
        f"LIMIT {int(limit)}",
        params,
    )
    for row in rows:
        row["redactions"] = json.loads(row["redactions"]) if row["redactions"] else {}
    return rows


def usage_history(store: Store, stage: str, model_id: str, recent: int = 200) -> dict[str, float] | None:
    """Median latency and tokens of the `recent` newest paid, successful calls of a stage and model (for `plan`).

    Only recent calls: the machine, the build and the load change, and a median over every call ever made would
    keep predicting what the store saw months ago.
    """
    row = store.query(
        "SELECT count(*) AS n, median(latency_ms) AS latency_ms, median(prompt_tokens) AS prompt_tokens, "
        "median(completion_tokens) AS completion_tokens FROM (SELECT * FROM calls "
        "WHERE stage = ? AND model_id = ? AND NOT cache_hit AND error IS NULL ORDER BY created_at DESC LIMIT ?)",
        [stage, model_id, recent],
    )[0]
    if not row["n"]:
        return None
    return {k: float(v or 0) for k, v in row.items()}


def scorer_scores(
    store: Store, taxonomy_hash: str, user_ids: Sequence[str]
) -> dict[tuple[str, str, str], dict[str, list[float]]]:
    """Every stored, successful score of these users for this taxonomy, grouped by (stage, model, prompt name):
    group -> user -> scores (the newest call of each user)."""
    rows = store.con.execute(
        "SELECT stage, model_id, coalesce(prompt_name, ''), user_id, parsed FROM calls "
        "WHERE taxonomy_hash = ? AND error IS NULL AND user_id IN (SELECT unnest(?)) AND stage <> 'profile' "
        "ORDER BY created_at",
        [taxonomy_hash, list(user_ids)],
    ).fetchall()
    out: dict[tuple[str, str, str], dict[str, list[float]]] = {}
    for stage, model, prompt, uid, parsed in rows:
        scores = json.loads(parsed or "{}").get("scores")
        if scores:
            out.setdefault((stage, model, prompt), {})[uid] = [float(x) for x in scores]
    return out
