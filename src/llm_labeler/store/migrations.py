"""The store's schema, as an ordered list of migrations (append; never edit a shipped one), and applying them."""

from __future__ import annotations

from typing import Any

import duckdb

from ..errors import StoreError

__all__ = ["MIGRATIONS", "migrate", "store_versions"]

_V1 = """
CREATE TABLE events (
    row_hash VARCHAR NOT NULL,          -- md5 of every field: re-ingesting a file adds no duplicates
    user_id VARCHAR NOT NULL,
    ts TIMESTAMP,
    event_type VARCHAR,
    item_id VARCHAR,
    item_title VARCHAR,
    item_category VARCHAR,
    text VARCHAR,
    rating DOUBLE,
    source VARCHAR,
    ingested_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE users (
    user_id VARCHAR PRIMARY KEY,
    n_events BIGINT,
    first_ts TIMESTAMP,
    last_ts TIMESTAMP,
    history_hash VARCHAR,               -- changes whenever the user's events change
    updated_at TIMESTAMP
);
CREATE TABLE ingests (
    path VARCHAR, file_sha256 VARCHAR, format VARCHAR, rows_read BIGINT, rows_added BIGINT,
    ingested_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE taxonomies (
    taxonomy_hash VARCHAR PRIMARY KEY, name VARCHAR, body VARCHAR, created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE prompts (
    prompt_hash VARCHAR PRIMARY KEY, name VARCHAR, version VARCHAR, template VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE runs (
    run_id VARCHAR PRIMARY KEY,
    kind VARCHAR,                       -- label | eval | score | fallback (score --llm-fallback's LLM run)
    status VARCHAR,                     -- running | done | stopped | failed
    backend VARCHAR,
    model_id VARCHAR,
    taxonomy_name VARCHAR,
    taxonomy_hash VARCHAR,
    config VARCHAR,                     -- JSON: everything needed to repeat the run
    stats VARCHAR,                      -- JSON: users, calls, cache hits, tokens, timings
    started_at TIMESTAMP DEFAULT current_timestamp,
    finished_at TIMESTAMP
);
CREATE TABLE calls (
    call_id VARCHAR PRIMARY KEY,
    run_id VARCHAR,
    user_id VARCHAR,
    stage VARCHAR,                      -- profile | segment_score | segment_json | embed ...
    cache_key VARCHAR,
    cache_hit BOOLEAN,
    backend VARCHAR,
    model_id VARCHAR,
    prompt_name VARCHAR,
    prompt_version VARCHAR,
    prompt_hash VARCHAR,
    taxonomy_hash VARCHAR,
    request VARCHAR,                    -- the user-specific prompt text
    raw_output VARCHAR,
    parsed VARCHAR,                     -- JSON
    prompt_tokens BIGINT,
    completion_tokens BIGINT,
    latency_ms DOUBLE,
    attempts INTEGER,
    error VARCHAR,                      -- a failed call is stored, and never served from the cache
    created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE INDEX calls_cache_key ON calls (cache_key);
CREATE TABLE profiles (
    run_id VARCHAR, user_id VARCHAR, call_id VARCHAR, profile VARCHAR, evidence_dropped INTEGER,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, user_id)
);
CREATE TABLE labels (
    run_id VARCHAR,
    user_id VARCHAR,
    primary_segment VARCHAR,            -- NULL when abstaining
    segments VARCHAR,                   -- JSON list (multi-label)
    probabilities VARCHAR,              -- JSON object segment -> probability
    confidence DOUBLE,
    abstained BOOLEAN,
    abstain_reason VARCHAR,
    rationale VARCHAR,
    evidence VARCHAR,                   -- JSON list of item ids / snippets
    model_id VARCHAR,
    prompt_name VARCHAR,
    prompt_version VARCHAR,
    prompt_hash VARCHAR,
    taxonomy_name VARCHAR,
    taxonomy_hash VARCHAR,
    scorers VARCHAR,                    -- JSON: which scorers and weights made this label
    call_ids VARCHAR,                   -- JSON list: the calls this label came from
    error VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (run_id, user_id)
);
CREATE TABLE gold (
    user_id VARCHAR, taxonomy_name VARCHAR, segments VARCHAR, source VARCHAR,
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (user_id, taxonomy_name)
);
"""

# Reserved numbers, one per feature area, so parallel work never collides: 2 hosted backends (calls/run extras),
# 3 eval suites, 4 student model and bulk scores, 5 student documents' format, 6 users' languages, 7 fitted
# combinations, 8 discovery's user vectors. An empty string means "nothing yet" and is skipped.
_V2_HOSTED = """
ALTER TABLE calls ADD COLUMN transport_attempts INTEGER;   -- HTTP attempts, retries included
ALTER TABLE calls ADD COLUMN reasks INTEGER;               -- validation re-asks
ALTER TABLE calls ADD COLUMN est_prompt_tokens BIGINT;     -- prompt tokens of attempts that never returned usage
ALTER TABLE calls ADD COLUMN cost_usd DOUBLE;              -- from the price table; NULL when the price is unknown
ALTER TABLE calls ADD COLUMN redactions VARCHAR;           -- JSON: PII replaced before sending, per kind
ALTER TABLE calls ADD COLUMN confidence_source VARCHAR;    -- logprobs | self_reported | self_consistency:K
"""
_V3_EVALS = """
CREATE TABLE eval_runs (
    eval_id VARCHAR PRIMARY KEY,
    suite_name VARCHAR,
    suite_path VARCHAR,
    suite_hash VARCHAR,                 -- sha256 of the suite's canonical JSON
    taxonomy_name VARCHAR,
    taxonomy_hash VARCHAR,
    status VARCHAR,                     -- running | done | failed | stopped
    n_users INTEGER,
    suite VARCHAR,                      -- JSON: the suite as run (after --backend / --limit)
    summary VARCHAR,                    -- JSON: calls, cache hits, primary and baseline metrics, gate
    started_at TIMESTAMP DEFAULT current_timestamp,
    finished_at TIMESTAMP
);
CREATE TABLE eval_cells (
    eval_id VARCHAR,
    cell VARCHAR,                       -- combination|prompt|backend
    position INTEGER,
    run_id VARCHAR,                     -- the labeling run (kind 'eval') behind this cell
    combination VARCHAR,
    prompt VARCHAR,
    backend VARCHAR,
    is_baseline BOOLEAN,
    is_primary BOOLEAN,
    metrics VARCHAR,                    -- JSON: headline, covered, per segment, confusion, calibration, cost
    stats VARCHAR,                      -- JSON: the labeling run's statistics
    PRIMARY KEY (eval_id, cell)
);
CREATE TABLE eval_gold (
    eval_id VARCHAR, user_id VARCHAR, segments VARCHAR,  -- the gold each eval run was scored against
    PRIMARY KEY (eval_id, user_id)
);
"""
_V4_STUDENT = """
CREATE TABLE user_docs (                -- each user's whole history as one text, rebuilt when history_hash changes
    user_id VARCHAR, history_hash VARCHAR, doc VARCHAR, meta VARCHAR, n_events BIGINT,
    built_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE student_models (
    model_version VARCHAR PRIMARY KEY,  -- sha256 of the model file, 16 hex digits
    path VARCHAR, source_run VARCHAR, taxonomy_name VARCHAR, taxonomy_hash VARCHAR,
    segments VARCHAR,                   -- JSON list: the order of scores.probabilities
    metadata VARCHAR,                   -- JSON: everything in the model file's metadata
    report VARCHAR,                     -- JSON: cross-validated agreement and gold figures
    created_at TIMESTAMP DEFAULT current_timestamp
);
CREATE TABLE scores (                   -- one row per (model_version, user_id); rescored when history_hash changes
    user_id VARCHAR, model_version VARCHAR, history_hash VARCHAR, segment VARCHAR, confidence FLOAT,
    margin FLOAT, probabilities FLOAT[], source VARCHAR, score_run VARCHAR,
    scored_at TIMESTAMP DEFAULT current_timestamp
);
"""
_V5_DOC_FORMAT = """
ALTER TABLE user_docs ADD COLUMN doc_format INTEGER;  -- store.student.DOC_FORMAT the doc was built with (NULL: v1)
"""
# Filled in for the users already there by the store as it opens (store.ingest.backfill_languages), and at every
# ingest for the users it touches: detection is Python (llm_labeler.languages), so it cannot run in this SQL.
_V6_LANGUAGE = """
ALTER TABLE users ADD COLUMN language VARCHAR;  -- dominant script's language (languages.py): zh, ja, latin, und ...
"""
_V7_COMBINATIONS = """
CREATE TABLE combinations (             -- named scorer combinations fitted on gold or by a label model
    name VARCHAR PRIMARY KEY,
    method VARCHAR,                     -- logloss (fitted on gold) | label_model (scorer agreement, no gold)
    backend VARCHAR,                    -- the LLM backend id it was fitted for
    taxonomy_name VARCHAR,
    taxonomy_hash VARCHAR,
    config VARCHAR,                     -- JSON: specs, temperature, embedding models, prompt: what label applies
    provenance VARCHAR,                 -- JSON: suite, runs, model ids, users fitted on, fit statistics
    created_at TIMESTAMP DEFAULT current_timestamp
);
"""

# discover: each user's mean event embedding, per embedding model and text parameters; recomputed when the
# user's history_hash changes (store.discovery).
_V8_USER_VECTORS = """
CREATE TABLE user_vectors (
    user_id VARCHAR, model_id VARCHAR, params VARCHAR, history_hash VARCHAR, n_texts INTEGER, vector FLOAT[],
    created_at TIMESTAMP DEFAULT current_timestamp,
    PRIMARY KEY (user_id, model_id, params)
);
"""

MIGRATIONS: list[tuple[int, str]] = [
    (v, sql)
    for v, sql in [
        (1, _V1),
        (2, _V2_HOSTED),
        (3, _V3_EVALS),
        (4, _V4_STUDENT),
        (5, _V5_DOC_FORMAT),
        (6, _V6_LANGUAGE),
        (7, _V7_COMBINATIONS),
        (8, _V8_USER_VECTORS),
    ]
    if sql.strip()
]
_SHOWN_TABLES = 8


def store_versions(con: Any, path: str) -> set[int] | None:
    """The migrations applied to an llm-labeler store, None for an empty database; reading it writes nothing.

    A database with tables but no schema_migrations was not made by llm-labeler (another application's file):
    an error, so that nothing is ever written into it. So is a store written by a newer llm-labeler.
    """
    tables = [
        t if s == "main" else f"{s}.{t}"
        for s, t in con.execute(
            "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "UNION SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = current_database() "
            "AND NOT internal ORDER BY 1, 2"
        ).fetchall()
    ]
    if "schema_migrations" not in tables:
        if not tables:
            return None
        shown = ", ".join(tables[:_SHOWN_TABLES]) + (" ..." if len(tables) > _SHOWN_TABLES else "")
        raise StoreError(
            f"{path} is not an llm-labeler store: another application's DuckDB file (its tables: {shown}); "
            "nothing was written to it: pass --db with a store's path, or a new file name to start one"
        )
    applied = {int(r[0]) for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
    newer = applied - {v for v, _ in MIGRATIONS}
    if newer:
        raise StoreError(
            f"{path} has schema version(s) {sorted(newer)} unknown to this llm-labeler: "
            "it was written by a newer version"
        )
    return applied


def migrate(con: Any, path: str) -> None:
    """Bring a store (or an empty database) to the newest schema, each migration in a transaction of its own."""
    applied = store_versions(con, path)
    if applied is None:
        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
        applied = set()
    for version, sql in MIGRATIONS:
        if version in applied:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(sql)
            con.execute("INSERT INTO schema_migrations VALUES (?)", [version])
        except duckdb.Error as exc:
            con.execute("ROLLBACK")
            raise StoreError(f"cannot migrate {path} to schema version {version}: {exc}") from exc
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
