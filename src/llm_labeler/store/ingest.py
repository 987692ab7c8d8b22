"""Loading event files through DuckDB's own readers, validated in SQL, one transaction per file."""

from __future__ import annotations

import codecs
import csv
import hashlib
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import duckdb

from ..errors import IngestError
from ..schemas import EVENT_FIELDS
from .languages import stage_languages

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
_WHAT = {"csv": "CSV", "jsonl": "JSON lines", "parquet": "Parquet"}
# Long reviews and posts are real data: the readers take rows up to 64 MiB; truncation is render's job, not ingest's.
_MAX_ROW_BYTES = 64 << 20
# Python codec name -> the name DuckDB's CSV reader decodes itself; any other encoding is transcoded to UTF-8 first.
_DUCKDB_CSV_ENCODINGS = {"iso8859-1": "latin-1"}
_UTF8 = ("utf-8", "utf-8-sig")
_NOT_UTF8 = "the file is not UTF-8: pass its encoding, e.g. --encoding latin-1 (or cp1252, utf-16)"
_SKIPPED_SHOWN = 5
# A row "carries no content" when item_title and text are both missing or only whitespace (Unicode spaces too).
_CONTENTLESS = (
    "(regexp_full_match(coalesce(item_title, ''), '[\\s\\p{Z}]*') "
    "AND regexp_full_match(coalesce(text, ''), '[\\s\\p{Z}]*'))"
)
# A time of day followed by a zone: Z, +02:00, +0200, -05, UTC, EST, Europe/Berlin.
_ZONED = "\\d:\\d{2}(:\\d{2})?(\\.\\d+)?\\s*[A-Za-z+-]"
# Timestamps: epoch milliseconds (13 digits) / seconds (9-10 digits), zoned ISO strings converted to UTC, or naive
# ISO strings taken as UTC. All stored as naive UTC TIMESTAMP, whatever the session's TimeZone is: TRY_CAST to
# TIMESTAMP silently drops an offset, and to_timestamp(...)::TIMESTAMP would shift by the session's zone.
_TS = (
    "CASE WHEN regexp_full_match(trim(ts), '\\d{13}') THEN epoch_ms(CAST(trim(ts) AS BIGINT)) "
    "WHEN regexp_full_match(trim(ts), '\\d{9,10}') THEN make_timestamp(CAST(trim(ts) AS BIGINT) * 1000000) "
    f"WHEN regexp_matches(ts, '{_ZONED}') THEN timezone('UTC', "
    "TRY_CAST(regexp_replace(trim(ts), '(\\d)\\s+([+-]\\d)', '\\1\\2') AS TIMESTAMPTZ)) "
    "ELSE TRY_CAST(ts AS TIMESTAMP) END"
)
_CSV_ERROR_LINE = re.compile(r"CSV Error on Line: (\d+)")
_DUCKDB_OPTION = re.compile(r"^\s{2}\w+ = ")
_ERROR_CLASS = re.compile(r"^[A-Z][A-Za-z ]* Error: ")


@dataclass
class IngestResult:
    """What one file added, which contentless rows it skipped (human row numbers, first few), and the language mix
    of the users it touched (language -> users, most users first)."""

    path: str
    format: str
    rows_read: int
    rows_added: int
    users_touched: int
    rows_skipped: int = 0
    skipped_rows: list[int] = field(default_factory=list)
    languages: dict[str, int] = field(default_factory=dict)

    @property
    def duplicates(self) -> int:
        """Rows already in the store (or repeated within the file)."""
        return self.rows_read - self.rows_skipped - self.rows_added


class _Source(NamedTuple):
    """The file as DuckDB reads it: the original, or a UTF-8 copy of it."""

    path: Path
    header_encoding: str
    duckdb_encoding: str


def ingest_file(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    fmt: str | None,
    mapping: dict[str, str],
    *,
    encoding: str = "utf-8",
    strict: bool = False,
) -> IngestResult:
    """Read, validate and insert one file; on any error nothing of it stays in the store.

    `encoding` is the text encoding of a CSV or JSON lines file (a UTF-8 BOM is always accepted). Rows with neither
    an item_title nor a text are skipped and counted; `strict=True` rejects the whole file for one such row instead.
    Malformed rows (ragged, bad quoting, unparsable timestamps or ratings, empty user_id) always reject the file.
    """
    if not path.is_file():
        raise IngestError(str(path), "file not found")
    fmt = fmt or _FORMATS.get(path.suffix.lower())
    if fmt not in _WHAT:
        raise IngestError(str(path), f"unknown format {path.suffix!r}; pass --format csv|jsonl|parquet")
    codec = _codec(path, fmt, encoding)
    with _readable(path, fmt, codec) as source:
        con.execute("BEGIN TRANSACTION")
        try:
            result = _ingest(con, path, source, fmt, mapping, strict)
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    return result


def _codec(path: Path, fmt: str, encoding: str) -> str:
    """Python's name for the encoding, checked before anything is read."""
    try:
        info = codecs.lookup(encoding)
        if not getattr(
            info, "_is_text_encoding", True
        ):  # rot13, base64, zlib: codecs, but not text encodings
            raise LookupError(encoding)
        codec = info.name
    except LookupError:
        raise IngestError(
            str(path), f"unknown encoding {encoding!r}; e.g. utf-8, latin-1, cp1252, utf-16"
        ) from None
    if fmt == "parquet" and codec not in _UTF8:
        raise IngestError(
            str(path), "--encoding applies to CSV and JSON lines only; Parquet text is always UTF-8"
        )
    return codec


@contextmanager
def _readable(path: Path, fmt: str, codec: str) -> Iterator[_Source]:
    """The file itself when DuckDB can decode it, else a streamed UTF-8 copy that lives as long as the ingest."""
    if codec in _UTF8 or fmt == "parquet":
        yield _Source(path, "utf-8-sig", "utf-8")
    elif fmt == "csv" and codec in _DUCKDB_CSV_ENCODINGS:
        yield _Source(path, codec, _DUCKDB_CSV_ENCODINGS[codec])
    else:
        with tempfile.TemporaryDirectory(prefix="llm_labeler_ingest_") as tmp:
            copy = Path(tmp) / f"utf8{path.suffix.lower()}"
            _transcode(path, codec, copy)
            yield _Source(copy, "utf-8-sig", "utf-8")


def _transcode(path: Path, codec: str, out: Path) -> None:
    """Decode `path` chunk by chunk into UTF-8 at `out`; a byte the codec cannot decode is an error with its offset."""
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    done = 0
    with path.open("rb") as src, out.open("w", encoding="utf-8", newline="") as dst:
        for chunk in iter(lambda: src.read(1 << 20), b""):
            pending = len(decoder.getstate()[0])
            try:
                dst.write(decoder.decode(chunk))
            except UnicodeDecodeError as exc:
                at = done - pending + exc.start
                raise IngestError(
                    str(path), f"cannot be decoded as {codec}: {exc.reason} at byte {at}"
                ) from exc
            done += len(chunk)
        try:
            dst.write(decoder.decode(b"", final=True))
        except UnicodeDecodeError as exc:
            raise IngestError(str(path), f"cannot be decoded as {codec}: {exc.reason} at the end") from exc


def _ingest(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    source: _Source,
    fmt: str,
    mapping: dict[str, str],
    strict: bool,
) -> IngestResult:
    columns, row_col = _stage_raw(con, path, source, fmt)
    rename = _column_map(path, columns, mapping)
    selects = [f"CAST({_ident(src)} AS VARCHAR) AS {dst}" for dst, src in rename.items()]
    selects += [f"NULL::VARCHAR AS {f}" for f in EVENT_FIELDS if f not in rename]
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _staged AS SELECT {_ident(row_col)} AS _row, {', '.join(selects)} FROM _raw"
    )
    _validate(con, path, fmt, strict)
    skipped, first_skipped = _contentless(con, fmt)
    con.execute(f"""
        CREATE OR REPLACE TEMP TABLE _clean AS
        SELECT md5(concat_ws('\x1f', user_id, coalesce(ts_parsed::VARCHAR, '~'), coalesce(event_type, '~'),
                   coalesce(item_id, '~'), coalesce(item_title, '~'), coalesce(item_category, '~'),
                   coalesce(text, '~'), coalesce(rating_parsed::VARCHAR, '~'))) AS row_hash, *
        FROM (SELECT _row, trim(user_id) AS user_id, {_TS} AS ts_parsed, nullif(trim(lower(event_type)), '')
                     AS event_type, nullif(trim(item_id), '') AS item_id, nullif(item_title, '') AS item_title,
                     nullif(item_category, '') AS item_category, nullif(text, '') AS text,
                     TRY_CAST(rating AS DOUBLE) AS rating_parsed FROM _staged WHERE NOT {_CONTENTLESS})
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
    touched, languages = _refresh_users(con)
    rows_read = _count(con, "_staged")
    con.execute(
        "INSERT INTO ingests (path, file_sha256, format, rows_read, rows_added) VALUES (?, ?, ?, ?, ?)",
        [str(path), _sha256(path), fmt, rows_read, added],
    )
    for table in ("_raw", "_staged", "_clean", "_langs"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return IngestResult(str(path), fmt, rows_read, added, touched, skipped, first_skipped, languages)


def _stage_raw(
    con: duckdb.DuckDBPyConnection, path: Path, source: _Source, fmt: str
) -> tuple[list[str], str]:
    """Load the file into _raw with its row number; returns the file's own columns and the row number's column."""
    if fmt == "csv":
        reader = _csv_reader(path, source)
    elif fmt == "jsonl":
        reader = f"read_json(?, format = 'newline_delimited', records = true, maximum_object_size = {_MAX_ROW_BYTES})"
    else:
        reader = "read_parquet(?)"
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM {reader}", [str(source.path)]).fetchall()
        columns = [str(r[0]) for r in described]
        # The row number's column must not take (or rename) a column of the file's own.
        row_col = "_row"
        while row_col.lower() in {c.lower() for c in columns}:
            row_col += "_"
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _raw AS SELECT row_number() OVER () AS {row_col}, * FROM {reader}",
            [str(source.path)],
        )
    except duckdb.Error as exc:
        raise _read_error(path, source, fmt, exc) from exc
    return columns, row_col


def _read_error(path: Path, source: _Source, fmt: str, exc: Exception) -> IngestError:
    """DuckDB's own reason, with a hint when the file is not UTF-8 (the CSV line becomes the error's row)."""
    line, reason = _duckdb_reason(str(exc))
    reason = reason.replace(f' in file "{source.path}"', "").replace(str(source.path), path.name)
    hint = ""
    if fmt != "parquet" and source.duckdb_encoding == "utf-8" and re.search("utf-8|unicode", reason, re.I):
        hint = f"; {_NOT_UTF8}"
    return IngestError(str(path), f"cannot be read as {_WHAT[fmt]}: {reason}{hint}", row=line)


def _duckdb_reason(text: str) -> tuple[int | None, str]:
    """(CSV line, reason) from a DuckDB error, without the echoed row, DuckDB's option dump or our SQL."""
    lines = text.strip().splitlines()
    end = next(
        (i for i, ln in enumerate(lines) if ln.startswith("Possible ") or _DUCKDB_OPTION.match(ln)), None
    )
    lines = [_ERROR_CLASS.sub("", ln) for ln in lines[:end]]
    found = _CSV_ERROR_LINE.search(lines[0]) if lines else None
    if found:
        # "CSV Error on Line: N", "Original Line: <the row, perhaps megabytes, perhaps several lines>", the reason.
        last = next((ln.strip() for ln in reversed(lines[1:]) if ln.strip()), "")
        reason = "" if last.startswith("Original Line:") else last
        return int(found.group(1)), reason[:500] or "malformed row"
    kept = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith(("LINE ", "^"))]
    return None, " ".join(kept)[:500]


def _csv_reader(path: Path, source: _Source) -> str:
    """A strict read_csv over the header's own columns, so a row with extra or missing fields is an error.

    DuckDB's sniffer alone would rather guess a different header than report a ragged row.
    """
    with source.path.open("rb") as fh:
        raw = fh.readline(_MAX_ROW_BYTES)
    try:
        first = raw.decode(source.header_encoding)
    except UnicodeDecodeError as exc:
        problem = f"cannot be read as CSV: {_NOT_UTF8} (header: {exc.reason} at byte {exc.start})"
        raise IngestError(str(path), problem, row=1) from exc
    # The header line decides the delimiter: the sniffer guesses wrong on exactly the ragged files we must report.
    delim = max([",", "\t", ";", "|"], key=first.count) if first else ","
    quote = '"'
    header = next(csv.reader([first.rstrip("\r\n")], delimiter=delim, quotechar=quote), [])
    if not header or len(set(header)) != len(header):
        raise IngestError(str(path), f"CSV header is empty or repeats a column name: {header}", row=None)
    cols = "{" + ", ".join(f"'{_q(h)}': 'VARCHAR'" for h in header) + "}"
    return (
        f"read_csv(?, header = true, auto_detect = false, strict_mode = true, delim = '{_q(delim)}', "
        f"quote = '{_q(quote)}', escape = '{_q(quote)}', columns = {cols}, max_line_size = {_MAX_ROW_BYTES}, "
        f"encoding = '{_q(source.duckdb_encoding)}')"
    )


def _q(value: str) -> str:
    return value.replace("'", "''")


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


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


def _validate(con: duckdb.DuckDBPyConnection, path: Path, fmt: str, strict: bool) -> None:
    """The first malformed row is the file's error; contentless rows are one (strict) or are skipped unchecked."""
    checks = [("user_id IS NULL OR trim(user_id) = ''", "empty user_id", "user_id")]
    if strict:
        checks.append((_CONTENTLESS, "neither item_title nor text is given", "item_title"))
    checks += [
        (f"ts IS NOT NULL AND trim(ts) <> '' AND ({_TS}) IS NULL", "unparsable timestamp", "ts"),
        (
            "rating IS NOT NULL AND trim(rating) <> '' AND TRY_CAST(rating AS DOUBLE) IS NULL",
            "rating is not a number",
            "rating",
        ),
    ]
    for condition, problem, column in checks:
        where = condition if strict else f"({condition}) AND NOT {_CONTENTLESS}"
        row = con.execute(
            f"SELECT _row, {column}, count(*) OVER () FROM _staged WHERE {where} ORDER BY _row LIMIT 1"
        ).fetchone()
        if row:
            value = f" {row[1]!r}" if row[1] not in (None, "") else ""
            more = f" ({row[2]} bad rows in all)" if row[2] > 1 else ""
            raise IngestError(str(path), f"{problem}{value}{more}", row=_human_row(int(row[0]), fmt))


def _contentless(con: duckdb.DuckDBPyConnection, fmt: str) -> tuple[int, list[int]]:
    """How many rows carry no content, and the first few of them (human row numbers)."""
    row = con.execute(
        f"SELECT count(*), list(_row ORDER BY _row)[1:{_SKIPPED_SHOWN}] FROM _staged WHERE {_CONTENTLESS}"
    ).fetchone()
    if not row or not row[0]:
        return 0, []
    return int(row[0]), [_human_row(int(r), fmt) for r in row[1]]


def _human_row(row: int, fmt: str) -> int:
    """Data rows count from 1; for CSV the header is line 1, so row N sits on line N + 1."""
    return row + 1 if fmt == "csv" else row


def _refresh_users(con: duckdb.DuckDBPyConnection) -> tuple[int, dict[str, int]]:
    """Recount the users the file touched and detect their languages: (users touched, their language mix)."""
    stage_languages(con, "SELECT DISTINCT user_id FROM _clean")
    con.execute("""
        INSERT OR REPLACE INTO users (user_id, n_events, first_ts, last_ts, history_hash, updated_at, language)
        SELECT e.user_id, count(*), min(e.ts), max(e.ts), md5(string_agg(e.row_hash, ',' ORDER BY e.row_hash)),
               current_timestamp, any_value(l.language)
        FROM events e LEFT JOIN _langs l ON l.user_id = e.user_id
        WHERE e.user_id IN (SELECT DISTINCT user_id FROM _clean) GROUP BY e.user_id
    """)
    mix = con.execute("SELECT language, count(*) FROM _langs GROUP BY 1 ORDER BY 2 DESC, 1").fetchall()
    return _count(con, "(SELECT DISTINCT user_id FROM _clean)"), {str(k): int(n) for k, n in mix}


def _count(con: duckdb.DuckDBPyConnection, table: str) -> int:
    row = con.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
