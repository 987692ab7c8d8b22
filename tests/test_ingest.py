"""Ingest: DuckDB readers, validation errors that name file/row/problem, no half-loaded files, no duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_labeler.errors import IngestError
from llm_labeler.store import Store


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _events(store: Store) -> int:
    return int(store.query("SELECT count(*) AS n FROM events")[0]["n"])


def test_csv_jsonl_parquet_and_dedup(store: Store, tmp_path: Path) -> None:
    csv = _write(
        tmp_path / "a.csv",
        "user_id,ts,event_type,item_id,item_title,item_category,text,rating\n"
        "u1,2024-01-01 10:00:00,view,i1,USB-C hub,electronics,,\n"
        "u1,2024-01-02,purchase,i2,Laptop stand,electronics,sturdy,5\n"
        'u2,1700000000,review,i3,中文商品,books,"很好, 推荐",4\n',
    )
    first = store.ingest(csv)
    assert (first.rows_read, first.rows_added, first.users_touched) == (3, 3, 2)
    again = store.ingest(csv)
    assert (again.rows_added, again.duplicates) == (0, 3)
    jsonl = _write(tmp_path / "b.jsonl", json.dumps({"user_id": "u3", "text": "asks about tents"}) + "\n")
    assert store.ingest(jsonl).rows_added == 1
    store.copy_to_parquet(
        "SELECT user_id || 'p' AS user_id, item_title, text FROM events", tmp_path / "c.parquet"
    )
    assert store.ingest(tmp_path / "c.parquet").rows_added == 4
    assert store.count_users() == 6
    events = store.events_for(["u2"])["u2"]
    assert events[0].item_title == "中文商品" and events[0].rating == 4.0 and events[0].ts is not None


def test_map_renames_columns(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "m.csv", "customer,product,when\nc1,Kettle,2024-03-01\n")
    store.ingest(path, mapping={"customer": "user_id", "product": "item_title", "when": "ts"})
    assert store.events_for(["c1"])["c1"][0].item_title == "Kettle"
    with pytest.raises(IngestError, match="not in the file"):
        store.ingest(path, mapping={"nope": "user_id"})
    with pytest.raises(IngestError, match="unknown field"):
        store.ingest(path, mapping={"customer": "customer_id"})


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("ragged.csv", "user_id,item_title\nu1,a\nu2,b,EXTRA\n", r"Line: 3"),
        ("nouser.csv", "uid,item_title\nu1,a\n", r"missing required column 'user_id'"),
        ("notext.csv", "user_id,rating\nu1,3\n", r"needs an 'item_title' or a 'text' column"),
        (
            "badts.csv",
            "user_id,ts,item_title\nu1,2024-01-01,a\nu2,yesterday,b\n",
            r"row 3: unparsable timestamp 'yesterday'",
        ),
        ("emptyuser.csv", "user_id,item_title\nu1,a\n,b\n", r"row 3: empty user_id"),
        ("badrating.csv", "user_id,item_title,rating\nu1,a,five\n", r"row 2: rating is not a number 'five'"),
        ("broken.jsonl", '{"user_id": "u1", "text": "ok"}\n{"user_id": \n', r"cannot be read as JSON lines"),
        ("fake.parquet", "this is not parquet", r"cannot be read as Parquet"),
        ("data.xml", "<x/>", r"unknown format"),
    ],
)
def test_bad_files_name_the_problem_and_leave_nothing(
    store: Store, tmp_path: Path, name: str, content: str, match: str
) -> None:
    store.ingest(_write(tmp_path / "good.csv", "user_id,item_title\nkeep,stays\n"))
    bad = _write(tmp_path / name, content)
    with pytest.raises(IngestError, match=match) as info:
        store.ingest(bad)
    assert name in str(info.value)
    assert _events(store) == 1 and store.count_users() == 1  # nothing half-loaded, nothing lost


def test_missing_file(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="file not found"):
        store.ingest(tmp_path / "absent.csv")


def test_real_fixture_ingests(loaded_store: Store, gold_coarse: dict[str, str]) -> None:
    assert loaded_store.count_users() == len(gold_coarse) == 60
    assert set(loaded_store.user_ids()) == set(gold_coarse)
