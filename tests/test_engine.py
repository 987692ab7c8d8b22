"""The engine-neutral scorer: Arrow batches in, fixed-schema score batches out, equal to what score_users stores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_scoring import model  # noqa: F401  (fixture)

from llm_labeler.errors import InputError
from llm_labeler.schemas import Taxonomy
from llm_labeler.store import Store
from llm_labeler.student.engine import load_scorer, score_batches, score_schema
from llm_labeler.student.scoring import score_users


def test_batches_score_like_the_store_and_the_schema_comes_from_metadata(
    model: tuple[Store, Path],  # noqa: F811
) -> None:
    store, path = model
    score_users(store, path, batch_size=16)
    rows = store.query("SELECT user_id, doc, meta FROM user_docs ORDER BY user_id")
    docs = pa.RecordBatch.from_pylist(rows)
    out = pa.Table.from_batches(list(score_batches([docs.slice(0, 25), docs.slice(25)], path)))
    scorer = load_scorer(path)
    assert out.schema == score_schema(scorer.meta) == scorer.schema
    assert out.schema.names[-len(scorer.segments) :] == [f"p_{s}" for s in scorer.segments]
    stored = store.query(
        "SELECT user_id, segment, confidence, margin, probabilities FROM scores ORDER BY user_id"
    )
    assert out.column("user_id").to_pylist() == [r["user_id"] for r in stored]
    assert out.column("segment").to_pylist() == [r["segment"] for r in stored]
    probs = np.column_stack([out.column(f"p_{s}").to_numpy() for s in scorer.segments])
    assert np.array_equal(probs, np.array([r["probabilities"] for r in stored], dtype=np.float32))
    assert np.array_equal(
        out.column("margin").to_numpy(), np.array([r["margin"] for r in stored], np.float32)
    )
    assert set(out.column("model_version").to_pylist()) == {scorer.version}


def test_bytes_cache_nulls_empty_batches_and_refusals(
    model: tuple[Store, Path],  # noqa: F811
    coarse_taxonomy: Taxonomy,
) -> None:
    _, path = model
    data = path.read_bytes()
    assert load_scorer(data) is load_scorer(data)  # loaded once per process
    assert load_scorer(path) is load_scorer(path)
    batch = pa.RecordBatch.from_pydict(
        {"user_id": ["a", "b"], "doc": [None, "hockey game tonight"], "meta": [None, None]}
    )
    (scored,) = score_batches([batch], data)
    (no_meta,) = score_batches([batch.select(["user_id", "doc"])], data)
    assert scored.num_rows == 2 and scored.equals(no_meta)
    (empty,) = score_batches([batch.slice(0, 0)], data)
    assert empty.num_rows == 0 and empty.schema == scored.schema
    other = coarse_taxonomy.model_copy(update={"name": "another"})
    with pytest.raises(InputError, match="distilled for taxonomy '20ng_coarse'"):
        load_scorer(data, other)
    with pytest.raises(InputError, match="missing \\['doc'\\]"):
        list(score_batches([batch.select(["user_id"])], data))
    with pytest.raises(InputError, match="not a skops student model"):
        load_scorer(b"not a model")
