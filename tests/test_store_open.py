"""Opening the store: read-only never migrates or writes, reads a snapshot while another process writes, and a
foreign DuckDB file is refused untouched."""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from test_distill import write_run

from llm_labeler.errors import StoreError
from llm_labeler.labeling import LabelConfig
from llm_labeler.labeling.plan import plan_run
from llm_labeler.schemas import Taxonomy
from llm_labeler.store import Store
from llm_labeler.store import student as sq
from llm_labeler.store.calls import call_log
from llm_labeler.store.migrations import MIGRATIONS
from llm_labeler.student.review import export_labels, review_export

# Holds the store open for writing (as a running `label` does) until told on stdin to stop.
_WRITER = """
import sys
from llm_labeler.store import Store
store = Store(sys.argv[1])
store.start_run("label", "fake:echo", "m", "t", "h", {}, run_id="run_while_writing")
print("ready", flush=True)
sys.stdin.readline()
store.close()
"""


def _fingerprint(path: Path) -> tuple[str, float, list[str]]:
    return (
        hashlib.sha256(path.read_bytes()).hexdigest(),
        path.stat().st_mtime,
        sorted(os.listdir(path.parent)),
    )


def _tables(path: Path) -> list[str]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        return sorted(r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall())
    finally:
        con.close()


@pytest.fixture
def db(loaded_store: Store, coarse_taxonomy: Taxonomy, gold_coarse: dict[str, str]) -> Path:
    """A closed store file with the fixture's events and one finished label run."""
    write_run(loaded_store, coarse_taxonomy, gold_coarse)
    loaded_store.close()
    return Path(loaded_store.path)


@pytest.fixture
def writer(db: Path) -> Iterator[subprocess.Popen[str]]:
    """A second process holding `db` open for writing, waiting on a pipe (not a clock) until the test is done."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    line = proc.stdout.readline()
    assert line.strip() == "ready", proc.stderr.read() if proc.stderr else line
    yield proc
    proc.stdin.write("done\n")
    proc.stdin.flush()
    try:
        assert proc.wait(timeout=300) == 0
    finally:
        for pipe in (proc.stdin, proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def test_read_only_never_migrates_or_writes_even_on_a_read_only_file(db: Path) -> None:
    with Store(db) as store:  # an older store: migration 5 not applied yet
        store.con.execute("DELETE FROM schema_migrations WHERE version = 5")
        store.con.execute("ALTER TABLE user_docs DROP COLUMN doc_format")
    before = _fingerprint(db)
    db.chmod(stat.S_IRUSR | stat.S_IRGRP)
    db.parent.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with Store(db, read_only=True) as ro:
            assert ro.read_only and ro.snapshot_of is None
            assert [r["status"] for r in ro.recent_runs()] == ["done"]
            uid = ro.user_ids(limit=1)[0]
            assert sq.refresh_docs(ro) == 0 and sq.docs_for(ro, [uid])[uid][0]
            versions = {r["version"] for r in ro.query("SELECT version FROM schema_migrations")}
            with pytest.raises(duckdb.Error):  # DuckDB itself refuses writes
                ro.con.execute("DELETE FROM runs")
    finally:
        db.parent.chmod(stat.S_IRWXU)
        db.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert versions == {v for v, _ in MIGRATIONS} - {5}
    assert _fingerprint(db) == before


def test_read_only_reads_a_snapshot_while_another_process_writes(
    db: Path, writer: subprocess.Popen[str]
) -> None:
    with pytest.raises(StoreError, match="in use by another process") as info:
        Store(db)  # a second writer is refused with a clear message, not a lock traceback
    assert "\n" not in str(info.value)
    with Store(db, read_only=True) as ro:
        assert ro.snapshot_of == str(db)
        assert ro.get_run("run_while_writing")["status"] == "running"  # what the writer committed so far
        assert ro.count_users() == 60
        copy = Path(ro.con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchone()[0])
        assert copy != db and copy.exists()
    assert not copy.exists()  # the snapshot goes with the store
    assert writer.poll() is None  # the writer was never disturbed


def test_read_commands_work_on_a_snapshot_while_a_label_runs(
    db: Path, writer: subprocess.Popen[str], coarse_taxonomy: Taxonomy, tmp_path: Path
) -> None:
    with Store(db, read_only=True) as ro:
        assert ro.snapshot_of == str(db)
        run = next(r["run_id"] for r in ro.recent_runs() if r["status"] == "done")
        assert review_export(ro, run, tmp_path / "review.csv", n=5) == 5  # builds docs without writing them
        assert export_labels(ro, run, tmp_path / "labels.jsonl") == 58
        assert call_log(ro, run, None, False, 10) == []
        planned = plan_run(ro, coarse_taxonomy, LabelConfig(backend="fake:echo"), limit=3)
        assert planned is not None


def test_a_snapshot_that_cannot_be_made_is_a_clear_store_error(
    db: Path, writer: subprocess.Popen[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    not_a_folder = tmp_path / "not_a_folder"
    not_a_folder.write_text("")
    monkeypatch.setattr(tempfile, "tempdir", str(not_a_folder))
    with pytest.raises(
        StoreError, match=r"in use by another process .* snapshot copy of it could not be read"
    ):
        Store(db, read_only=True)


def test_a_store_from_a_newer_version_says_so_read_only_too(db: Path) -> None:
    with Store(db) as store:
        store.con.execute("INSERT INTO schema_migrations VALUES (999)")
    for read_only in (True, False):
        with pytest.raises(StoreError, match=r"schema version\(s\) \[999\] unknown .* newer version"):
            Store(db, read_only=read_only)


def test_a_foreign_duckdb_file_is_refused_and_left_untouched(tmp_path: Path) -> None:
    path = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE orders (id INTEGER, total DOUBLE)")
    con.execute("CREATE TABLE customers (id INTEGER)")
    con.close()
    before = _fingerprint(path)
    for read_only in (True, False):
        with pytest.raises(StoreError, match="not an llm-labeler store") as info:
            Store(path, read_only=read_only)
        assert str(path) in str(info.value) and "(its tables: customers, orders)" in str(info.value)
        assert _tables(path) == ["customers", "orders"]
    assert _fingerprint(path)[0] == before[0]


def test_new_and_empty_files_are_migrated_and_read_as_empty_stores(tmp_path: Path) -> None:
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    before = _fingerprint(empty)
    with Store(empty, read_only=True) as ro:
        assert ro.recent_runs() == [] and ro.count_users() == 0
    assert _fingerprint(empty) == before
    for path in (empty, tmp_path / "new.duckdb"):
        with Store(path) as store:
            versions = {r["version"] for r in store.query("SELECT version FROM schema_migrations")}
        assert versions == {v for v, _ in MIGRATIONS}
    with pytest.raises(StoreError, match="no store at"):
        Store(tmp_path / "missing.duckdb", read_only=True)
    assert not (tmp_path / "missing.duckdb").exists()
