"""The student's per-user documents get the labeler's cleaning: markup never becomes a feature."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llm_labeler.store import Store
from llm_labeler.store import student as sq

EVENTS = [
    {"user_id": "u1", "item_id": "a", "item_title": "Fish<br/>chips", "text": "salt&nbsp;and&nbsp;vinegar"},
    {
        "user_id": "u1",
        "item_id": "b",
        "item_title": "<b>Tea</b> &amp; cake",
        "text": "&lt;3 it&#39;s  \n good",
    },
    {"user_id": "u2", "item_id": "c", "item_title": "<br/>", "text": "&nbsp;"},
]


@pytest.fixture
def shop(store: Store, tmp_path: Path) -> Store:
    path = tmp_path / "shop.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in EVENTS), encoding="utf-8")
    store.ingest(path)
    return store


def _assert_clean(doc: str) -> None:
    for markup in ("<br", "br/>", "<b>", "&nbsp;", "nbsp", "&amp;", "&lt;", "&#39;"):
        assert markup not in doc


def test_tags_and_entities_never_reach_the_document(shop: Store) -> None:
    assert sq.refresh_docs(shop) == 2
    docs = sq.docs_for(shop, ["u1", "u2"])
    doc = docs["u1"][0]
    _assert_clean(doc)
    assert sorted(doc.split(" \n ")) == ["Fish chips salt and vinegar", "Tea & cake <3 it's good"]
    assert docs["u2"][0] == ""  # only markup: nothing left to learn from


def test_a_read_only_store_builds_the_same_documents(shop: Store) -> None:
    sq.refresh_docs(shop)
    stored = sq.docs_for(shop, ["u1", "u2"])
    shop.close()
    with Store(shop.path, read_only=True) as ro:
        assert sq.docs_for(ro, ["u1", "u2"]) == stored


def test_documents_built_in_an_older_format_are_rebuilt(shop: Store) -> None:
    sq.refresh_docs(shop)
    assert sq.refresh_docs(shop) == 0  # nothing changed
    # Docs written before the cleaning: same history_hash, raw markup, no format.
    shop.con.execute("UPDATE user_docs SET doc = 'Fish<br/>chips', doc_format = NULL")
    assert sq.refresh_docs(shop) == 2
    _assert_clean(sq.docs_for(shop, ["u1"])["u1"][0])
    rows = shop.query("SELECT user_id, doc_format FROM user_docs ORDER BY user_id")
    assert rows == [
        {"user_id": "u1", "doc_format": sq.DOC_FORMAT},
        {"user_id": "u2", "doc_format": sq.DOC_FORMAT},
    ]
