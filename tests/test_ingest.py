"""Ingest: DuckDB readers, validation errors that name file/row/problem, no half-loaded files, no duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_labeler.errors import IngestError
from llm_labeler.store import IngestResult, Store
from llm_labeler.store.ingest import ingest_file


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _events(store: Store) -> int:
    return int(store.query("SELECT count(*) AS n FROM events")[0]["n"])


def _ingest(store: Store, path: Path, *, encoding: str = "utf-8", strict: bool = False) -> IngestResult:
    """ingest_file with its keyword options, as Store.ingest passes them on."""
    return ingest_file(store.con, path, None, {}, encoding=encoding, strict=strict)


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
        (
            "ragged.csv",
            "user_id,item_title\nu1,a\nu2,b,EXTRA\n",
            r"row 3: cannot be read as CSV: Expected Number of Columns: 2 Found: 3$",
        ),
        (
            "longragged.csv",
            "user_id,item_title\nu1," + "a" * 5000 + ",EXTRA\n",
            r"row 2: cannot be read as CSV: Expected Number of Columns: 2 Found: 3$",
        ),
        (
            "unterminated.csv",
            'user_id,item_title\nu1,"abc\nu2,b\n',
            r"row 2: cannot be read as CSV: Value with unterminated quote found\.$",
        ),
        (
            "nouser.csv",
            "uid,item_title\nu1,a\n",
            r"missing required column 'user_id' \(columns: \['uid', 'item_title'\]\)",
        ),
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
    assert "_row" not in str(info.value) and "strict_mode" not in str(
        info.value
    )  # no internals, no option dump
    assert _events(store) == 1 and store.count_users() == 1  # nothing half-loaded, nothing lost


def test_missing_file(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="file not found"):
        store.ingest(tmp_path / "absent.csv")


def test_real_fixture_ingests(loaded_store: Store, gold_coarse: dict[str, str]) -> None:
    assert loaded_store.count_users() == len(gold_coarse) == 60
    assert set(loaded_store.user_ids()) == set(gold_coarse)


def test_csv_saved_by_excel_with_a_bom_loads(store: Store, tmp_path: Path) -> None:
    csv = tmp_path / "excel.csv"
    csv.write_text("user_id,item_title\r\nu1,Kettle\r\n", encoding="utf-8-sig")
    tsv = tmp_path / "excel.tsv"
    tsv.write_text("user_id\titem_title\nu2,x\tTent\n", encoding="utf-8-sig")
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_text(json.dumps({"user_id": "u3", "text": "hello"}) + "\n", encoding="utf-8-sig")
    for path in (csv, tsv, jsonl):
        assert store.ingest(path).rows_added == 1
    assert sorted(store.user_ids()) == ["u1", "u2,x", "u3"]
    assert store.events_for(["u1"])["u1"][0].item_title == "Kettle"


@pytest.mark.parametrize(
    ("name", "encoding", "title"),
    [
        ("latin1.csv", "latin-1", "Café crème"),  # DuckDB's CSV reader decodes latin-1 itself
        ("latin1.jsonl", "latin-1", "Café crème"),  # transcoded to a temporary UTF-8 copy
        ("cp1252.csv", "cp1252", "Preis 5 € – günstig"),
        ("utf16.csv", "utf-16", "中文商品 ✓"),
    ],
)
def test_non_utf8_file_is_refused_with_a_hint_and_loads_with_its_encoding(
    store: Store, tmp_path: Path, name: str, encoding: str, title: str
) -> None:
    path = tmp_path / name
    if name.endswith(".csv"):
        path.write_text(f"user_id,item_title\nu0,plain\nu1,{title}\n", encoding=encoding)
    else:
        path.write_text(
            json.dumps({"user_id": "u1", "item_title": title}, ensure_ascii=False) + "\n", encoding=encoding
        )
    with pytest.raises(IngestError, match=r"not UTF-8: pass its encoding, e\.g\. --encoding latin-1") as info:
        store.ingest(path)
    assert name in str(info.value) and _events(store) == 0
    _ingest(store, path, encoding=encoding)
    assert store.events_for(["u1"])["u1"][0].item_title == title
    assert _ingest(store, path, encoding=encoding).rows_added == 0  # still no duplicates


def test_encoding_errors_name_the_file_and_the_problem(store: Store, tmp_path: Path) -> None:
    header = tmp_path / "header.csv"
    header.write_bytes("user_id,catégorie,item_title\nu1,a,b\n".encode("latin-1"))
    with pytest.raises(IngestError, match=r"header\.csv, row 1: .*not UTF-8: pass its encoding.*\(header: "):
        store.ingest(header)
    undecodable = tmp_path / "bad.csv"
    undecodable.write_bytes(b"user_id,item_title\nu1,caf\x81\n")  # 0x81 is undefined in cp1252
    with pytest.raises(IngestError, match=r"bad\.csv: cannot be decoded as cp1252: .* at byte 25"):
        _ingest(store, undecodable, encoding="cp1252")
    for name in ("klingon", "rot13"):
        with pytest.raises(IngestError, match=f"unknown encoding '{name}'"):
            _ingest(store, undecodable, encoding=name)
    store.copy_to_parquet("SELECT 'u1' AS user_id, 'x' AS text", tmp_path / "p.parquet")
    with pytest.raises(IngestError, match="Parquet text is always UTF-8"):
        _ingest(store, tmp_path / "p.parquet", encoding="latin-1")
    assert _events(store) == 0


def test_contentless_rows_are_skipped_and_reported(store: Store, tmp_path: Path) -> None:
    path = _write(
        tmp_path / "blog.csv",
        "user_id,ts,item_title,text\n"
        "u1,2024-01-01,First post,hello\n"
        "u1,2024-01-02,,\n"  # row 3
        "u2,,   ,\t\n"  # row 4: whitespace only
        "u2,2024-01-03,,\u00a0\u3000\n"  # row 5: Unicode spaces only
        "u2,2024-01-04,,a real text\n"
        ",,,\n",  # row 7: an all-empty row is contentless too
    )
    result = _ingest(store, path)
    assert (result.rows_read, result.rows_added, result.rows_skipped) == (6, 2, 4)
    assert result.skipped_rows == [3, 4, 5, 7] and result.duplicates == 0
    assert store.count_users() == 2
    again = store.ingest(path)
    assert (again.rows_added, again.rows_skipped, again.duplicates) == (0, 4, 2)
    jsonl = _write(tmp_path / "b.jsonl", '{"user_id": "u3", "text": ""}\n{"user_id": "u3", "text": "x"}\n')
    assert _ingest(store, jsonl).skipped_rows == [1]  # JSON lines count rows from 1, no header


def test_strict_keeps_all_or_nothing_and_malformed_rows_still_reject(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "s.csv", "user_id,item_title,text\nu1,a,\nu2,,\nu3, ,\n")
    with pytest.raises(
        IngestError, match=r"row 3: neither item_title nor text is given \(2 bad rows in all\)"
    ):
        _ingest(store, path, strict=True)
    assert _events(store) == 0
    bad_ts = _write(tmp_path / "t.csv", "user_id,ts,item_title\nu1,,\nu2,yesterday,b\n")
    with pytest.raises(IngestError, match=r"row 3: unparsable timestamp 'yesterday'"):
        _ingest(store, bad_ts)
    no_user = _write(tmp_path / "u.csv", "user_id,item_title\nu1,\n ,b\n")
    with pytest.raises(IngestError, match=r"row 3: empty user_id"):
        _ingest(store, no_user)
    ragged = _write(tmp_path / "r.csv", "user_id,item_title\nu1,\nu2,b,EXTRA\n")
    with pytest.raises(IngestError, match=r"row 3: cannot be read as CSV"):
        _ingest(store, ragged)
    assert _events(store) == 0 and store.count_users() == 0


def test_a_5_mb_field_loads_whole(store: Store, tmp_path: Path) -> None:
    long_text = "word " * (1 << 20)
    path = _write(tmp_path / "long.csv", f'user_id,item_title,text\nu1,Review,"{long_text}"\nu2,Short,ok\n')
    assert store.ingest(path).rows_added == 2
    stored = store.query("SELECT length(text) AS n FROM events WHERE user_id = 'u1'")[0]["n"]
    assert stored == len(long_text)  # never truncated at ingest


@pytest.mark.parametrize("session_zone", ["UTC", "America/New_York"])
def test_timestamps_with_offsets_are_converted_to_utc(
    store: Store, tmp_path: Path, session_zone: str
) -> None:
    store.con.execute(
        f"SET TimeZone = '{session_zone}'"
    )  # the stored UTC must not depend on the session's zone
    cases = {
        "2024-05-01T10:00:00+02:00": "2024-05-01 08:00:00",
        "2024-05-01T10:00:00Z": "2024-05-01 10:00:00",
        "2024-05-01T10:00:00.250-05:30": "2024-05-01 15:30:00.250000",
        "2024-05-01 10:00:00 +0200": "2024-05-01 08:00:00",
        "2024-05-01 10:00:00 Europe/Berlin": "2024-05-01 08:00:00",
        "2024-05-01 10:00:00": "2024-05-01 10:00:00",
        "2024-05-01": "2024-05-01 00:00:00",
        "1700000000": "2023-11-14 22:13:20",
        "1700000000123": "2023-11-14 22:13:20.123000",
    }
    rows = "".join(f"u{i},{ts},t{i}\n" for i, ts in enumerate(cases))
    store.ingest(_write(tmp_path / "ts.csv", "user_id,ts,item_title\n" + rows))
    got = {r["item_title"]: str(r["ts"]) for r in store.query("SELECT item_title, ts FROM events")}
    assert got == {f"t{i}": want for i, want in enumerate(cases.values())}


def test_a_column_named_like_the_row_number_is_the_files_own(store: Store, tmp_path: Path) -> None:
    path = _write(tmp_path / "r.csv", "user_id,_row,item_title\nu1,i7,Kettle\n")
    store.ingest(path, mapping={"_row": "item_id"})
    assert store.events_for(["u1"])["u1"][0].item_id == "i7"
