"""Loading event files through DuckDB's own readers, validated in SQL, one transaction per file."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

from ..errors import IngestError
from ..schemas import EVENT_FIELDS

__all__ = ["IngestResult", "ingest_file"]

_FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# Timestamps: ISO strings, or epoch seconds (10 digits) / milliseconds (13 digits).
_TS = (
    "CASE WHEN regexp_full_match(trim(ts), '\\d{13}') THEN to_timestamp(CAST(ts AS BIGINT) / 1000)::TIMESTAMP "
    "WHEN regexp_full_match(trim(ts), '\\d{9,10}') THEN to_timestamp(CAST(ts AS BIGINT))::TIMESTAMP "
    "ELSE TRY_CAST(ts AS TIMESTAMP) END"
)


@dataclass
class IngestResult:
    """What one file added."""

    path: str
    format: str
    rows_read: int
    rows_added: int
    users_touched: int

    @property
    def duplicates(self) -> int:
        """Rows already in the store (or repeated within the file)."""
        return self.rows_read - self.rows_added


def ingest_file(
    con: duckdb.DuckDBPyConnection, path: Path, fmt: str | None, mapping: dict[str, str]
) -> IngestResult:
    """Read, validate and insert one file; on any error nothing of it stays in the store."""
    if not path.is_file():
        raise IngestError(str(path), "file not found")
    fmt = fmt or _FORMATS.get(path.suffix.lower())
    if fmt not in {"csv", "jsonl", "parquet"}:
        raise IngestError(str(path), f"unknown format {path.suffix!r}; pass --format csv|jsonl|parquet")
    con.execute("BEGIN TRANSACTION")
    try:
        result = _ingest(con, path, fmt, mapping)
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
    return result


def _ingest(con: duckdb.DuckDBPyConnection, path: Path, fmt: str, mapping: dict[str, str]) -> IngestResult:
    _stage_raw(con, path, fmt)
    columns = [r[0] for r in con.execute("SELECT column_name FROM (DESCRIBE _raw)").fetchall()]
    rename = _column_map(path, columns, mapping)
    selects = [f'CAST("{src}" AS VARCHAR) AS {dst}' for dst, src in rename.items()]
    selects += [f"NULL::VARCHAR AS {f}" for f in EVENT_FIELDS if f not in rename]
    con.execute(f"CREATE OR REPLACE TEMP TABLE _staged AS SELECT _row, {', '.join(selects)} FROM _raw")
    _validate(con, path, fmt)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _clean AS
        SELECT md5(concat_ws('\x1f', user_id, coalesce(ts_parsed::VARCHAR, '~'), coalesce(event_type, '~'),
                   coalesce(item_id, '~'), coalesce(item_title, '~'), coalesce(item_category, '~'),
                   coalesce(text, '~'), coalesce(rating_parsed::VARCHAR, '~'))) AS row_hash, *
        FROM (SELECT _row, trim(user_id) AS user_id, {_TS} AS ts_parsed, nullif(trim(lower(event_type)), '')
                     AS event_type, nullif(trim(item_id), '') AS item_id, nullif(item_title, '') AS item_title,
                     nullif(item_category, '') AS item_category, nullif(text, '') AS text,
                     TRY_CAST(rating AS DOUBLE) AS rating_parsed FROM _staged)
    """)
    before = _count(con, "events")
    con.execute(
        """
        INSERT INTO events (row_hash, user_id, ts, event_type, item_id, item_title, item_category, text, rating,
                            source)
        SELECT row_hash, user_id, ts_parsed, event_type, item_id, item_title, item_category, text, rating_parsed, ?
        FROM _clean c
        WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.row_hash = c.row_hash)
        QUALIFY row_number() OVER (PARTITION BY row_hash ORDER BY _row) = 1
    """,
        [str(path)],
    )
    added = _count(con, "events") - before
    touched = _refresh_users(con)
    rows_read = _count(con, "_staged")
    con.execute(
        "INSERT INTO ingests (path, file_sha256, format, rows_read, rows_added) VALUES (?, ?, ?, ?, ?)",
        [str(path), _sha256(path), fmt, rows_read, added],
    )
    for table in ("_raw", "_staged", "_clean"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return IngestResult(str(path), fmt, rows_read, added, touched)


def _stage_raw(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> None:
    if fmt == "csv":
        reader = _csv_reader(con, path)
    elif fmt == "jsonl":
        reader = "read_json(?, format = 'newline_delimited', records = true, maximum_object_size = 67108864)"
    else:
        reader = "read_parquet(?)"
    what = {"csv": "CSV", "jsonl": "JSON lines", "parquet": "Parquet"}[fmt]
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _raw AS SELECT row_number() OVER () AS _row, * FROM {reader}",
            [str(path)],
        )
    except duckdb.Error as exc:
        raise IngestError(str(path), f"cannot be read as {what}: {_first_line(exc)}") from exc


def _csv_reader(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    """A strict read_csv over the header's own columns, so a row with extra or missing fields is an error.

    DuckDB's sniffer alone would rather guess a different header than report a ragged row.
    """
    with path.open(encoding="utf-8", errors="replace", newline="") as fh:
        first = fh.readline()
    # The header line decides the delimiter: the sniffer guesses wrong on exactly the ragged files we must report.
    delim = max([",", "\t", ";", "|"], key=first.count) if first else ","
    quote = '"'
    header = next(csv.reader([first], delimiter=delim, quotechar=quote), [])
    if not header or len(set(header)) != len(header):
        raise IngestError(str(path), f"CSV header is empty or repeats a column name: {header}", row=None)
    cols = "{" + ", ".join(f"'{_q(h)}': 'VARCHAR'" for h in header) + "}"
    return (
        f"read_csv(?, header = true, auto_detect = false, strict_mode = true, delim = '{_q(delim)}', "
        f"quote = '{_q(quote)}', escape = '{_q(quote)}', columns = {cols})"
    )


def _q(value: str) -> str:
    return value.replace("'", "''")


def _column_map(path: Path, columns: list[str], mapping: dict[str, str]) -> dict[str, str]:
    """field -> source column, after --map source=field renames."""
    unknown_fields = sorted(set(mapping.values()) - set(EVENT_FIELDS))
    if unknown_fields:
        raise IngestError(
            str(path), f"--map targets unknown field(s) {unknown_fields}; fields: {list(EVENT_FIELDS)}"
        )
    missing_src = sorted(set(mapping) - set(columns))
    if missing_src:
        raise IngestError(
            str(path), f"--map names column(s) not in the file: {missing_src}; columns: {columns}"
        )
    rename = {dst: src for src, dst in mapping.items()}
    for name in columns:
        if name in EVENT_FIELDS and name not in rename and name not in mapping:
            rename[name] = name
    if "user_id" not in rename:
        raise IngestError(
            str(path), f"missing required column 'user_id' (columns: {columns}); use --map COL=user_id"
        )
    if "item_title" not in rename and "text" not in rename:
        raise IngestError(str(path), f"needs an 'item_title' or a 'text' column (columns: {columns})")
    return rename


def _validate(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> None:
    checks = [
        ("user_id IS NULL OR trim(user_id) = ''", "empty user_id", "user_id"),
        (
            "coalesce(trim(item_title), '') = '' AND coalesce(trim(text), '') = ''",
            "neither item_title nor text is given",
            "item_title",
        ),
        (f"ts IS NOT NULL AND trim(ts) <> '' AND ({_TS}) IS NULL", "unparsable timestamp", "ts"),
        (
            "rating IS NOT NULL AND trim(rating) <> '' AND TRY_CAST(rating AS DOUBLE) IS NULL",
            "rating is not a number",
            "rating",
        ),
    ]
    for condition, problem, column in checks:
        row = con.execute(
            f"SELECT _row, {column}, count(*) OVER () FROM _staged WHERE {condition} ORDER BY _row LIMIT 1"
        ).fetchone()
        if row:
            value = f" {row[1]!r}" if row[1] not in (None, "") else ""
            more = f" ({row[2]} bad rows in all)" if row[2] > 1 else ""
            raise IngestError(str(path), f"{problem}{value}{more}", row=_human_row(int(row[0]), fmt))


def _human_row(row: int, fmt: str) -> int:
    """Data rows count from 1; for CSV the header is line 1, so row N sits on line N + 1."""
    return row + 1 if fmt == "csv" else row


def _refresh_users(con: duckdb.DuckDBPyConnection) -> int:
    con.execute("""
        INSERT OR REPLACE INTO users (user_id, n_events, first_ts, last_ts, history_hash, updated_at)
        SELECT user_id, count(*), min(ts), max(ts), md5(string_agg(row_hash, ',' ORDER BY row_hash)),
               current_timestamp
        FROM events WHERE user_id IN (SELECT DISTINCT user_id FROM _clean) GROUP BY user_id
    """)
    return _count(con, "(SELECT DISTINCT user_id FROM _clean)")


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _first_line(exc: Exception) -> str:
    text: Any = str(exc).strip()
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith(("LINE ", "^"))]
    return " ".join(lines[:3])[:500]
