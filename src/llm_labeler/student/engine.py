"""The engine-neutral scorer: Arrow record batches of users in, Arrow batches of scores out.

Every engine runs this and nothing else: `score_users` (DuckDB, in-process), file shards (`student.shards`) and
Spark (`llm_labeler.spark`, inside `mapInArrow`). Input batches carry `user_id`, `doc` and optionally `meta`
(documents.py defines them; a null document is an empty history). Output batches have `score_schema(meta)`: the
user id, the model version, the top segment, its probability, the top-two margin and one `p_<segment>` column per
segment, in the taxonomy's order. Models are loaded once per process (`load_scorer` caches by content).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from threading import Lock
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import InputError
from ..schemas import Taxonomy
from .persist import load_student

__all__ = [
    "Scorer",
    "load_model",
    "load_scorer",
    "predict_batch",
    "score_batches",
    "score_schema",
]

_CACHE: OrderedDict[tuple[Any, ...], Scorer] = OrderedDict()
_CACHE_SIZE = 4
_LOCK = Lock()


def load_model(
    model: str | Path | bytes, taxonomy: Taxonomy | None = None
) -> tuple[Any, dict[str, Any], Taxonomy]:
    """(estimator, metadata, taxonomy); refuses a model made for another taxonomy than the one given."""
    est, meta = load_student(model)
    _check_taxonomy(model, meta, taxonomy)
    return est, meta, taxonomy or Taxonomy.model_validate(meta["taxonomy"])


def _check_taxonomy(model: str | Path | bytes, meta: dict[str, Any], taxonomy: Taxonomy | None) -> None:
    if taxonomy is None or taxonomy.content_hash() == meta["taxonomy_hash"]:
        return
    name = "the model bytes" if isinstance(model, bytes) else f"model {model}"
    raise InputError(
        f"{name} was distilled for taxonomy {meta['taxonomy_name']!r} "
        f"(hash {meta['taxonomy_hash'][:12]}), not {taxonomy.name!r} (hash {taxonomy.content_hash()[:12]}): "
        "distill a model for this taxonomy, or score with the model's own"
    )


def score_schema(meta: dict[str, Any]) -> pa.Schema:
    """The fixed schema of the scores a model produces, from its metadata alone (no estimator needed)."""
    fields = [
        pa.field("user_id", pa.string()),
        pa.field("model_version", pa.string()),
        pa.field("segment", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("margin", pa.float32()),
    ]
    return pa.schema(fields + [pa.field(f"p_{s}", pa.float32()) for s in meta["segments"]])


def predict_batch(est: Any, segments: list[str], batch: Any) -> np.ndarray:
    """Probabilities (float32, columns in taxonomy order) for an Arrow batch with doc and meta columns."""
    proba = est.predict_proba(batch)
    out = np.zeros((proba.shape[0], len(segments)), dtype=np.float32)
    index = {s: i for i, s in enumerate(segments)}
    for j, cls in enumerate(est.classes_):
        out[:, index[str(cls)]] = proba[:, j]
    return out


@dataclass(frozen=True)
class Scorer:
    """A loaded model and the schema of its scores."""

    est: Any
    meta: dict[str, Any]
    taxonomy: Taxonomy

    @property
    def segments(self) -> list[str]:
        """Segment ids in the taxonomy's order (the probability columns' order)."""
        return list(self.meta["segments"])

    @property
    def version(self) -> str:
        """The model version (file sha256, 16 hex)."""
        return str(self.meta["model_version"])

    @property
    def schema(self) -> pa.Schema:
        """The output schema (score_schema)."""
        return score_schema(self.meta)

    def predict(self, batch: pa.RecordBatch | pa.Table) -> np.ndarray:
        """Probabilities for a batch of users (doc, meta); a batch without meta has none."""
        return predict_batch(self.est, self.segments, _features(batch))

    def scores(self, user_ids: Any, probs: np.ndarray) -> pa.RecordBatch:
        """The output batch for users and their probabilities."""
        n, segments = probs.shape[0], self.segments
        if probs.shape[1] > 1:
            top2 = -np.partition(-probs, 1, axis=1)[:, :2]
        else:
            top2 = np.c_[probs, np.zeros(n, np.float32)]
        best = pa.array(np.argmax(probs, axis=1)) if n else pa.array([], pa.int64())
        columns = [
            user_ids,
            pa.array([self.version] * n, pa.string()),
            pa.array(segments, pa.string()).take(best),
            pa.array(top2[:, 0], pa.float32()),
            pa.array(top2[:, 0] - top2[:, 1], pa.float32()),
            *(pa.array(probs[:, j], pa.float32()) for j in range(len(segments))),
        ]
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)

    def score(self, batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch:
        """Score one batch of users."""
        _check_columns(batch.schema.names)
        ids = batch.column("user_id")
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks() if ids.num_chunks else pa.array([], pa.string())
        ids = ids.cast(pa.string())
        if not batch.num_rows:
            return self.scores(ids, np.zeros((0, len(self.segments)), np.float32))
        return self.scores(ids, self.predict(batch))


def _check_columns(names: list[str]) -> None:
    missing = [c for c in ("user_id", "doc") if c not in names]
    if missing:
        raise InputError(f"a batch of users needs columns user_id and doc (meta optional); missing {missing}")


def _features(batch: pa.RecordBatch | pa.Table) -> pa.Table:
    """The estimator's input: doc and meta as a table (meta empty when the batch has none)."""
    n = batch.num_rows
    meta = batch.column("meta") if "meta" in batch.schema.names else pa.nulls(n, pa.string())
    return pa.table({"doc": batch.column("doc"), "meta": meta})


def load_scorer(model: str | Path | bytes, taxonomy: Taxonomy | None = None) -> Scorer:
    """A Scorer for a model file or its bytes, loaded once per process (same path and file, or same bytes)."""
    key = _cache_key(model)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
    if hit is None:
        hit = Scorer(*load_model(model))
        with _LOCK:
            _CACHE[key] = hit
            while len(_CACHE) > _CACHE_SIZE:
                _CACHE.popitem(last=False)
    _check_taxonomy(model, hit.meta, taxonomy)
    return hit


def _cache_key(model: str | Path | bytes) -> tuple[Any, ...]:
    if isinstance(model, bytes):
        return ("bytes", hashlib.sha256(model).hexdigest())
    p = Path(model)
    if not p.is_file():
        raise InputError(f"model file not found: {p}")
    st = p.stat()
    return ("path", str(p.resolve()), st.st_mtime_ns, st.st_size)


def score_batches(
    batches: Iterable[pa.RecordBatch], model: str | Path | bytes | Scorer, taxonomy: Taxonomy | None = None
) -> Iterator[pa.RecordBatch]:
    """Arrow batches of users (user_id, doc, meta) -> Arrow batches of scores (score_schema), one for one."""
    scorer = model if isinstance(model, Scorer) else load_scorer(model, taxonomy)
    for batch in batches:
        yield scorer.score(batch)
