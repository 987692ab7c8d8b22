"""Bulk scoring with a distilled student: streaming from DuckDB, parallel featurization, LLM fallback cascade."""

from __future__ import annotations

import multiprocessing
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..labeling import LabelConfig, LabelProgress, label_users
from ..metrics import classification_metrics
from ..schemas import Taxonomy, load_taxonomy
from ..store import Store
from ..store import student as sq
from .engine import Scorer, load_model, load_scorer, predict_batch

__all__ = [
    "FallbackReport",
    "ScoreReport",
    "load_model",
    "predict_batch",
    "score_users",
    "taxonomy_arg",
]


@dataclass
class FallbackReport:
    """What the LLM fallback did for the uncertain users."""

    backend: str
    margin: float
    sent: int
    run_id: str | None
    calls: int
    cache_hits: int
    failed_calls: int
    prompt_tokens: int
    completion_tokens: int
    llm_s: float
    wall_s: float
    replaced: int
    cost_usd: float | None = None


@dataclass
class ScoreReport:
    """A finished scoring run."""

    run_id: str
    model_version: str
    users_in_filter: int
    scored: int
    unchanged: int
    docs_rebuilt: int
    wall_s: float
    users_per_s: float
    segments: dict[str, int]
    out: str | None = None
    rows_out: int = 0
    fallback: FallbackReport | None = None
    gold: dict[str, Any] = field(default_factory=dict)
    agreement: dict[str, Any] = field(default_factory=dict)


def _score_table(scorer: Scorer, batch: Any, probs: np.ndarray, run_id: str) -> pa.Table:
    """The engine's scores plus what the store keeps beside them (history hash, probabilities list, source)."""
    scores = scorer.scores(batch.column("user_id"), probs)
    n = probs.shape[0]
    return pa.table(
        {
            "user_id": scores.column("user_id"),
            "model_version": scores.column("model_version"),
            "history_hash": batch.column("history_hash"),
            "segment": scores.column("segment"),
            "confidence": scores.column("confidence"),
            "margin": scores.column("margin"),
            "probabilities": pa.FixedSizeListArray.from_arrays(
                pa.array(probs.ravel(), pa.float32()), len(scorer.segments)
            ),
            "source": pa.array(["student"] * n, pa.string()),
            "score_run": pa.array([run_id] * n, pa.string()),
        }
    )


_FORKED: dict[str, Any] = {}  # the model, inherited by forked workers (never pickled)


def _forked_predict(batch: Any) -> np.ndarray:
    return predict_batch(_FORKED["est"], _FORKED["segments"], batch)


def _pipeline(
    est: Any, segments: list[str], reader: Any, workers: int, processes: bool = False
) -> Iterator[tuple[Any, np.ndarray]]:
    """(batch, probabilities) in order, featurizing up to `workers` batches at once.

    Threads share the model and numpy frees the GIL for most of the work; processes (forked, so the model is
    inherited rather than pickled) avoid the GIL entirely at the price of shipping each batch's text over a pipe.
    """
    if workers <= 1:
        for batch in reader:
            yield batch, predict_batch(est, segments, batch)
        return
    pool: Executor
    if processes:
        _FORKED.update(est=est, segments=segments)
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    else:
        pool = ThreadPoolExecutor(workers)
    with pool:
        pending: list[tuple[Any, Future[np.ndarray]]] = []
        for batch in reader:
            job = (
                pool.submit(_forked_predict, batch.select(["doc", "meta"]))
                if processes
                else pool.submit(predict_batch, est, segments, batch)
            )
            pending.append((batch, job))
            if len(pending) > workers:
                b, f = pending.pop(0)
                yield b, f.result()
        for b, f in pending:
            yield b, f.result()


def score_users(
    store: Store,
    model_path: str | Path,
    taxonomy: Taxonomy | None = None,
    sql_filter: str | None = None,
    out: str | Path | None = None,
    fallback: str | None = None,
    margin: float = 0.1,
    full: bool = False,
    batch_size: int = 20_000,
    workers: int = 2,
    progress: Callable[[LabelProgress], None] | None = None,
    fallback_config: LabelConfig | None = None,
    processes: bool = False,
    memory_limit: str = "256MB",
) -> ScoreReport:
    """Score every (filtered) user whose history changed since this model last scored them; Parquet on request.

    `memory_limit` caps DuckDB's buffer pool for the run: pages of user_docs read once would otherwise stay
    cached up to the connection's limit, so resident memory would grow with the number of users scored.
    """
    scorer = load_scorer(model_path, taxonomy)
    meta, tax = scorer.meta, taxonomy or scorer.taxonomy
    segments, version = scorer.segments, scorer.version
    where = sq.user_filter(store, sql_filter)
    started = time.perf_counter()
    run_id = store.start_run(
        "score",
        "student",
        version,
        tax.name,
        meta["taxonomy_hash"],
        {"model": str(model_path), "users": sql_filter, "fallback": fallback, "margin": margin, "full": full},
    )
    with sq.memory_capped(store, memory_limit):
        rebuilt = sq.refresh_docs(store)
        in_filter = sq.count_users(store, where)
        todo = sq.prepare_scores(store, version, where, full)
        counts = _run_scoring(store, scorer, run_id, where, todo, batch_size, workers, progress, processes)
    wall = time.perf_counter() - started
    report = ScoreReport(
        run_id,
        version,
        in_filter,
        todo,
        in_filter - todo,
        rebuilt,
        round(wall, 3),
        round(todo / wall, 1) if wall else 0.0,
        dict(counts),
    )
    seen = _trained_on(store, meta.get("source_run"))
    report.gold.update(_gold_figures(store, tax, version, where, seen, "student"))
    report.agreement["student"] = _agreement(store, version, where, meta.get("source_run"), tax)
    if fallback:
        config = fallback_config or LabelConfig(backend=fallback)
        report.fallback = _fallback(store, tax, version, where, config, margin)
        report.gold.update(_gold_figures(store, tax, version, where, seen, "cascade"))
        report.agreement["cascade"] = _agreement(store, version, where, meta.get("source_run"), tax)
    if out:
        report.out, report.rows_out = str(out), sq.scores_to_parquet(store, version, segments, where, out)
    store.finish_run(
        run_id, "done", {"users": todo, "wall_s": report.wall_s, "users_per_s": report.users_per_s}
    )
    return report


def _run_scoring(
    store: Store,
    scorer: Scorer,
    run_id: str,
    where: str,
    todo: int,
    batch_size: int,
    workers: int,
    progress: Callable[[LabelProgress], None] | None,
    processes: bool = False,
) -> Counter[str]:
    counts: Counter[str] = Counter()
    segments = scorer.segments
    cur, reader = sq.docs_reader(store, scorer.version, where, batch_size)
    writer = sq.write_cursor(store)  # the reader's cursor stays busy streaming; writes go through their own
    done = 0
    # Writes run on their own thread (DuckDB releases the GIL) so that featurizing the next batches overlaps
    # them; one write in flight at a time keeps memory bounded and rows in order.
    with ThreadPoolExecutor(1) as write_pool:
        written: Future[None] | None = None
        try:
            for batch, probs in _pipeline(scorer.est, segments, reader, workers, processes):
                table = _score_table(scorer, batch, probs, run_id)
                if written is not None:
                    written.result()
                written = write_pool.submit(sq.write_scores, writer, table)
                counts.update(dict(zip(*np.unique(np.argmax(probs, axis=1), return_counts=True))))
                done += batch.num_rows
                if progress:
                    progress(LabelProgress("score", done, todo))
            if written is not None:
                written.result()
        finally:
            if written is not None:
                written.exception()  # wait: never close the cursor under a running write
            cur.close()
            writer.close()
    return Counter({segments[int(k)]: int(v) for k, v in counts.items()})


def _fallback(
    store: Store, tax: Taxonomy, version: str, where: str, config: LabelConfig, margin: float
) -> FallbackReport:
    """Send users whose top-two margin is below `margin` to the LLM; its labels replace the student's."""
    uncertain = sq.uncertain_users(store, version, where, margin)
    backend = config.backend
    if not uncertain:
        return FallbackReport(backend, margin, 0, None, 0, 0, 0, 0, 0, 0.0, 0.0, 0)
    result = label_users(store, tax, config, users=uncertain, kind="fallback")
    replaced = sq.apply_llm_labels(store, version, result.run_id, tax.ids)
    s = result.stats
    return FallbackReport(
        backend,
        margin,
        len(uncertain),
        result.run_id,
        s["calls"],
        s["cache_hits"],
        s["failed_calls"],
        s["prompt_tokens"],
        s["completion_tokens"],
        s["llm_s"],
        s["wall_s"],
        replaced,
        s.get("cost_usd"),
    )


def _trained_on(store: Store, run_id: str | None) -> set[str]:
    if not run_id:
        return set()
    return store.run_users(run_id)


def _gold_figures(
    store: Store, tax: Taxonomy, version: str, where: str, seen: set[str], name: str
) -> dict[str, Any]:
    """Metrics vs the data set's gold on all scored users, and on those the student never saw a label of."""
    gold = sq.dataset_gold(store, tax.name)
    pred = sq.segments_of(store, version, where, list(gold)) if gold else {}
    out: dict[str, Any] = {}
    for key, ids in (
        (name, [u for u in gold if u in pred]),
        (f"{name} on users outside the training run", [u for u in gold if u in pred and u not in seen]),
    ):
        if ids:
            out[key] = classification_metrics([gold[u] for u in ids], [pred[u] for u in ids], tax.ids)
    return out


def _agreement(store: Store, version: str, where: str, run_id: str | None, tax: Taxonomy) -> dict[str, Any]:
    """Student (or cascade) vs the LLM labels of the model's source run, on the users both have."""
    if not run_id:
        return {}
    llm = {r["user_id"]: r["primary_segment"] for r in store.labels(run_id) if r["primary_segment"]}
    pred = sq.segments_of(store, version, where, list(llm))
    ids = [u for u in llm if u in pred]
    return classification_metrics([llm[u] for u in ids], [pred[u] for u in ids], tax.ids) if ids else {}


def taxonomy_arg(path: str | Path | None) -> Taxonomy | None:
    """The taxonomy a user named with --taxonomy, if any."""
    return load_taxonomy(path) if path else None
