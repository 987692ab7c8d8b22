"""Users as vectors: each one's recent events embedded (the embedding scorer's texts and model), averaged, cached."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ..backends.base import Embedder
from ..history import clean_text
from ..languages import detect_language
from ..schemas import Event
from ..store import Store
from ..store.discovery import cached_vectors, write_vectors
from .config import DiscoverConfig, DiscoverProgress

__all__ = ["UserVectors", "choose_embedder", "event_texts", "user_document", "user_vectors"]

LATIN_MODEL, OTHER_MODEL = "embedding:default", "e5:default"
_CHUNK = 32  # users embedded (and stored) at a time: progress, and a killed run keeps its vectors


def event_texts(events: Sequence[Event], max_events: int, max_chars: int) -> list[str]:
    """The embedding scorer's text of each recent event: cleaned title, category and the start of the text."""
    out = []
    for e in list(events)[-max_events:]:
        parts = (clean_text(e.item_title), clean_text(e.item_category), clean_text(e.text)[:max_chars])
        text = " ".join(x for x in parts if x)
        if text:
            out.append(text)
    return out


def user_document(events: Sequence[Event], max_events: int, max_chars: int) -> str:
    """All of a user's recent texts as one document (for the distinctive terms of a segment)."""
    return "\n".join(event_texts(events, max_events, max_chars))


def choose_embedder(requested: str, events: Mapping[str, Sequence[Event]]) -> str:
    """`auto`: MiniLM when every user writes in a Latin script (or writes nothing), else multilingual e5 for all.

    One model for everyone: vectors of two models live in different spaces and cannot be clustered together.
    """
    if requested != "auto":
        return requested
    for evs in events.values():
        text = " ".join(x for e in evs for x in (e.item_title, e.text) if x)
        if text and detect_language(text) not in ("latin", "und"):
            return OTHER_MODEL
    return LATIN_MODEL


@dataclass
class UserVectors:
    """Unit vectors of the users that have any text, and the ones left out for an empty history."""

    user_ids: list[str]
    matrix: np.ndarray  # users x dims, unit rows
    empty: list[str]
    embedded: int  # users embedded now (the rest came from the store)
    texts: int  # texts embedded now


def user_vectors(
    store: Store,
    model: Embedder,
    users: Mapping[str, str],
    events: Mapping[str, Sequence[Event]],
    config: DiscoverConfig,
    progress: Callable[[DiscoverProgress], None],
) -> UserVectors:
    """Each user's mean event embedding (unit length), from the store where the history is unchanged."""
    params = json.dumps({"max_events": config.max_events, "max_chars": config.max_chars_per_event})
    found = cached_vectors(store, model.model_id, params, users)
    todo = [u for u in users if u not in found]
    total, n_texts, hits = len(users), 0, len(users) - len(todo)
    progress(DiscoverProgress("embed", hits, total, hits))
    for start in range(0, len(todo), _CHUNK):
        chunk = todo[start : start + _CHUNK]
        rows = _embed_chunk(model, chunk, events, config)
        n_texts += sum(n for _, n, _ in rows)
        write_vectors(
            store, model.model_id, params, [(u, users[u], n, v) for u, n, v in rows if v is not None]
        )
        found.update({u: (np.asarray(v, dtype=np.float32), n) for u, n, v in rows if v is not None})
        progress(DiscoverProgress("embed", hits + start + len(chunk), total, hits))
    kept = [u for u in users if u in found]
    empty = [u for u in users if u not in found]
    dims = next(iter(found.values()))[0].shape[0] if found else 0
    matrix = np.stack([found[u][0] for u in kept]) if kept else np.zeros((0, dims), dtype=np.float32)
    return UserVectors(kept, matrix, empty, len(todo), n_texts)


def _embed_chunk(
    model: Embedder, chunk: Sequence[str], events: Mapping[str, Sequence[Event]], config: DiscoverConfig
) -> list[tuple[str, int, np.ndarray | None]]:
    per_user = [event_texts(events[u], config.max_events, config.max_chars_per_event) for u in chunk]
    flat = [t for texts in per_user for t in texts]
    vectors = np.asarray(model.encode(flat)) if flat else np.zeros((0, 0), dtype=np.float32)
    out: list[tuple[str, int, np.ndarray | None]] = []
    offset = 0
    for uid, texts in zip(chunk, per_user):
        if not texts:
            out.append((uid, 0, None))
            continue
        mean = vectors[offset : offset + len(texts)].mean(axis=0)
        offset += len(texts)
        out.append((uid, len(texts), mean / (np.linalg.norm(mean) or 1.0)))
    return out
