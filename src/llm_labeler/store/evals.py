"""SQL of evaluation runs: eval runs, their matrix cells, the gold they were scored against, call costs."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import StoreError
from . import Store

__all__ = [
    "call_costs",
    "eval_cells",
    "eval_gold",
    "finish_eval",
    "get_eval",
    "resolve_run",
    "start_eval",
    "write_cell",
    "write_eval_gold",
]


def start_eval(
    store: Store,
    eval_id: str,
    suite_name: str,
    suite_path: str,
    suite_hash: str,
    taxonomy: tuple[str, str],
    n_users: int,
    suite: Mapping[str, Any],
) -> None:
    """Create an eval run row (status running)."""
    store.con.execute(
        "INSERT INTO eval_runs (eval_id, suite_name, suite_path, suite_hash, taxonomy_name, taxonomy_hash, "
        "status, n_users, suite) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?)",
        [eval_id, suite_name, suite_path, suite_hash, *taxonomy, n_users, json.dumps(suite, default=str)],
    )


def finish_eval(store: Store, eval_id: str, status: str, summary: Mapping[str, Any]) -> None:
    """Close an eval run with its status and summary."""
    store.con.execute(
        "UPDATE eval_runs SET status = ?, summary = ?, finished_at = current_timestamp WHERE eval_id = ?",
        [status, json.dumps(summary, default=str), eval_id],
    )


def write_eval_gold(store: Store, eval_id: str, gold: Mapping[str, Sequence[str]]) -> None:
    """Snapshot the gold an eval run is scored against (later gold edits do not rewrite history)."""
    rows = [[eval_id, u, json.dumps(list(s))] for u, s in gold.items()]
    with store.transaction():
        store.con.executemany("INSERT OR REPLACE INTO eval_gold VALUES (?, ?, ?)", rows)


def eval_gold(store: Store, eval_id: str) -> dict[str, list[str]]:
    """The gold snapshot of an eval run."""
    rows = store.con.execute(
        "SELECT user_id, segments FROM eval_gold WHERE eval_id = ? ORDER BY user_id", [eval_id]
    ).fetchall()
    return {r[0]: json.loads(r[1]) for r in rows}


def write_cell(store: Store, eval_id: str, position: int, cell: Mapping[str, Any]) -> None:
    """Store one matrix cell with its metrics."""
    store.con.execute(
        "INSERT OR REPLACE INTO eval_cells (eval_id, cell, position, run_id, combination, prompt, backend, "
        "is_baseline, is_primary, metrics, stats) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [
            eval_id,
            cell["cell"],
            position,
            cell["run_id"],
            cell["combination"],
            cell["prompt"],
            cell["backend"],
            cell["is_baseline"],
            cell["is_primary"],
            json.dumps(cell["metrics"], default=str),
            json.dumps(cell["stats"], default=str),
        ],
    )


def get_eval(store: Store, eval_id: str) -> dict[str, Any]:
    """One eval run, JSON decoded; an unknown id is an error naming the store."""
    rows = store.query("SELECT * FROM eval_runs WHERE eval_id = ?", [eval_id])
    if not rows:
        raise StoreError(f"no eval run {eval_id!r} in {store.path}")
    row = rows[0]
    for key in ("suite", "summary"):
        row[key] = json.loads(row[key]) if row[key] else {}
    return row


def eval_cells(store: Store, eval_id: str) -> list[dict[str, Any]]:
    """The cells of an eval run in matrix order, JSON decoded."""
    rows = store.query("SELECT * FROM eval_cells WHERE eval_id = ? ORDER BY position", [eval_id])
    for row in rows:
        row["metrics"] = json.loads(row["metrics"]) if row["metrics"] else {}
        row["stats"] = json.loads(row["stats"]) if row["stats"] else {}
    return rows


def resolve_run(store: Store, ref: str) -> tuple[str | None, str]:
    """(eval_id, label run_id) for an eval id (its primary cell), 'EVAL_ID#CELL', or a label run id."""
    eval_id, _, cell = ref.partition("#")
    found = store.con.execute("SELECT 1 FROM eval_runs WHERE eval_id = ?", [eval_id]).fetchone()
    if found:
        where = "cell = ?" if cell else "is_primary"
        row = store.con.execute(
            f"SELECT run_id FROM eval_cells WHERE eval_id = ? AND {where} ORDER BY position LIMIT 1",
            [eval_id, cell] if cell else [eval_id],
        ).fetchone()
        if row is None:
            names = [c["cell"] for c in eval_cells(store, eval_id)]
            raise StoreError(
                f"eval run {eval_id} has no cell {cell or '(primary)'!r}; cells: {', '.join(names)}"
            )
        return eval_id, str(row[0])
    row = store.con.execute("SELECT run_id FROM runs WHERE run_id = ?", [ref]).fetchone()
    if row is None:
        raise StoreError(f"{ref!r} is neither an eval run nor a labeling run in {store.path}")
    cell_row = store.con.execute("SELECT eval_id FROM eval_cells WHERE run_id = ? LIMIT 1", [ref]).fetchone()
    return (str(cell_row[0]) if cell_row else None), ref


def call_costs(store: Store, run_id: str) -> list[dict[str, Any]]:
    """Per user: latency, tokens and cost of the calls behind a run's labels, cache hits priced at the paid call."""
    cost = "coalesce(o.cost_usd, 0)" if _has_column(store, "calls", "cost_usd") else "0.0"
    return store.query(
        "WITH paid AS (SELECT cache_key, any_value(o.latency_ms) AS latency_ms, "
        "any_value(o.prompt_tokens) AS prompt_tokens, any_value(o.completion_tokens) AS completion_tokens, "
        f"any_value({cost}) AS cost_usd FROM calls o WHERE NOT o.cache_hit AND o.error IS NULL "
        "AND o.cache_key IN (SELECT cache_key FROM calls WHERE run_id = ?) GROUP BY cache_key) "
        "SELECT c.user_id, c.stage, bool_or(c.error IS NOT NULL) AS failed, "
        "sum(coalesce(p.latency_ms, c.latency_ms)) AS latency_ms, "
        "sum(coalesce(p.prompt_tokens, c.prompt_tokens)) AS prompt_tokens, "
        "sum(coalesce(p.completion_tokens, c.completion_tokens)) AS completion_tokens, "
        "sum(coalesce(p.cost_usd, 0)) AS cost_usd, count(*) AS calls "
        "FROM calls c LEFT JOIN paid p USING (cache_key) WHERE c.run_id = ? GROUP BY c.user_id, c.stage",
        [run_id, run_id],
    )


def _has_column(store: Store, table: str, column: str) -> bool:
    row = store.con.execute(
        "SELECT count(*) FROM information_schema.columns WHERE table_name = ? AND column_name = ?",
        [table, column],
    ).fetchone()
    return bool(row and row[0])
