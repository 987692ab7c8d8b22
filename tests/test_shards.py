"""Scoring Parquet event files without a store: same scores as ingest + score, shards add up, reruns are idempotent."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_scoring import model  # noqa: F401  (fixture)
from typer.testing import CliRunner

from llm_labeler.cli import app
from llm_labeler.errors import InputError
from llm_labeler.store import Store
from llm_labeler.student.scoring import score_users
from llm_labeler.student.shards import parse_shard, score_files, shard_name

ROOT = Path(__file__).resolve().parents[1]


def timed_events(events_path: Path) -> list[dict[str, object]]:
    """The fixture's events with times (ties and missing ones included), markup and a repeated row."""
    rows = [json.loads(line) for line in events_path.read_text(encoding="utf-8").splitlines()]
    start = datetime(2024, 3, 1, 12, 0, 0)
    for k, r in enumerate(rows):
        r["ts"] = None if k % 5 == 0 else start + timedelta(seconds=(k * 7919) % 50, microseconds=k % 3 * 250)
        r["rating"] = float(k % 4) if k % 3 else None
    rows[1]["item_title"] = "<b>Re:</b> &amp;lt;tags&gt; &nbsp; and\tentities"
    rows.append(dict(rows[2]))  # counted once, as ingest does
    return rows


def write_event_files(rows: list[dict[str, object]], folder: Path, n_files: int) -> list[Path]:
    """Parquet files with each user's events in one file (users dealt out round-robin), ts a TIMESTAMP."""
    users = sorted({str(r["user_id"]) for r in rows})
    which = {u: k % n_files for k, u in enumerate(users)}
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for f in range(n_files):
        part = [r for r in rows if which[str(r["user_id"])] == f]
        path = folder / f"events-{f}.parquet"
        pq.write_table(pa.Table.from_pylist(part), path)
        paths.append(path)
    return paths


def ingest_rows(store: Store, rows: list[dict[str, object]], tmp_path: Path) -> None:
    path = tmp_path / "timed.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            ts = r["ts"]
            fh.write(json.dumps({**r, "ts": ts.isoformat() if isinstance(ts, datetime) else None}) + "\n")
    store.ingest(path)


def read_dir(folder: Path) -> pa.Table:
    tables = [pq.read_table(p) for p in sorted(folder.glob("part-*.parquet"))]
    return pa.concat_tables(tables).sort_by("user_id")


def test_files_score_like_ingest_then_score_and_shards_add_up(
    model: tuple[Store, Path],  # noqa: F811
    events_path: Path,
    tmp_path: Path,
) -> None:
    store, path = model
    rows = timed_events(events_path)
    store.con.execute("DELETE FROM events")  # the store now holds exactly the timed events
    ingest_rows(store, rows, tmp_path)
    score_users(store, path, full=True)
    stored = store.query(
        "SELECT s.user_id, s.segment, s.probabilities, s.history_hash FROM scores s ORDER BY s.user_id"
    )
    files = write_event_files(rows, tmp_path / "events", 4)
    whole = score_files(str(tmp_path / "events" / "*.parquet"), path, tmp_path / "one")
    assert (whole.files, whole.users, whole.skipped) == (4, 60, False)
    table = read_dir(tmp_path / "one")
    assert table.column("user_id").to_pylist() == [r["user_id"] for r in stored]
    assert table.column("segment").to_pylist() == [r["segment"] for r in stored]
    assert table.column("history_hash").to_pylist() == [r["history_hash"] for r in stored]
    segments = [f.name[2:] for f in table.schema if f.name.startswith("p_")]
    assert len(segments) == 6
    probs = np.column_stack([table.column(f"p_{s}").to_numpy() for s in segments])
    assert np.array_equal(probs, np.array([r["probabilities"] for r in stored], np.float32))
    for n, split in ((3, "files"), (2, "users")):
        reports = [score_files(str(files[0].parent), path, tmp_path / split, (i, n), split) for i in range(n)]
        assert sum(r.users for r in reports) == 60
        assert read_dir(tmp_path / split).equals(table)  # exactly the rows of the unsharded run


def test_rerun_is_idempotent_and_a_killed_shard_is_redone(
    model: tuple[Store, Path],  # noqa: F811
    events_path: Path,
    tmp_path: Path,
) -> None:
    _, path = model
    write_event_files(timed_events(events_path), tmp_path / "events", 3)
    glob, out = str(tmp_path / "events" / "*.parquet"), tmp_path / "out"
    first = score_files(glob, path, out, (1, 3))
    done = out / shard_name(1, 3)
    clean = done.read_bytes()
    assert score_files(glob, path, out, (1, 3)).skipped
    done.write_bytes(
        clean[: len(clean) // 2]
    )  # what a shard killed mid-write would leave, had it no tmp file
    (out / f".{done.name}.999.tmp").write_bytes(b"partial")
    again = score_files(glob, path, out, (1, 3))
    assert not again.skipped and again.users == first.users and done.read_bytes() == clean
    with pytest.raises(InputError, match="I/N"):
        parse_shard("2-of-3")
    with pytest.raises(InputError, match="from 0 to N-1"):
        parse_shard("3/3")
    with pytest.raises(InputError, match="no Parquet files"):
        score_files(str(tmp_path / "nothing" / "*.parquet"), path, out)


def test_cli_shard(model: tuple[Store, Path], events_path: Path, tmp_path: Path) -> None:  # noqa: F811
    _, path = model
    write_event_files(timed_events(events_path), tmp_path / "events", 2)
    args = ["score", "--input", str(tmp_path / "events"), "--model", str(path), "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, [*args, "--shard", "0/2", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["users"] == 30
    assert pq.read_table(tmp_path / "o" / "part-00000-of-00002.parquet").num_rows == 30
    bad = CliRunner().invoke(app, [*args, "--shard", "5/2"])
    assert bad.exit_code == 2 and "--shard 5/2" in bad.output
    mixed = CliRunner().invoke(app, [*args, "--llm-fallback", "fake:echo"])
    assert mixed.exit_code == 2 and "--llm-fallback apply to scoring the store" in mixed.output


def test_s3_input_through_pyarrow_against_a_local_s3_server(
    model: tuple[Store, Path],  # noqa: F811
    events_path: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    server_mod = pytest.importorskip(
        "moto.server", reason="moto[server] (a local S3 server) is not installed"
    )
    from pyarrow import fs

    _, path = model
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        for key, value in {
            "AWS_ENDPOINT_URL": f"http://{host}:{port}",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }.items():
            monkeypatch.setenv(key, value)
        local = write_event_files(timed_events(events_path), tmp_path / "events", 3)
        s3 = fs.S3FileSystem(
            endpoint_override=f"http://{host}:{port}", region="us-east-1", allow_bucket_creation=True
        )
        s3.create_dir("bucket")
        for p in local:
            with s3.open_output_stream(f"bucket/events/{p.name}") as dst:
                dst.write(p.read_bytes())
        remote = score_files("s3://bucket/events/*.parquet", path, tmp_path / "s3")
        plain = score_files(str(tmp_path / "events"), path, tmp_path / "local")
        assert remote.files == 3 and remote.users == 60
        assert pq.read_table(remote.out).equals(pq.read_table(plain.out))
    finally:
        server.stop()


def test_documents_built_in_chunks_equal_one_pass(events_path: Path, tmp_path: Path) -> None:
    from llm_labeler.store.event_files import event_docs, list_event_files

    write_event_files(timed_events(events_path), tmp_path / "events", 3)
    files = list_event_files(str(tmp_path / "events"))
    with event_docs(files, 1000) as whole, event_docs(files, 5, chunk_users=7) as chunked:
        a, b = pa.Table.from_batches(list(whole)), pa.Table.from_batches(list(chunked))
    assert a.num_rows == 60 and a.equals(b)
