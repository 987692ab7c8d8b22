"""Event files read in place (no store): DuckDB's Parquet reader builds the student's per-user documents.

The events go through the same normalisation as `ingest` (trimmed ids, lower-case event types, times parsed to
naive UTC, contentless rows dropped, duplicate rows counted once by their row hash) and then the same document
SQL as the store's `user_docs`, so a user scored from files gets exactly the document (and history hash) they
would get after `ingest`. Local paths and globs go to `read_parquet`; s3:// URIs are opened with pyarrow's S3
filesystem (endpoint and keys from the usual AWS_* environment, read by Arrow itself) and scanned by DuckDB as an
Arrow dataset, so no DuckDB extension has to be downloaded.
"""

from __future__ import annotations

import fnmatch
import glob as globlib
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import duckdb

from ..errors import InputError
from ..schemas import EVENT_FIELDS
from .ingest import _CONTENTLESS, _TS
from .student import doc_select

__all__ = ["EventFile", "event_docs", "list_event_files"]


@dataclass(frozen=True)
class EventFile:
    """One input file: where it is and how big it is (its identity for a shard's idempotent rerun)."""

    path: str
    size: int


def list_event_files(pattern: str) -> list[EventFile]:
    """The Parquet files a path, directory or glob names (local or s3://), sorted; none is an error."""
    files = _s3_files(pattern) if pattern.startswith("s3://") else _local_files(pattern)
    if not files:
        raise InputError(f"no Parquet files match {pattern!r}")
    return files


def _local_files(pattern: str) -> list[EventFile]:
    if os.path.isdir(pattern):
        pattern = os.path.join(pattern, "**", "*.parquet")
    paths = sorted(p for p in globlib.glob(pattern, recursive=True) if os.path.isfile(p))
    return [EventFile(os.path.abspath(p), os.path.getsize(p)) for p in paths]


def _s3_files(pattern: str) -> list[EventFile]:
    from pyarrow import fs

    base = pattern.removeprefix("s3://")
    wild = re.search(r"[*?\[]", base)
    root = base[: wild.start()].rsplit("/", 1)[0] if wild else base.rstrip("/")
    s3, _ = fs.FileSystem.from_uri("s3://" + root.split("/")[0])
    info = s3.get_file_info(root)
    if info.type == fs.FileType.File:
        return [EventFile("s3://" + info.path, int(info.size or 0))]
    infos = s3.get_file_info(fs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(
        (
            EventFile("s3://" + i.path, int(i.size or 0))
            for i in infos
            if i.type == fs.FileType.File
            and (fnmatch.fnmatch(i.path, base) if wild else i.path.endswith(".parquet"))
        ),
        key=lambda f: f.path,
    )


@contextmanager
def event_docs(
    files: list[EventFile],
    batch_size: int,
    user_shard: tuple[int, int] | None = None,
    memory_limit: str = "1GB",
    chunk_users: int = 50_000,
) -> Iterator[Iterator[Any]]:
    """Arrow batches of (user_id, history_hash, doc, meta, n_events) for the users in `files`, by user id.

    The normalised events are staged once in a temporary table (spilled to disk past `memory_limit`), then the
    documents are built `chunk_users` users at a time, so memory stays bounded whatever the number of users.
    `user_shard=(i, n)` keeps only the users whose id hashes to shard i of n (every file is read).
    """
    with tempfile.TemporaryDirectory(prefix="llm_labeler_files_") as spill:
        con = duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": spill})
        try:
            con.execute("SET enable_progress_bar = false")  # DuckDB's own bar would write to stdout (--json)
            con.execute("SET preserve_insertion_order = false")
            source = _register_source(con, files)
            columns = _columns(con, source)
            con.execute(f"CREATE TEMP TABLE _file_events AS {_normalised(source, columns, user_shard)}")
            ranges = con.execute(
                "SELECT min(user_id), max(user_id) FROM (SELECT user_id, (row_number() OVER (ORDER BY user_id) - 1)"
                " // ? AS k FROM (SELECT DISTINCT user_id FROM _file_events)) GROUP BY k ORDER BY k",
                [chunk_users],
            ).fetchall()
            yield _chunks(con, ranges, batch_size)
        except duckdb.Error as exc:
            raise InputError(f"cannot read the event files: {exc}") from exc
        finally:
            con.close()


def _chunks(con: duckdb.DuckDBPyConnection, ranges: list[Any], batch_size: int) -> Iterator[Any]:
    sql = doc_select(
        "_file_events",
        "md5(string_agg(e.row_hash, ',' ORDER BY e.row_hash))",
        "e.user_id >= ? AND e.user_id <= ?",
    )
    try:
        for lo, hi in ranges:
            reader: Any = con.sql(f"{sql} ORDER BY user_id", params=[lo, hi]).to_arrow_reader(batch_size)
            yield from reader
    except duckdb.Error as exc:
        raise InputError(f"cannot read the event files: {exc}") from exc


def _register_source(con: duckdb.DuckDBPyConnection, files: list[EventFile]) -> str:
    if not files[0].path.startswith("s3://"):
        listed = ", ".join("'" + f.path.replace("'", "''") + "'" for f in files)
        return f"read_parquet([{listed}], union_by_name = true)"
    import pyarrow.dataset as ds
    from pyarrow import fs

    s3, _ = fs.FileSystem.from_uri(files[0].path)
    con.register("_s3_events", ds.dataset([f.path.removeprefix("s3://") for f in files], filesystem=s3))
    return "_s3_events"


def _columns(con: duckdb.DuckDBPyConnection, source: str) -> dict[str, str]:
    """Column name -> DuckDB type of the event files."""
    names = {str(r[0]): str(r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    if "user_id" not in names or not names.keys() & {"item_title", "text"}:
        raise InputError(
            f"event files need a user_id column and an item_title or text column (the ingest fields "
            f"{', '.join(EVENT_FIELDS)}); these have {sorted(names)}"
        )
    return names


def _time(columns: dict[str, str]) -> str:
    """ingest's time parsing; a column that already holds times skips the text round trip (same values)."""
    kind = columns.get("ts", "")
    if kind.startswith("TIMESTAMP WITH TIME ZONE"):
        return "timezone('UTC', raw_ts)"
    if kind.startswith("TIMESTAMP"):
        return "CAST(raw_ts AS TIMESTAMP)"
    return _TS


def _normalised(source: str, columns: dict[str, str], user_shard: tuple[int, int] | None) -> str:
    """ingest's cleaning of one staged file, over `source`: the events table's columns plus row_hash."""
    staged = ", ".join(
        f'CAST("{f}" AS VARCHAR) AS {f}' if f in columns else f"NULL::VARCHAR AS {f}" for f in EVENT_FIELDS
    )
    raw_ts = '"ts"' if "ts" in columns else "NULL::VARCHAR"
    shard = f"WHERE md5_number(user_id) % {user_shard[1]} = {user_shard[0]}" if user_shard else ""
    return f"""
        SELECT DISTINCT ON (row_hash) * FROM (
        SELECT md5(concat_ws('\x1f', user_id, coalesce(ts::VARCHAR, '~'), coalesce(event_type, '~'),
                   coalesce(item_id, '~'), coalesce(item_title, '~'), coalesce(item_category, '~'),
                   coalesce(text, '~'), coalesce(rating::VARCHAR, '~'))) AS row_hash, *
        FROM (SELECT trim(user_id) AS user_id, {_time(columns)} AS ts, nullif(trim(lower(event_type)), '') AS event_type,
                     nullif(trim(item_id), '') AS item_id, nullif(item_title, '') AS item_title,
                     nullif(item_category, '') AS item_category, nullif(text, '') AS text,
                     TRY_CAST(rating AS DOUBLE) AS rating
              FROM (SELECT {staged}, {raw_ts} AS raw_ts FROM {source}) WHERE NOT {_CONTENTLESS} AND nullif(trim(user_id), '') IS NOT NULL)
        {shard})
    """
