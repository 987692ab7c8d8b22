"""SQL for the student: per-user history documents, registered models, bulk scores, label exports.

Histories are aggregated once into `user_docs` (rebuilt only for users whose history_hash changed), so bulk
scoring is a plain streaming scan; `scores` keeps one row per (model_version, user_id) with the history_hash it
saw, so a rerun rescores only users whose history changed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb

from ..documents import CLEAN_STEPS, DOC_FORMAT, EVENT_SEPARATOR, META_SEPARATOR
from ..errors import StoreError
from . import Store

__all__ = [
    "DOC_FORMAT",
    "SCORE_COLUMNS",
    "apply_llm_labels",
    "count_users",
    "dataset_gold",
    "doc_select",
    "docs_for",
    "docs_reader",
    "export_labels",
    "get_model",
    "labeling_run",
    "latest_model",
    "memory_capped",
    "prepare_scores",
    "refresh_docs",
    "register_model",
    "review_gold",
    "scores_to_parquet",
    "segments_of",
    "uncertain_users",
    "user_filter",
    "write_cursor",
    "write_scores",
]

SCORE_COLUMNS = (
    "user_id",
    "model_version",
    "history_hash",
    "segment",
    "confidence",
    "margin",
    "probabilities",
    "source",
    "score_run",
)


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _cleaned(column: str) -> str:
    """documents.CLEAN_STEPS as DuckDB SQL (RE2 regexes, every match replaced)."""
    sql = column
    for step in CLEAN_STEPS:
        if step.kind == "regex":
            sql = f"regexp_replace({sql}, {_literal(step.pattern)}, {_literal(step.repl)}, 'g')"
        else:
            sql = f"replace({sql}, {_literal(step.pattern)}, {_literal(step.repl)})"
    return f"nullif(trim({sql}), '')"


# Whole history, oldest first; meta carries event types and categories as tokens for the count features.
_DOC_SQL = f"""
SELECT e.user_id, {{history_hash}} AS history_hash,
       string_agg(concat_ws(' ', {_cleaned("e.item_title")}, {_cleaned("e.text")}), {_literal(EVENT_SEPARATOR)}
                  ORDER BY e.ts NULLS LAST, e.row_hash) AS doc,
       string_agg(concat_ws(' ', 'type:' || e.event_type, 'cat:' || replace(e.item_category, ' ', '_')),
                  {_literal(META_SEPARATOR)} ORDER BY e.ts NULLS LAST, e.row_hash) AS meta,
       count(*) AS n_events
FROM {{source}} e {{join}}
WHERE {{where}}
GROUP BY e.user_id
"""  # {source}, {join}, {where}: pasted by doc_select (str.format would trip on the regex's {0,200})
_STALE_RANGE = "e.user_id >= ? AND e.user_id <= ? AND e.user_id IN (SELECT user_id FROM _stale WHERE k = ?)"


def doc_select(source: str, history_hash: str, where: str = "TRUE", join: str = "") -> str:
    """The per-user document query (documents.py) over any relation with the events table's columns."""
    parts = {"{source}": source, "{history_hash}": history_hash, "{join}": join, "{where}": where}
    sql = _DOC_SQL
    for key, value in parts.items():
        sql = sql.replace(key, value)
    return sql


def _docs_sql(where: str) -> str:
    return doc_select("events", "any_value(u.history_hash)", where, "JOIN users u USING (user_id)")


def user_filter(store: Store, sql_filter: str | None) -> str:
    """A `user_id IN (...)` clause for a --users SQL filter over the users table ('TRUE' if none).

    The filter is checked to be one condition (store.conditions): it is pasted into DELETEs and UPDATEs.
    """
    if not sql_filter or not sql_filter.strip():
        return "TRUE"
    return f"user_id IN (SELECT user_id FROM users WHERE {store.condition(sql_filter, '--users')})"


def count_users(store: Store, where: str) -> int:
    """Users matching a clause from user_filter."""
    row = store.con.execute(f"SELECT count(*) FROM users WHERE {where}").fetchone()
    return int(row[0]) if row else 0


def refresh_docs(store: Store, chunk_users: int = 200_000) -> int:
    """Rebuild user_docs for users whose history (or DOC_FORMAT) changed, in user-id ranges so memory stays
    bounded. A read-only store is left alone: docs_for builds its documents from the events."""
    if store.read_only:
        return 0
    con = store.con
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _stale AS SELECT user_id, (row_number() OVER (ORDER BY user_id) - 1) // ? "
        "AS k FROM users u WHERE NOT EXISTS (SELECT 1 FROM user_docs d WHERE d.user_id = u.user_id "
        "AND d.history_hash = u.history_hash AND d.doc_format = ?)",
        [chunk_users, DOC_FORMAT],
    )
    ranges = con.execute("SELECT k, min(user_id), max(user_id) FROM _stale GROUP BY k ORDER BY k").fetchall()
    for k, lo, hi in ranges:
        with store.transaction():
            con.execute(
                "DELETE FROM user_docs WHERE user_id IN (SELECT user_id FROM _stale WHERE k = ?)", [k]
            )
            con.execute(
                "INSERT INTO user_docs (user_id, history_hash, doc, meta, n_events, doc_format) "
                f"SELECT *, {DOC_FORMAT} FROM ({_docs_sql(_STALE_RANGE)})",
                [lo, hi, k],
            )
    row = con.execute("SELECT count(*) FROM _stale").fetchone()
    con.execute("DROP TABLE _stale")
    return int(row[0]) if row else 0


def docs_for(store: Store, user_ids: list[str]) -> dict[str, tuple[str, str]]:
    """(doc, meta) of the given users, from user_docs (call refresh_docs first; a read-only store, which cannot
    refresh them, builds them from the events)."""
    if store.read_only:
        sql = _docs_sql("e.user_id IN (SELECT unnest(?))")
        built = store.con.execute(sql, [user_ids]).fetchall()
        return {r[0]: (r[2] or "", r[3] or "") for r in built}
    rows = store.con.execute(
        "SELECT user_id, doc, meta FROM user_docs WHERE user_id IN (SELECT unnest(?))", [user_ids]
    ).fetchall()
    return {r[0]: (r[1] or "", r[2] or "") for r in rows}


def prepare_scores(store: Store, model_version: str, where: str, full: bool) -> int:
    """Drop this model's rows that must be redone (all in the filter if full, else stale ones); returns #to score."""
    stale = (
        ""
        if full
        else "AND s.history_hash IS DISTINCT FROM (SELECT history_hash FROM users u WHERE u.user_id = s.user_id)"
    )
    store.con.execute(
        f"DELETE FROM scores s WHERE model_version = ? AND {where} {stale}",
        [model_version],
    )
    row = store.con.execute(
        f"SELECT count(*) FROM user_docs d WHERE {where} AND NOT EXISTS "
        "(SELECT 1 FROM scores s WHERE s.model_version = ? AND s.user_id = d.user_id)",
        [model_version],
    ).fetchone()
    return int(row[0]) if row else 0


def docs_reader(store: Store, model_version: str, where: str, batch_size: int) -> Any:
    """Stream (user_id, history_hash, doc, meta) of users with no current score, on a separate cursor."""
    cur = store.con.cursor()
    sql = (
        f"SELECT d.user_id, d.history_hash, d.doc, d.meta FROM user_docs d WHERE {where} AND NOT EXISTS "
        "(SELECT 1 FROM scores s WHERE s.model_version = ? AND s.user_id = d.user_id)"
    )
    return cur, cur.sql(sql, params=[model_version]).to_arrow_reader(batch_size)


def write_cursor(store: Store) -> Any:
    """A cursor of its own for score writes while another cursor streams the documents."""
    return store.con.cursor()


def write_scores(con: Any, table: Any) -> None:
    """Append one Arrow table of scores (columns in SCORE_COLUMNS order)."""
    con.register("_scores_in", table)
    try:
        con.execute(f"INSERT INTO scores ({', '.join(SCORE_COLUMNS)}) SELECT * FROM _scores_in")
    finally:
        con.unregister("_scores_in")


def scores_to_parquet(
    store: Store, model_version: str, segments: list[str], where: str, out: str | Path
) -> int:
    """Write this model's scores for the filtered users to Parquet, one probability column per segment."""
    probs = ", ".join(f'probabilities[{i + 1}] AS "p_{s}"' for i, s in enumerate(segments))
    sql = (
        f"SELECT user_id, segment, confidence, margin, {probs}, source, model_version, history_hash, scored_at "
        f"FROM scores WHERE model_version = '{model_version}' AND {where} ORDER BY user_id"
    )
    store.copy_to_parquet(sql, out)
    row = store.con.execute(f"SELECT count(*) FROM ({sql})").fetchone()
    return int(row[0]) if row else 0


def register_model(
    store: Store, version: str, path: str, meta: dict[str, Any], report: dict[str, Any]
) -> None:
    """Remember a distilled model (and its report) in the store."""
    store.con.execute(
        "INSERT OR REPLACE INTO student_models (model_version, path, source_run, taxonomy_name, taxonomy_hash, "
        "segments, metadata, report) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            version,
            str(Path(path).resolve()),
            meta.get("source_run"),
            meta.get("taxonomy_name"),
            meta.get("taxonomy_hash"),
            json.dumps(meta.get("segments")),
            json.dumps(meta, default=str),
            json.dumps(report, default=str),
        ],
    )


def get_model(store: Store, version: str) -> dict[str, Any] | None:
    """One registered model row (JSON decoded)."""
    rows = store.query("SELECT * FROM student_models WHERE model_version = ?", [version])
    if not rows:
        return None
    r = rows[0]
    return {**r, **{k: json.loads(r[k]) for k in ("segments", "metadata", "report") if r[k]}}


def latest_model(store: Store) -> dict[str, Any]:
    """The newest registered model; an error when there is none."""
    row = store.con.execute(
        "SELECT model_version FROM student_models ORDER BY created_at DESC LIMIT 1"
    ).fetchone()
    if not row:
        raise StoreError(f"no distilled model in {store.path}; run distill first or pass --model")
    model = get_model(store, str(row[0]))
    assert model is not None
    return model


def export_labels(store: Store, run_id: str, min_confidence: float, out: Path, fmt: str) -> int:
    """A run's usable labels (human review overrides applied) to parquet, csv or jsonl; returns the row count."""
    sql = f"""
        SELECT l.user_id,
               coalesce(json_extract_string(g.segments, '$[0]'), l.primary_segment) AS segment,
               CASE WHEN g.user_id IS NULL THEN CAST(l.segments AS JSON)::VARCHAR[]
                    ELSE CAST(g.segments AS JSON)::VARCHAR[] END AS segments,
               CASE WHEN g.user_id IS NULL THEN l.confidence ELSE 1.0 END AS confidence,
               CASE WHEN g.user_id IS NULL THEN 'llm' ELSE g.source END AS label_source,
               l.model_id AS source_model, l.prompt_name, l.prompt_version, l.prompt_hash, l.taxonomy_name,
               l.taxonomy_hash, l.run_id
        FROM labels l
        LEFT JOIN gold g ON g.user_id = l.user_id AND g.taxonomy_name = l.taxonomy_name
                        AND g.source LIKE 'review:%'
        WHERE l.run_id = '{run_id.replace("'", "''")}' AND l.error IS NULL
          AND ((NOT l.abstained AND l.primary_segment IS NOT NULL AND l.confidence >= {float(min_confidence)})
               OR g.user_id IS NOT NULL)
        ORDER BY l.user_id
    """
    if fmt == "csv":
        sql = f"SELECT * EXCLUDE (segments), array_to_string(segments, '|') AS segments FROM ({sql})"
    options = {"parquet": "FORMAT parquet", "csv": "FORMAT csv, HEADER true", "jsonl": "FORMAT json"}[fmt]
    store.con.execute(f"COPY ({sql}) TO '{str(out).replace(chr(39), chr(39) * 2)}' ({options})")
    row = store.con.execute(f"SELECT count(*) FROM ({sql})").fetchone()
    return int(row[0]) if row else 0


def segments_of(store: Store, model_version: str, where: str, user_ids: list[str]) -> dict[str, str]:
    """user -> stored segment for one model (student or LLM fallback), among the filtered users."""
    rows = store.con.execute(
        f"SELECT user_id, segment FROM scores WHERE model_version = ? AND {where} "
        "AND user_id IN (SELECT unnest(?))",
        [model_version, user_ids],
    ).fetchall()
    return {r[0]: r[1] for r in rows}


def uncertain_users(store: Store, model_version: str, where: str, margin: float) -> list[str]:
    """Filtered users the student scored with a top-two margin below `margin` (LLM answers excluded)."""
    rows = store.con.execute(
        f"SELECT user_id FROM scores WHERE model_version = ? AND {where} AND source = 'student' "
        "AND margin < ? ORDER BY margin, user_id",
        [model_version, margin],
    ).fetchall()
    return [r[0] for r in rows]


def apply_llm_labels(store: Store, model_version: str, run_id: str, segments: list[str]) -> int:
    """Replace the student's answer with a fallback run's non-abstaining labels; returns rows replaced."""
    probs = ", ".join(
        f"coalesce(CAST(json_extract(l.probabilities, '$.\"{s}\"') AS FLOAT), 0)" for s in segments
    )
    with store.transaction():
        rows = store.con.execute(
            f"""
            UPDATE scores s SET segment = l.primary_segment, confidence = l.confidence,
                   probabilities = [{probs}], margin = NULL, source = 'llm:' || l.run_id
            FROM labels l
            WHERE l.run_id = ? AND l.user_id = s.user_id AND s.model_version = ? AND NOT l.abstained
              AND l.error IS NULL AND l.primary_segment IS NOT NULL
            RETURNING s.user_id
            """,
            [run_id, model_version],
        ).fetchall()
    return len(rows)


def review_gold(store: Store, taxonomy_name: str) -> dict[str, str]:
    """Human corrections (gold imported by `review import`): user -> segment."""
    rows = store.con.execute(
        "SELECT user_id, segments FROM gold WHERE taxonomy_name = ? AND source LIKE 'review:%'",
        [taxonomy_name],
    ).fetchall()
    return {r[0]: json.loads(r[1])[0] for r in rows if json.loads(r[1])}


def dataset_gold(store: Store, taxonomy_name: str) -> dict[str, str]:
    """Gold that did not come from reviewing this tool's labels (a data set's own labels): user -> segment."""
    rows = store.con.execute(
        "SELECT user_id, segments FROM gold WHERE taxonomy_name = ? AND source NOT LIKE 'review:%'",
        [taxonomy_name],
    ).fetchall()
    return {r[0]: json.loads(r[1])[0] for r in rows if json.loads(r[1])}


@contextmanager
def memory_capped(store: Store, limit: str) -> Iterator[None]:
    """Cap DuckDB's buffer pool while streaming (pages of user_docs would otherwise stay cached), then restore."""
    row = store.con.execute("SELECT current_setting('memory_limit')").fetchone()
    store.con.execute(f"SET memory_limit = '{limit}'")
    try:
        yield
    finally:
        store.con.execute(f"SET memory_limit = '{row[0] if row else '80%'}'")


def labeling_run(store: Store, ref: str) -> str:
    """A label run id as given, or the labeling run behind an eval run's primary cell."""
    if store.query("SELECT 1 FROM runs WHERE run_id = ?", [ref]):
        return ref
    try:
        rows = store.query(
            "SELECT run_id FROM eval_cells WHERE eval_id = ? ORDER BY is_primary DESC, position LIMIT 1",
            [ref],
        )
    except duckdb.Error:  # a store from before eval suites
        rows = []
    if not rows:
        raise StoreError(f"no run {ref!r} in {store.path} (neither a label run nor an eval run)")
    return str(rows[0]["run_id"])
