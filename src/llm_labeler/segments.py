"""The segment stage: several scorers each give a distribution over segments; the stage combines them.

Scorers
    llm        next-token log-probabilities of each segment name after the prompt, one forward pass (local models)
    embedding  cosine between a user's mean post embedding and each segment's description (sentence-transformers)
    json       a schema-constrained generated answer (any backend; logprobs where the backend returns them)

Each scorer's raw output is cached per user (calls table). Labels are computed from raw outputs by `combine`, which
calibrates each scorer (subtracting its mean score over a batch of users removes a tiny model's label bias), z-scores
it within the user, weights, and turns the sum into probabilities with a softmax.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol

import numpy as np
from pydantic import BaseModel, BeforeValidator, Field, create_model

from .backends.base import Backend, ChoiceScorer
from .confidence import logprob_distribution, token_logprobs, vote_distribution
from .errors import OutputValidationError, TransientBackendError
from .history import clean_text, render_history
from .prompts import Prompt, load_prompt, split_prompt
from .schemas import Event, SegmentAssignment, Taxonomy
from .structured import RateLimiter, RetryPolicy, StructuredResult, Usage, call_structured, inline_refs

__all__ = [
    "EmbeddingScorer",
    "JsonScoreResult",
    "JsonScorer",
    "NextTokenScorer",
    "ScoreResult",
    "Scorer",
    "ScorerSpec",
    "combine",
    "zscore",
]


@dataclass(frozen=True)
class ScorerSpec:
    """How a scorer takes part in the combination."""

    name: str
    weight: float = 1.0
    calibration: str = "batch"  # batch | none


@dataclass
class ScoreResult:
    """One scorer's raw answer for one user."""

    user_id: str
    scores: list[float] | None  # aligned with taxonomy.ids; None when the call failed
    request: str = ""
    raw: str = ""
    evidence: dict[str, list[str]] = field(default_factory=dict)
    rationale: str = ""
    usage: Usage = field(default_factory=Usage)
    attempts: int = 1
    error: str | None = None

    def parsed(self) -> dict[str, Any]:
        """What is cached for this result."""
        return {"scores": self.scores, "evidence": self.evidence, "rationale": self.rationale}


class Scorer(Protocol):
    """Scores users against a taxonomy; results are cached by `cache_key`."""

    name: str
    stage: str
    backend_id: str
    model_id: str

    @property
    def prompt(self) -> Prompt | None:
        """The prompt file this scorer renders (None for scorers without one)."""
        ...

    def request_text(self, events: Sequence[Event]) -> str:
        """The user-specific input: the cache key is built from it."""
        ...

    def score(self, users: Sequence[tuple[str, Sequence[Event]]]) -> Iterator[ScoreResult]:
        """Score users, yielding one result per user as soon as it is ready."""
        ...


def cache_key(scorer: Scorer, taxonomy_hash: str, params: Mapping[str, Any], request: str) -> str:
    """Content address of one scorer call: same model, prompt, taxonomy, parameters and input -> same answer."""
    prompt_hash = scorer.prompt.hash if scorer.prompt else ""
    blob = json.dumps(
        [scorer.stage, scorer.model_id, prompt_hash, taxonomy_hash, dict(params), request],
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


class NextTokenScorer:
    """Reads segment scores off one forward pass of a local model, reusing the shared prefix's KV cache."""

    name = "llm"
    stage = "segment_score"

    def __init__(
        self,
        backend: Any,
        taxonomy: Taxonomy,
        prompt: Prompt | None = None,
        budget_tokens: int = 400,
        max_chars_per_event: int = 300,
    ) -> None:
        if not isinstance(backend, ChoiceScorer):
            raise TypeError(f"{backend.backend_id} cannot score choices from one forward pass")
        self.backend: Any = backend
        self.taxonomy = taxonomy
        self.backend_id, self.model_id = self.backend.backend_id, self.backend.model_id
        self.prompt = prompt or load_prompt("segment_score")
        self.prefix, self.suffix = split_prompt(self.prompt, taxonomy=taxonomy)
        self.choices = [" " + s.name for s in taxonomy.segments]
        self.budget_tokens, self.max_chars = budget_tokens, max_chars_per_event
        self.params = {"budget_tokens": budget_tokens, "max_chars_per_event": max_chars_per_event}

    def request_text(self, events: Sequence[Event]) -> str:
        """The rendered history plus the question that ends the prompt."""
        rendered = render_history(events, self.budget_tokens, self.max_chars, self.backend.count_tokens)
        return rendered.text + self.suffix if not rendered.empty else ""

    def score(self, users: Sequence[tuple[str, Sequence[Event]]]) -> Iterator[ScoreResult]:
        """One forward pass per user over the user-specific tokens only."""
        scorer: Any = self.backend
        for user_id, events in users:
            text = self.request_text(events)
            result = scorer.score_choices(self.prefix, text, self.choices)
            usage = Usage(
                prompt_tokens=result.prompt_tokens, latency_ms=result.latency_ms, transport_attempts=1
            )
            yield ScoreResult(user_id, list(result.logprobs), text, json.dumps(result.logprobs), usage=usage)

    def calibration_scores(self) -> list[float]:
        """Contextual calibration: the scores the prompt gets with an empty history."""
        scorer: Any = self.backend
        return list(scorer.score_choices(self.prefix, "(no activity)" + self.suffix, self.choices).logprobs)


class EmbeddingScorer:
    """Zero-shot by sentence embeddings: what a practitioner tries first, and a strong signal to combine with."""

    name = "embedding"
    stage = "embed"
    prompt: Prompt | None = None

    def __init__(
        self,
        model: Any,
        taxonomy: Taxonomy,
        max_chars_per_event: int = 500,
        max_events: int = 30,
        evidence_per_segment: int = 3,
    ) -> None:
        self.model, self.taxonomy = model, taxonomy
        self.backend_id, self.model_id = model.backend_id, model.model_id
        self.max_chars, self.max_events, self.n_evidence = (
            max_chars_per_event,
            max_events,
            evidence_per_segment,
        )
        self.params = {"max_chars_per_event": max_chars_per_event, "max_events": max_events}
        self._segments = self.model.encode_cached(tuple(s.embedding_text() for s in taxonomy.segments))

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

    def request_text(self, events: Sequence[Event]) -> str:
        """Each event's text, one per line (what gets embedded)."""
        return "\n".join(f"{item}\t{text}" for item, text in self._texts(events))

    def score(self, users: Sequence[tuple[str, Sequence[Event]]]) -> Iterator[ScoreResult]:
        """Embed every event of the batch at once, then score each user."""
        per_user = [(uid, self._texts(events)) for uid, events in users]
        flat = [text for _, texts in per_user for _, text in texts]
        vectors = (
            self.model.encode(flat) if flat else np.zeros((0, self._segments.shape[1]), dtype=np.float32)
        )
        offset = 0
        for uid, texts in per_user:
            vecs = vectors[offset : offset + len(texts)]
            offset += len(texts)
            request = "\n".join(f"{item}\t{text}" for item, text in texts)
            if not texts:
                yield ScoreResult(uid, None, request, error="empty history")
                continue
            yield self._one(uid, texts, vecs, request)

    def _one(self, uid: str, texts: list[tuple[str, str]], vecs: np.ndarray, request: str) -> ScoreResult:
        mean = vecs.mean(axis=0)
        mean /= np.linalg.norm(mean) or 1.0
        sims = self._segments @ mean
        per_event = vecs @ self._segments.T  # events x segments
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
            usage=Usage(transport_attempts=1),
        )


_NO_LOGPROBS = "confidence is the model's own number (use samples > 1 / --samples K for self-consistency)"


# The rationale is clipped, not length-constrained: a maxLength in the schema turns into one grammar state per
# character in llama.cpp's grammar sampling, which made answers much slower there (not benchmarked separately). An answer cut off inside it is closed and still validates (call_structured close_cut).
RATIONALE_CHARS = 300


def _clip(value: Any) -> Any:
    return value[:RATIONALE_CHARS] if isinstance(value, str) else value


def _answer_model(taxonomy: Taxonomy) -> type[BaseModel]:
    enum = taxonomy.segment_enum()
    fields: dict[str, Any] = {
        "primary": (enum, ...),
        "confidence": (float, Field(ge=0.0, le=1.0)),
        "rationale": (Annotated[str, BeforeValidator(_clip)], Field(description="one short sentence")),
    }
    if taxonomy.multi_label:
        fields["segments"] = (list[enum], Field(default_factory=list))  # type: ignore[valid-type]
    model: type[BaseModel] = create_model("SegmentAnswer", **fields)
    return model


@dataclass
class JsonScoreResult(ScoreResult):
    """A json-scorer result that also says where its confidence came from (stored with the call)."""

    confidence_source: str = "self_reported"

    def parsed(self) -> dict[str, Any]:
        """What is cached for this result, with the confidence source."""
        return {**super().parsed(), "confidence_source": self.confidence_source}


class JsonScorer:
    """A generated, schema-constrained answer: works on every backend, hosted ones included.

    Confidence comes from token logprobs normalised over the allowed segments where the backend returns them;
    otherwise it is the model's own number, or (samples > 1) the vote shares of k samples (self-consistency).
    """

    name = "json"
    stage = "segment_json"

    def __init__(
        self,
        backend: Backend,
        taxonomy: Taxonomy,
        prompt: Prompt | None = None,
        budget_tokens: int = 600,
        max_chars_per_event: int = 300,
        max_tokens: int = 120,
        policy: RetryPolicy | None = None,
        timeout: float = 60.0,
        samples: int = 1,
        limiter: RateLimiter | None = None,
        logprobs: bool | None = None,
        sample_temperature: float = 0.7,
    ) -> None:
        self.backend, self.taxonomy = backend, taxonomy
        self.backend_id, self.model_id = backend.backend_id, backend.model_id
        self.prompt = prompt or load_prompt("segment_json")
        self.budget_tokens, self.max_chars, self.max_tokens = budget_tokens, max_chars_per_event, max_tokens
        self.policy, self.timeout, self.limiter = policy or RetryPolicy(), timeout, limiter
        self.samples, self.sample_temperature = max(1, samples), sample_temperature
        can = backend.capabilities.logprobs
        self.logprobs = can if logprobs is None else (logprobs and can)
        self.notes = [] if can or not logprobs else [f"{self.backend_id} returns no logprobs: {_NO_LOGPROBS}"]
        self.answer_model = _answer_model(taxonomy)
        self.schema = inline_refs(self.answer_model.model_json_schema())
        self.params: dict[str, Any] = {
            "budget_tokens": budget_tokens,
            "max_chars_per_event": max_chars_per_event,
            "max_tokens": max_tokens,
        }
        # Only non-default options enter the cache key, so answers stored before they existed stay valid.
        if self.samples > 1:
            self.params.update(samples=self.samples, sample_temperature=sample_temperature)
        if self.logprobs:
            self.params["logprobs"] = True

    @property
    def confidence_source(self) -> str:
        """logprobs | self_consistency:K | self_reported."""
        if self.samples > 1:
            return f"self_consistency:{self.samples}"
        return "logprobs" if self.logprobs else "self_reported"

    def request_text(self, events: Sequence[Event]) -> str:
        """The full rendered prompt for this user."""
        rendered = render_history(events, self.budget_tokens, self.max_chars)
        return "" if rendered.empty else self.prompt.render(taxonomy=self.taxonomy, history=rendered.text)

    def score(self, users: Sequence[tuple[str, Sequence[Event]]]) -> Iterator[ScoreResult]:
        """One structured call per user; a user whose answer never validates gets an error result."""
        for user_id, events in users:
            yield self.score_one(user_id, self.request_text(events))

    def score_one(self, user_id: str, text: str) -> ScoreResult:
        """Ask (k times when sampling), validate, turn the answer into a score vector.

        Exhausted transient failures and invalid answers become error results carrying the raw output and what
        the attempts cost; a FatalBackendError (bad key, bad request) propagates, because retrying cannot help.
        """
        if self.samples > 1:
            return self._sampled(user_id, text)
        try:
            result = self._ask(text, 0.0, 0)
        except (OutputValidationError, TransientBackendError) as exc:
            return self._failure(user_id, text, exc)
        answer: Any = result.value
        scores, source = self._vector(answer), "self_reported"
        if self.logprobs:
            dist = logprob_distribution(
                result.raw,
                token_logprobs(result.completion and result.completion.raw) or [],
                self.taxonomy.ids,
            )
            if dist is not None:
                scores, source = dist.logprobs, "logprobs"
            else:
                source = "self_reported (no readable logprobs in the answer)"
        return JsonScoreResult(
            user_id,
            scores,
            text,
            result.raw,
            rationale=answer.rationale,
            usage=result.usage,
            attempts=result.attempts,
            confidence_source=source,
        )

    def _ask(self, text: str, temperature: float, seed: int) -> StructuredResult[Any]:
        return call_structured(
            self.backend,
            [{"role": "user", "content": text}],
            self.answer_model,
            schema=self.schema,
            max_tokens=self.max_tokens,
            timeout=self.timeout,
            policy=self.policy,
            limiter=self.limiter,
            temperature=temperature,
            seed=seed,
            top_logprobs=20 if self.logprobs and self.samples == 1 else 0,
            close_cut=True,
        )

    def _sampled(self, user_id: str, text: str) -> ScoreResult:
        usage, votes, raws, last = Usage(), [], [], None
        for k in range(self.samples):
            try:
                result = self._ask(text, self.sample_temperature, k + 1)
            except (OutputValidationError, TransientBackendError) as exc:
                usage.merge(getattr(exc, "usage", Usage()))
                last = exc
                continue
            usage.merge(result.usage)
            votes.append(result.value.primary.value)
            raws.append(result.raw)
        if not votes:
            assert last is not None
            return self._failure(user_id, text, last, usage)
        scores = vote_distribution(votes, self.taxonomy.ids)
        return JsonScoreResult(
            user_id,
            scores,
            text,
            json.dumps(raws),
            rationale=f"votes: {dict(Counter(votes))}",
            usage=usage,
            attempts=self.samples,
            confidence_source=self.confidence_source,
        )

    def _failure(self, user_id: str, text: str, exc: Exception, usage: Usage | None = None) -> ScoreResult:
        spent = usage or getattr(exc, "usage", None) or Usage()
        raw = getattr(exc, "raw_output", "") or ""
        attempts = getattr(exc, "attempts", None) or max(spent.reasks + 1, 1)
        return JsonScoreResult(
            user_id,
            None,
            text,
            raw,
            usage=spent,
            attempts=attempts,
            error=f"{type(exc).__name__}: {exc}",
            confidence_source=self.confidence_source,
        )

    def _vector(self, answer: Any) -> list[float]:
        ids = self.taxonomy.ids
        chosen = {answer.primary.value} | {s.value for s in getattr(answer, "segments", [])}
        # The named segment stays the most likely one even when the model reports a confidence below uniform.
        conf = min(max(float(answer.confidence), 1.0 / len(ids) + 0.05), 0.95)
        rest = (1.0 - conf) / max(len(ids) - 1, 1)
        return [float(np.log(conf if sid in chosen else rest)) for sid in ids]


def zscore(v: np.ndarray) -> np.ndarray:
    """Standardise a score vector within one user."""
    std = float(v.std())
    return (v - v.mean()) / (std if std > 1e-9 else 1.0)


def combine(
    taxonomy: Taxonomy,
    results: Mapping[str, ScoreResult | None],
    specs: Sequence[ScorerSpec],
    calibration: Mapping[str, np.ndarray],
    temperature: float = 2.0,
    threshold: float = 0.0,
) -> SegmentAssignment:
    """Calibrate, standardise, weight and softmax the scorers' outputs into one assignment."""
    ids = taxonomy.ids
    total, used = np.zeros(len(ids)), []
    for spec in specs:
        res = results.get(spec.name)
        if res is None or res.scores is None or spec.weight == 0:
            continue
        v = np.asarray(res.scores, dtype=np.float64)
        if spec.calibration == "batch" and spec.name in calibration:
            v = v - calibration[spec.name]
        total += spec.weight * zscore(v)
        used.append(spec.name)
    if not used:
        return SegmentAssignment(
            primary=None,
            probabilities={},
            confidence=0.0,
            abstained=True,
            rationale="no scorer produced a score",
        )
    probs = np.exp(temperature * (total - total.max()))
    probs /= probs.sum()
    order = np.argsort(-probs)
    top = int(order[0])
    confidence = float(probs[top])
    multi = (
        [ids[i] for i in order if probs[i] >= max(threshold, 0.5 * confidence)]
        if taxonomy.multi_label
        else []
    )
    abstained = confidence < threshold
    rationale = ", ".join(f"{ids[i]} {probs[i]:.2f}" for i in order[:3]) + f" (scorers: {'+'.join(used)})"
    return SegmentAssignment(
        primary=None if abstained else ids[top],
        segments=[] if abstained else (multi or [ids[top]]),
        probabilities={sid: round(float(p), 6) for sid, p in zip(ids, probs)},
        confidence=round(confidence, 6),
        abstained=abstained,
        rationale=rationale,
    )
