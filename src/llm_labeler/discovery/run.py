"""One discovery, start to finish: select -> embed (cached) -> [fit the kept segments] -> cluster -> merge ->
distinctive terms and central members -> LLM names (cached) -> merge same names -> taxonomy YAML; stored as a run."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends import get_embedder, get_llm
from ..backends.base import Backend, Embedder
from ..errors import InputError
from ..history import clean_text
from ..prompts import load_prompt
from ..schemas import Event, Taxonomy
from ..store import Store
from ..store.discovery import select_users, set_run_taxonomy
from .cluster import OUTLIER, Clustering, center, central_members, cluster_users, merge_close
from .config import DiscoverConfig, DiscoverProgress, DiscoveryResult, ProposedSegment
from .naming import NameAnswer, Naming, NoLLM
from .output import taxonomy_body, taxonomy_yaml, unique_ids
from .terms import class_tfidf
from .vectors import UserVectors, choose_embedder, user_document, user_vectors

__all__ = ["PROMPT", "discover_segments"]

PROMPT = "discover_name"
_SNIPPET_CHARS = 160


@dataclass
class _Parts:
    """What a run resolved once: users, events, models, the prompt, the kept taxonomy."""

    store: Store
    config: DiscoverConfig
    users: dict[str, str]  # user -> history_hash
    events: dict[str, list[Event]]
    embedder: Embedder
    backend: Backend | NoLLM
    kept: Taxonomy | None


def discover_segments(
    store: Store,
    config: DiscoverConfig,
    users_sql: str | None = None,
    limit: int | None = None,
    kept: Taxonomy | None = None,
    progress: Callable[[DiscoverProgress], None] | None = None,
    embedder: Embedder | None = None,
    backend: Backend | None = None,
) -> DiscoveryResult:
    """Propose a taxonomy from the selected users (`kept`: refine it, proposing segments only for users that fit
    none of its segments). Embeddings and names are cached in the store: a rerun on the same users makes no call."""
    if limit is not None and limit < 1:
        raise InputError(f"--limit must be at least 1 user, not {limit}")
    selected = dict(select_users(store, users_sql, limit))
    if not selected:
        raise InputError("no users selected: the store has none, or --users matches none")
    events = store.events_for(list(selected))
    emb = embedder or get_embedder(choose_embedder(config.embedder, events))
    namer: Backend | NoLLM = NoLLM() if config.naming == "terms" else backend or get_llm(config.backend)
    parts = _Parts(store, config, selected, events, emb, namer, kept)
    store.mark_interrupted_runs()
    prompt = load_prompt(PROMPT)
    run_config = {
        **config.as_dict(),
        "users_sql": users_sql,
        "limit": limit,
        "embedding_model": emb.model_id,
        "embedding_backend": emb.backend_id,
        "prompt": prompt.ref,
        "prompt_hash": prompt.hash,
        "from_taxonomy": kept.content_hash() if kept else None,
    }
    run_id = store.start_run(
        "discover",
        parts.backend.backend_id,
        parts.backend.model_id,
        kept.name if kept else config.name,
        kept.content_hash() if kept else "",
        run_config,
    )
    try:
        result = _execute(parts, run_id, progress or (lambda p: None))
    except BaseException as exc:
        store.finish_run(
            run_id, "failed" if isinstance(exc, Exception) else "interrupted", {"error": str(exc)}
        )
        raise
    store.finish_run(run_id, "done", result.stats)
    return result


def _execute(parts: _Parts, run_id: str, progress: Callable[[DiscoverProgress], None]) -> DiscoveryResult:
    cfg, timings = parts.config, {}
    started = time.perf_counter()
    vecs = user_vectors(parts.store, parts.embedder, parts.users, parts.events, cfg, progress)
    timings["embed_s"] = time.perf_counter() - started
    if vecs.matrix.shape[0] == 0:
        raise InputError(f"none of the {len(parts.users)} selected users has any text in their history")
    t0 = time.perf_counter()
    centred = center(vecs.matrix)
    labels, n_kept, clustering, threshold = _labels(parts, vecs, centred)
    labels, merges = merge_close(centred, labels, cfg.merge_similarity, first=n_kept)
    docs = [user_document(parts.events[u], cfg.max_events, cfg.max_chars_per_event) for u in vecs.user_ids]
    terms = class_tfidf(docs, labels, cfg.n_terms)
    timings["cluster_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    naming = Naming(
        parts.store,
        parts.backend,
        load_prompt(PROMPT),
        run_id,
        max_tokens=cfg.max_tokens,
        timeout=cfg.timeout,
        retry_failed=cfg.retry_failed,
    )
    segments = _segments(parts, vecs, labels, n_kept, terms, naming, progress)
    segments, labels, same_name = _merge_same_names(segments, labels, n_kept)
    if same_name:  # merged clusters: their terms and exemplars are recomputed (names are kept: no new call)
        terms = class_tfidf(docs, labels, cfg.n_terms)
        for c, seg in enumerate(segments):
            seg.terms = terms.get(c, [])
            seg.exemplars = _exemplar_ids(vecs, labels, c, cfg.n_exemplars)
    timings["name_s"] = time.perf_counter() - t0
    unique_ids(segments)
    if len(segments) < 2:
        raise InputError(
            f"the users form {len(segments)} segment(s); a taxonomy needs at least 2: select more users, "
            "lower --min-size or give --k"
        )
    return _result(
        parts, run_id, vecs, labels, segments, clustering, threshold, merges + same_name, naming, timings
    )


def _labels(
    parts: _Parts, vecs: UserVectors, centred: np.ndarray
) -> tuple[np.ndarray, int, Clustering | None, float | None]:
    """Cluster index of every user with a history: kept segments first (--from), then the new clusters.

    The kept segments are fitted as the embedding scorer fits them (raw vectors against their descriptions); the
    clusters are made on the centred vectors."""
    if parts.kept is None:
        clustering = cluster_users(centred, parts.config)
        return clustering.labels, 0, clustering, None
    seg_vecs = np.asarray(
        parts.embedder.encode_cached(tuple(s.embedding_text() for s in parts.kept.segments))
    )
    sims = vecs.matrix @ seg_vecs.T
    best = sims.max(axis=1)
    threshold = parts.config.min_similarity
    if threshold is None:  # clearly below the typical fit: median less one standard deviation
        threshold = float(np.median(best) - best.std())
    labels = np.where(best >= threshold, sims.argmax(axis=1), OUTLIER)
    rest = np.flatnonzero(labels == OUTLIER)
    n_kept = len(parts.kept.segments)
    if len(rest) < 2 * parts.config.min_size:
        return labels, n_kept, None, threshold
    clustering = cluster_users(center(vecs.matrix[rest]), parts.config)
    new = clustering.labels
    labels[rest] = np.where(new >= 0, new + n_kept, OUTLIER)
    return labels, n_kept, clustering, threshold


def _segments(
    parts: _Parts,
    vecs: UserVectors,
    labels: np.ndarray,
    n_kept: int,
    terms: dict[int, list[str]],
    naming: Naming,
    progress: Callable[[DiscoverProgress], None],
) -> list[ProposedSegment]:
    cfg, total = parts.config, vecs.matrix.shape[0]
    ids = [int(c) for c in np.unique(labels) if c >= 0]
    if parts.kept is not None:  # every kept segment stays, even one no user fits now
        ids = sorted(set(ids) | set(range(n_kept)))
    out: list[ProposedSegment] = []
    new = [c for c in ids if c >= n_kept]
    for c in ids:
        rows = np.flatnonzero(labels == c)
        exemplars = _exemplar_ids(vecs, labels, c, cfg.n_exemplars)
        if c < n_kept and parts.kept is not None:
            answer = _kept_answer(parts.kept, c)
        else:
            evidence = _evidence(parts, vecs, labels, c, terms, [terms.get(o, [])[:5] for o in new if o != c])
            answer = naming.name(c - n_kept, terms.get(c, []), evidence)
            progress(DiscoverProgress("name", new.index(c) + 1, len(new), naming.cache_hits))
        members = [vecs.user_ids[i] for i in rows]
        out.append(_proposed(answer, members, len(rows) / total, terms.get(c, []), exemplars))
    return out


def _proposed(
    answer: NameAnswer, members: list[str], share: float, terms: list[str], exemplars: list[str]
) -> ProposedSegment:
    return ProposedSegment(
        id=answer.id,
        name=answer.name,
        description=answer.description,
        include=answer.include,
        exclude=answer.exclude,
        members=members,
        share=share,
        terms=terms,
        exemplars=exemplars,
        named_by=answer.named_by,
        call_error=answer.error,
    )


def _kept_answer(kept: Taxonomy, index: int) -> NameAnswer:
    s = kept.segments[index]
    return NameAnswer(s.id, s.name, s.description, list(s.include), list(s.exclude), "kept", False)


def _exemplar_ids(vecs: UserVectors, labels: np.ndarray, c: int, n: int) -> list[str]:
    rows = np.flatnonzero(labels == c)
    return [vecs.user_ids[i] for i in central_members(vecs.matrix, rows, n)] if len(rows) else []


def _evidence(
    parts: _Parts,
    vecs: UserVectors,
    labels: np.ndarray,
    c: int,
    terms: dict[int, list[str]],
    others: list[list[str]],
) -> dict[str, Any]:
    """What the naming prompt shows: size, share, terms, the central members' first events, other segments."""
    rows = np.flatnonzero(labels == c)
    central = central_members(vecs.matrix, rows, max(parts.config.n_exemplars, 5))
    snippets = [_snippet(parts.events[vecs.user_ids[i]]) for i in central]
    return {
        "size": len(rows),
        "share": f"{len(rows) / vecs.matrix.shape[0]:.0%}",
        "terms": terms.get(c, []) or ["(no distinctive terms)"],
        "exemplars": [s for s in snippets if s],
        "others": [o for o in others if o][:8],
    }


def _snippet(events: Sequence[Event]) -> str:
    """A user's first two events with a text: title, and the start of the body."""
    texts = []
    for e in events:
        title, body = clean_text(e.item_title), clean_text(e.text).replace("\n", " ")
        text = f"{title} — {body}" if title and body else title or body
        if text:
            texts.append(text[:_SNIPPET_CHARS])
        if len(texts) == 2:
            break
    return " | ".join(texts)


def _merge_same_names(
    segments: list[ProposedSegment], labels: np.ndarray, n_kept: int
) -> tuple[list[ProposedSegment], np.ndarray, int]:
    """New segments the model named alike (same id or name) are one segment: the larger keeps its entry.

    Term-based names are left apart: they describe different evidence even where their top terms coincide."""
    keep: list[ProposedSegment] = []
    index: dict[str, int] = {}
    mapping: dict[int, int] = {}
    for c, seg in enumerate(segments):
        keys = {seg.id, seg.name.strip().lower()}
        target = next((index[k] for k in keys if k in index), None)
        if target is None or c < n_kept or seg.named_by != "llm" or keep[target].named_by == "terms":
            mapping[c] = len(keep)
            for k in keys:
                index.setdefault(k, len(keep))
            keep.append(seg)
            continue
        mapping[c] = target
        keep[target].members += seg.members
        keep[target].share += seg.share
    merged = len(segments) - len(keep)
    if not merged:
        return segments, labels, 0
    new_labels = np.array([mapping.get(int(x), OUTLIER) if x >= 0 else OUTLIER for x in labels])
    return keep, new_labels, merged


def _result(
    parts: _Parts,
    run_id: str,
    vecs: UserVectors,
    labels: np.ndarray,
    segments: list[ProposedSegment],
    clustering: Clustering | None,
    threshold: float | None,
    merges: int,
    naming: Naming,
    timings: dict[str, float],
) -> DiscoveryResult:
    cfg, store = parts.config, parts.store
    description = (
        parts.kept.description
        if parts.kept
        else f"Segments proposed by llm-labeler discover from {len(vecs.user_ids)} users' histories."
    )
    body = taxonomy_body(parts.kept.name if parts.kept else cfg.name, description, segments)
    tax_hash = Taxonomy.model_validate(body).content_hash()
    set_run_taxonomy(store, run_id, body["name"], tax_hash, body)
    outliers = int((labels < 0).sum())
    stats = {
        "users": len(parts.users),
        "users_with_history": len(vecs.user_ids),
        "empty_history": len(vecs.empty),
        "left_out": outliers,
        "segments": len(segments),
        "new_segments": sum(s.named_by != "kept" for s in segments),
        "k": clustering.k if clustering else 0,
        "k_chosen": clustering.how if clustering else "no new clusters",
        "silhouettes": {
            str(k): round(v, 4) for k, v in (clustering.silhouettes if clustering else {}).items()
        },
        "fit_threshold": threshold,
        "merged": merges,
        "calls": naming.calls,
        "cache_hits": naming.cache_hits,
        "failed_calls": naming.failed,
        "named_by_terms": sum(s.named_by == "terms" for s in segments),
        "embedded_users": vecs.embedded,
        "embedded_texts": vecs.texts,
        "embedding_model": parts.embedder.model_id,
        "taxonomy_hash": tax_hash,
        **{k: round(v, 3) for k, v in timings.items()},
    }
    header = [
        f"Proposed by llm-labeler discover (run {run_id}): {len(vecs.user_ids)} users with a history, "
        f"{len(vecs.empty)} left out for an empty one, {outliers} in no segment.",
        f"Clustering: {stats['k_chosen']}; embeddings {parts.embedder.model_id}; names by "
        f"{parts.backend.model_id} ({stats['named_by_terms']} of {stats['new_segments']} from top terms).",
        "Edit freely, then: llm-labeler label --taxonomy THIS_FILE, or discover --from THIS_FILE to refine.",
    ]
    assignments: dict[str, str | None] = {u: None for u in parts.users}
    for seg in segments:
        assignments.update({u: seg.id for u in seg.members})
    warnings = []
    if stats["named_by_terms"] and cfg.naming == "llm":
        warnings.append(
            f"{stats['named_by_terms']} segment(s) were named from their top terms: {parts.backend.model_id} gave "
            "no usable name (stored as failed calls); a hosted model names them better"
        )
    text = taxonomy_yaml(body, header, segments)
    return DiscoveryResult(run_id, segments, text, tax_hash, stats, assignments, warnings)
