"""The DuckDB store: the only package that imports duckdb."""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb

from ..errors import StoreError, UnknownUserError
from ..schemas import Event, Taxonomy
from .conditions import sql_condition
from .files import open_read_only, open_read_write
from .ingest import IngestResult, ingest_file
from .languages import UNDETECTED, backfill_languages, language_mix, user_languages
from .migrations import migrate, store_versions

__all__ = ["UNDETECTED", "CallRecord", "IngestResult", "LabelRecord", "Store", "new_id"]

_EVENT_COLS = "user_id, ts, event_type, item_id, item_title, item_category, text, rating"


def new_id(prefix: str) -> str:
    """A sortable-enough unique id: prefix, UTC timestamp, random suffix."""
    return f"{prefix}_{datetime.now(timezone.utc):%Y%m%d%H%M%S}_{uuid.uuid4().hex[:6]}"


@dataclass
class CallRecord:
    """One LLM (or scorer) call, stored whether it succeeded or not."""

    run_id: str
    user_id: str
    stage: str
    cache_key: str
    backend: str
    model_id: str
    prompt_name: str = ""
    prompt_version: str = ""
    prompt_hash: str = ""
    taxonomy_hash: str = ""
    request: str = ""
    raw_output: str = ""
    parsed: Any = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    attempts: int = 1
    error: str | None = None
    cache_hit: bool = False
    call_id: str = field(default_factory=lambda: uuid.uuid4().hex)


@dataclass
class LabelRecord:
    """One user's label in one run, with its provenance."""

    run_id: str
    user_id: str
    primary_segment: str | None
    segments: list[str]
    probabilities: dict[str, float]
    confidence: float
    abstained: bool
    model_id: str
    prompt_name: str
    prompt_version: str
    prompt_hash: str
    taxonomy_name: str
    taxonomy_hash: str
    abstain_reason: str | None = None
    rationale: str = ""
    evidence: list[str] = field(default_factory=list)
    scorers: dict[str, Any] = field(default_factory=dict)
    call_ids: list[str] = field(default_factory=list)
    error: str | None = None


_JSON_FIELDS = {"parsed", "segments", "probabilities", "evidence", "scorers", "call_ids"}


class Store:
    """A DuckDB file holding users, events, runs, calls, profiles and labels.

    `read_only=True` is for commands that only read: it never migrates and never writes, works on read-only files
    and media, and while another process writes the file (DuckDB lets one process open it for writing, and then
    no other at all) it reads a snapshot: a copy of the file and its WAL in a temporary folder, named by
    `snapshot_of` (the original's path; None when reading the file itself).
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only
        self.snapshot_of: str | None = None
        self._snapshot_dir: tempfile.TemporaryDirectory[str] | None = None
        self._own_runs: set[str] = set()  # runs this process started: running, not interrupted
        if read_only:
            self.con, self._snapshot_dir = open_read_only(self.path)
            self.snapshot_of = self.path if self._snapshot_dir else None
        else:
            self.con = open_read_write(self.path)
        try:
            if not read_only:
                migrate(self.con, self.path)
                backfill_languages(self.con)  # users ingested before schema 6 (one count when there are none)
            elif store_versions(self.con, self.path) is None:  # an empty file reads as an empty store
                self.con.close()
                self.con = duckdb.connect(":memory:")
                migrate(self.con, self.path)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Close the connection (checkpointing the WAL) and drop a snapshot copy."""
        self.con.close()
        if self._snapshot_dir is not None:
            self._snapshot_dir.cleanup()
            self._snapshot_dir = None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- queries ------------------------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All or nothing."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def condition(self, text: str, option: str = "--users", table: str = "users") -> str:
        """A user's SQL filter, checked to be one true/false condition on `table` (see store.conditions)."""
        return sql_condition(self.con, text, option, table)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> list[dict[str, Any]]:
        """Rows as dicts (for read-only reporting queries)."""
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description or []]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def copy_to_parquet(self, sql: str, out: str | Path) -> None:
        """Write a query's result to a Parquet file."""
        self.con.execute(f"COPY ({sql}) TO '{_sql_str(str(out))}' (FORMAT parquet)")

    # -- events and users ---------------------------------------------------------------------------------
    def ingest(
        self,
        path: str | Path,
        fmt: str | None = None,
        mapping: dict[str, str] | None = None,
        *,
        encoding: str = "utf-8",
        strict: bool = False,
    ) -> IngestResult:
        """Load one file of events in one transaction (see store.ingest): `encoding` of CSV/JSONL text,
        `strict` rejects the file when any row has no content (default: such rows are skipped and counted)."""
        return ingest_file(self.con, Path(path), fmt, mapping or {}, encoding=encoding, strict=strict)

    def user_ids(self, users: Sequence[str] | None = None, limit: int | None = None) -> list[str]:
        """The requested users (validated) or the first `limit` users by id."""
        if users:
            found = {
                r[0]
                for r in self.con.execute(
                    "SELECT user_id FROM users WHERE user_id IN (SELECT unnest(?))", [list(users)]
                ).fetchall()
            }
            missing = [u for u in users if u not in found]
            if missing:
                raise UnknownUserError(missing)
            return list(dict.fromkeys(users))
        sql = "SELECT user_id FROM users ORDER BY user_id" + (f" LIMIT {int(limit)}" if limit else "")
        return [r[0] for r in self.con.execute(sql).fetchall()]

    def count_users(self) -> int:
        """Number of users in the store."""
        row = self.con.execute("SELECT count(*) FROM users").fetchone()
        return int(row[0]) if row else 0

    def language_mix(self, user_ids: Sequence[str] | None = None) -> dict[str, int]:
        """Users per language (languages.py: zh, ja, latin, und ...) of all users or of these, most users first."""
        return language_mix(self.con, user_ids)

    def languages(self, user_ids: Sequence[str]) -> dict[str, str]:
        """Each of these users' language (users not in the store are left out)."""
        return user_languages(self.con, user_ids)

    def events_for(self, user_ids: Sequence[str]) -> dict[str, list[Event]]:
        """Each user's events, oldest first."""
        rows = self.con.execute(
            f"SELECT {_EVENT_COLS} FROM events WHERE user_id IN (SELECT unnest(?)) "
            "ORDER BY user_id, ts NULLS LAST, item_id, row_hash",
            [list(user_ids)],
        ).fetchall()
        out: dict[str, list[Event]] = {u: [] for u in user_ids}
        names = _EVENT_COLS.split(", ")
        for row in rows:
            out[row[0]].append(Event(**dict(zip(names, row))))
        return out

    # -- provenance ---------------------------------------------------------------------------------------
    def remember_taxonomy(self, taxonomy_hash: str, name: str, body: dict[str, Any]) -> None:
        """Keep the exact taxonomy every label points at."""
        self.con.execute(
            "INSERT OR IGNORE INTO taxonomies (taxonomy_hash, name, body) VALUES (?, ?, ?)",
            [taxonomy_hash, name, json.dumps(body)],
        )

    def remember_prompt(self, prompt_hash: str, name: str, version: str, template: str) -> None:
        """Keep the exact prompt text every label points at."""
        self.con.execute(
            "INSERT OR IGNORE INTO prompts (prompt_hash, name, version, template) VALUES (?,?,?,?)",
            [prompt_hash, name, version, template],
        )

    def taxonomy(self, taxonomy_hash: str) -> Taxonomy | None:
        """The exact taxonomy a hash points at (every label and run names one), or None."""
        row = self.con.execute(
            "SELECT body FROM taxonomies WHERE taxonomy_hash = ?", [taxonomy_hash.strip()]
        ).fetchone()
        return Taxonomy.model_validate_json(row[0]) if row else None

    def run_taxonomy(self, run_id: str) -> Taxonomy:
        """The exact taxonomy a run labeled with; an unknown run or a missing taxonomy is an error."""
        run = self.get_run(run_id)
        found = self.taxonomy(run["taxonomy_hash"])
        if found is None:
            raise StoreError(
                f"run {run_id} points at taxonomy {run['taxonomy_hash'][:12]}, which the store lacks"
            )
        return found

    # -- runs -----------------------------------------------------------------------------------------------
    def start_run(
        self,
        kind: str,
        backend: str,
        model_id: str,
        taxonomy_name: str,
        taxonomy_hash: str,
        config: dict[str, Any],
        run_id: str | None = None,
    ) -> str:
        """Create a run row (status running) and return its id."""
        run_id = run_id or new_id(kind)
        self._own_runs.add(run_id)
        self.con.execute(
            "INSERT INTO runs (run_id, kind, status, backend, model_id, taxonomy_name, taxonomy_hash, config) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?, ?)",
            [run_id, kind, backend, model_id, taxonomy_name, taxonomy_hash, json.dumps(config, default=str)],
        )
        return run_id

    def finish_run(self, run_id: str, status: str, stats: dict[str, Any]) -> None:
        """Close a run with its status and statistics."""
        self.con.execute(
            "UPDATE runs SET status = ?, stats = ?, finished_at = current_timestamp WHERE run_id = ?",
            [status, json.dumps(stats, default=str), run_id],
        )

    def mark_interrupted_runs(self) -> int:
        """Runs still marked running belong to killed processes (DuckDB lets one process write a file), unless
        this process started them: a `score --llm-fallback` run is still running while its labeling run starts."""
        row = self.con.execute(
            "UPDATE runs SET status = 'interrupted' WHERE status = 'running' "
            "AND run_id NOT IN (SELECT unnest(?::VARCHAR[])) RETURNING run_id",
            [sorted(self._own_runs)],
        ).fetchall()
        return len(row)

    def get_run(self, run_id: str) -> dict[str, Any]:
        """One run, JSON columns decoded; unknown ids are an error."""
        rows = self.query("SELECT * FROM runs WHERE run_id = ?", [run_id])
        if not rows:
            raise StoreError(f"no run {run_id!r} in {self.path}")
        return _decode(rows[0], {"config", "stats"})

    def recent_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs with their status and statistics (JSON decoded)."""
        rows = self.query(
            "SELECT run_id, kind, status, backend, taxonomy_name, stats, started_at FROM runs "
            "ORDER BY started_at DESC LIMIT ?",
            [limit],
        )
        return [_decode(r, {"stats"}) for r in rows]

    def run_users(self, run_id: str) -> set[str]:
        """The users a run labeled."""
        rows = self.con.execute("SELECT user_id FROM labels WHERE run_id = ?", [run_id]).fetchall()
        return {r[0] for r in rows}

    # -- calls (the cache) ----------------------------------------------------------------------------------
    def cached(self, cache_keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The newest successful, paid-for call for each key; failed calls are never served."""
        keys = list(cache_keys)
        if not keys:
            return {}
        rows = self.query(
            "SELECT * FROM calls WHERE cache_key IN (SELECT unnest(?)) AND error IS NULL AND NOT cache_hit "
            "QUALIFY row_number() OVER (PARTITION BY cache_key ORDER BY created_at DESC) = 1",
            [keys],
        )
        return {r["cache_key"]: _decode(r, {"parsed"}) for r in rows}

    def stored_scores(
        self, stage: str, model_id: str, taxonomy_hash: str, prompt_hash: str, limit: int = 2000
    ) -> list[list[float]]:
        """Recent successful score vectors of a scorer (for calibration when a run is too small)."""
        rows = self.con.execute(
            "SELECT parsed FROM calls WHERE stage = ? AND model_id = ? AND taxonomy_hash = ? AND error IS NULL "
            "AND NOT cache_hit AND coalesce(prompt_hash, '') = ? ORDER BY created_at DESC LIMIT ?",
            [stage, model_id, taxonomy_hash, prompt_hash, limit],
        ).fetchall()
        scores = [json.loads(r[0]).get("scores") for r in rows if r[0]]
        return [s for s in scores if s]

    # -- labels and profiles --------------------------------------------------------------------------------
    def write_labels(self, labels: Sequence[LabelRecord]) -> None:
        """Store a run's labels in one transaction (replacing a previous attempt of the same run)."""
        if not labels:
            return
        rows = [_encode(asdict(lab)) for lab in labels]
        cols = list(rows[0])
        sql = f"INSERT OR REPLACE INTO labels ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
        with self.transaction():
            self.con.executemany(sql, [[r[c] for c in cols] for r in rows])

    def write_profile(
        self, run_id: str, user_id: str, call_id: str, profile: dict[str, Any], dropped: int
    ) -> None:
        """Store a user's interest profile for a run."""
        self.con.execute(
            "INSERT OR REPLACE INTO profiles (run_id, user_id, call_id, profile, evidence_dropped) "
            "VALUES (?, ?, ?, ?, ?)",
            [run_id, user_id, call_id, json.dumps(profile), dropped],
        )

    def labels(self, run_id: str) -> list[dict[str, Any]]:
        """A run's labels, JSON decoded."""
        rows = self.query("SELECT * FROM labels WHERE run_id = ? ORDER BY user_id", [run_id])
        return [_decode(r, _JSON_FIELDS) for r in rows]

    def latest_label(self, user_id: str) -> dict[str, Any] | None:
        """The newest label of a user, with its profile from the same run if any."""
        rows = self.query(
            "SELECT l.*, p.profile, p.evidence_dropped FROM labels l LEFT JOIN profiles p USING (run_id, user_id) "
            "WHERE l.user_id = ? ORDER BY l.created_at DESC LIMIT 1",
            [user_id],
        )
        return _decode(rows[0], _JSON_FIELDS | {"profile"}) if rows else None

    def event_snippets(self, user_id: str, item_ids: Sequence[str], chars: int = 200) -> list[dict[str, Any]]:
        """A user's events with these item ids: id, title and the first `chars` characters of the text."""
        if not item_ids:
            return []
        return self.query(
            "SELECT item_id, item_title, left(text, ?) AS text FROM events WHERE user_id = ? "
            "AND item_id IN (SELECT unnest(?))",
            [chars, user_id, list(item_ids)],
        )

    def set_gold(self, taxonomy_name: str, gold: dict[str, list[str]], source: str) -> int:
        """Store gold labels (from a dataset or a human review); later ones override earlier ones."""
        rows = [[u, taxonomy_name, json.dumps(s), source] for u, s in gold.items()]
        with self.transaction():
            self.con.executemany(
                "INSERT OR REPLACE INTO gold (user_id, taxonomy_name, segments, source) VALUES (?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def gold(self, taxonomy_name: str) -> dict[str, list[str]]:
        """Gold segments per user for a taxonomy."""
        rows = self.con.execute(
            "SELECT user_id, segments FROM gold WHERE taxonomy_name = ?", [taxonomy_name]
        ).fetchall()
        return {r[0]: json.loads(r[1]) for r in rows}


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.dumps(v) if k in _JSON_FIELDS else v) for k, v in row.items()}


def _decode(row: dict[str, Any], fields: set[str]) -> dict[str, Any]:
    return {k: (json.loads(v) if k in fields and isinstance(v, str) else v) for k, v in row.items()}


def _sql_str(value: str) -> str:
    return value.replace("'", "''")
