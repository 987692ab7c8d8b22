"""Opening the store's file: for writing, for reading, or, while another process writes it, as a snapshot.

DuckDB lets one process open a file for writing, and then no other process at all, not even to read. A command
that only reads copies the file and its WAL to a temporary folder and reads the copy: it sees everything the
writer has committed so far, and the writer is never disturbed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import duckdb

from ..errors import StoreError
from .conditions import duckdb_reason

__all__ = ["open_read_only", "open_read_write"]


def open_read_write(path: str) -> duckdb.DuckDBPyConnection:
    """A read-write connection; a file held by another process is a clear error."""
    try:
        return duckdb.connect(path)
    except duckdb.Error as exc:
        if _locked(exc):
            raise StoreError(
                f"store {path} is in use by another process (a running label or score?) or connection; "
                f"commands that only read can still open it: {duckdb_reason(exc)}"
            ) from exc
        raise StoreError(f"cannot open store {path}: {duckdb_reason(exc)}") from exc


def open_read_only(
    path: str, attempts: int = 3
) -> tuple[duckdb.DuckDBPyConnection, tempfile.TemporaryDirectory[str] | None]:
    """A read-only connection to the file, or to a snapshot of it (with the folder holding the copy)."""
    if not Path(path).is_file():
        raise StoreError(f"no store at {path}: ingest events first, or pass --db")
    try:
        return duckdb.connect(path, read_only=True), None
    except duckdb.Error as exc:
        if not _locked(exc):
            raise StoreError(f"cannot open store {path}: {duckdb_reason(exc)}") from exc
        cause = exc
    failure: BaseException = cause
    for _ in range(attempts):  # the writer may checkpoint while we copy: a torn copy is tried again
        folder: tempfile.TemporaryDirectory[str] | None = None
        try:
            folder = tempfile.TemporaryDirectory(prefix="llm_labeler_snapshot_")
            return _snapshot(path, Path(folder.name) / Path(path).name), folder
        except (OSError, duckdb.Error) as exc:
            failure = exc
            if folder is not None:
                folder.cleanup()
    reason = duckdb_reason(failure) if isinstance(failure, duckdb.Error) else str(failure)
    raise StoreError(
        f"store {path} is in use by another process ({duckdb_reason(cause)}), and a snapshot copy of it "
        f"could not be read either: {reason}"
    ) from failure


def _snapshot(path: str, copy: Path) -> duckdb.DuckDBPyConnection:
    shutil.copyfile(path, copy)
    wal = Path(path + ".wal")
    if wal.exists():
        shutil.copyfile(wal, str(copy) + ".wal")
    return duckdb.connect(str(copy), read_only=True)


def _locked(exc: duckdb.Error) -> bool:
    """Another process holds the file, or this one holds it with other settings (read-write vs read-only)."""
    text = str(exc)
    return "lock" in text.lower() or "different configuration" in text
