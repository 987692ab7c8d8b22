"""The `embedding` scorer: cosine between a user's mean event embedding and each segment's description."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence

import numpy as np

from ..backends.base import Embedder
from ..history import clean_text
from ..languages import detect_language
from ..prompts import Prompt
from ..schemas import Event, Taxonomy
from ..structured import Usage
from .base import ScoreResult

__all__ = ["EmbeddingScorer"]


class EmbeddingScorer:
    """Zero-shot by sentence embeddings: what a practitioner tries first, and a strong signal to combine with."""

    name = "embedding"
    stage = "embed"
    prompt: Prompt | None = None

    def __init__(
        self,
        model: Embedder,
        taxonomy: Taxonomy,
        max_chars_per_event: int = 500,
        max_events: int = 30,
        evidence_per_segment: int = 3,
        name: str = "embedding",
        route: str | None = None,
    ) -> None:
        if route not in (None, "latin", "other"):
            raise ValueError(f"route must be None, 'latin' or 'other', not {route!r}")
        self.name, self.route = name, route  # route: only Latin-script users, only the others, or everyone
        self.model, self.taxonomy = model, taxonomy
        self.backend_id, self.model_id = model.backend_id, model.model_id
        self.max_chars, self.max_events, self.n_evidence = (
            max_chars_per_event,
            max_events,
            evidence_per_segment,
        )
        self.params = {"max_chars_per_event": max_chars_per_event, "max_events": max_events}
        self._segment_texts = tuple(s.embedding_text() for s in taxonomy.segments)

    @property
    def _segment_vectors(self) -> np.ndarray:
        """The segments' vectors, embedded on first use (a scorer routed away from every user never loads its model)."""
        vectors: np.ndarray = self.model.encode_cached(self._segment_texts)
        return vectors

    def _texts(self, events: Sequence[Event]) -> list[tuple[str, str]]:
        recent = list(events)[-self.max_events :]
        out = []
        for i, e in enumerate(recent):
            text = " ".join(
                x
                for x in (
                    clean_text(e.item_title),
                    clean_text(e.item_category),
                    clean_text(e.text)[: self.max_chars],
                )
                if x
            )
            if text:
                out.append((e.item_id or f"event-{i}", text))
        return out

    def applies(self, events: Sequence[Event]) -> bool:
        """Whether the user's dominant script is one this scorer's model is routed to."""
        if self.route is None:
            return True
        # detect_language drops markup, entities and URLs itself: no need to clean the events first
        text = " ".join(x for e in list(events)[-self.max_events :] for x in (e.item_title, e.text) if x)
        latin = detect_language(text) == "latin"
        return latin if self.route == "latin" else not latin

    def request_text(self, events: Sequence[Event]) -> str:
        """Each event's text, one per line (what gets embedded)."""
        return "\n".join(f"{item}\t{text}" for item, text in self._texts(events))

    def score(self, users: Sequence[tuple[str, Sequence[Event]]]) -> Iterator[ScoreResult]:
        """Embed every event of the batch at once, then score each user."""
        per_user = [(uid, self._texts(events)) for uid, events in users]
        flat = [text for _, texts in per_user for _, text in texts]
        started = time.perf_counter()
        # no text at all (nobody routed here, or only empty histories): nothing to embed, no model to load
        vectors = self.model.encode(flat) if flat else np.zeros((0, 0), dtype=np.float32)
        # The batch is encoded at once: each user is charged its share of the time, by its number of texts.
        per_text_ms = (time.perf_counter() - started) * 1000 / max(len(flat), 1)
        tokens = self.model.count_tokens(flat)
        offset = 0
        for uid, texts in per_user:
            vecs = vectors[offset : offset + len(texts)]
            usage = Usage(
                prompt_tokens=sum(tokens[offset : offset + len(texts)]),
                latency_ms=per_text_ms * len(texts),
                transport_attempts=1,
            )
            offset += len(texts)
            request = "\n".join(f"{item}\t{text}" for item, text in texts)
            if not texts:
                yield ScoreResult(uid, None, request, error="empty history")
                continue
            yield self._one(uid, texts, vecs, request, usage)

    def _one(
        self, uid: str, texts: list[tuple[str, str]], vecs: np.ndarray, request: str, usage: Usage
    ) -> ScoreResult:
        mean = vecs.mean(axis=0)
        mean /= np.linalg.norm(mean) or 1.0
        sims = self._segment_vectors @ mean
        per_event = vecs @ self._segment_vectors.T  # events x segments
        evidence = {}
        for j, sid in enumerate(self.taxonomy.ids):
            top = np.argsort(-per_event[:, j])[: self.n_evidence]
            evidence[sid] = [texts[i][0] for i in top]
        return ScoreResult(
            uid,
            [float(x) for x in sims],
            request,
            json.dumps([float(x) for x in sims]),
            evidence=evidence,
            usage=usage,
        )
