"""The `json` scorer: a schema-constrained generated answer, on every backend (hosted ones included)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, BeforeValidator, Field, create_model

from ..backends.base import Backend
from ..errors import BackendError, OutputValidationError, TransientBackendError
from ..history import render_history
from ..prompts import Prompt, answer_language_phrase, load_prompt
from ..schemas import Event, Taxonomy
from ..structured import RateLimiter, RetryPolicy, StructuredResult, Usage, call_structured, inline_refs
from .base import JsonScoreResult, ScoreResult
from .confidence import logprob_distribution, token_logprobs, vote_distribution

__all__ = ["RATIONALE_CHARS", "JsonScorer"]


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
        answer_language: str = "English",
    ) -> None:
        self.backend, self.taxonomy = backend, taxonomy
        self.answer_language = answer_language_phrase(answer_language)
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

    def applies(self, events: Sequence[Event]) -> bool:
        """Every user (any language)."""
        return True

    def request_text(self, events: Sequence[Event]) -> str:
        """The full rendered prompt for this user."""
        rendered = render_history(events, self.budget_tokens, self.max_chars)
        if rendered.empty:
            return ""
        return self.prompt.render(
            taxonomy=self.taxonomy, history=rendered.text, answer_language=self.answer_language
        )

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
                usage.merge(exc.usage or Usage())
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

    def _failure(
        self, user_id: str, text: str, exc: OutputValidationError | BackendError, usage: Usage | None = None
    ) -> ScoreResult:
        spent = usage or exc.usage or Usage()
        attempts = exc.attempts if isinstance(exc, OutputValidationError) else max(spent.reasks + 1, 1)
        raw = exc.raw_output or ""
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
