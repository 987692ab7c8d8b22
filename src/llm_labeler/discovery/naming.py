"""Segments named by the LLM from their evidence (schema-constrained), or from their terms when it cannot.

One call per segment through structured.call_structured (validate, re-ask, fail closed), content-addressed by
model, prompt and evidence, so a rerun on the same users is answered from the store. An answer that never
validates (junk, or a name that says nothing) is stored as a failed call with its raw output, and the segment
is named from its top terms instead (named_by = "terms").
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from ..backends.base import Backend
from ..errors import BackendError, OutputValidationError
from ..prompts import Prompt, answer_language_phrase
from ..store import CallRecord, Store
from ..store.calls import CallMeta, record_call
from ..store.discovery import failed_before
from ..structured import RetryPolicy, Usage, call_structured

__all__ = [
    "INVALID",
    "STAGE",
    "NameAnswer",
    "Naming",
    "NoLLM",
    "SegmentName",
    "grounded",
    "slug",
    "term_name",
]

STAGE = "discover"
INVALID = "invalid answer: "  # the error of a call whose answer never validated (a rerun does not repeat it)
# Names a small model writes when it has nothing to say: the answer is refused (re-asked, then term-named).
_COUNTS = re.compile(
    r"\d+\s*(users|%)|\bgroup \d|\bsegment \d|\bcluster"
)  # "13 users (22%)": copied evidence
_EMPTY_NAMES = {
    "fake",
    "segment",
    "cluster",
    "users",
    "user",
    "group",
    "unknown",
    "none",
    "n/a",
    "name",
    "other",
}


class SegmentName(BaseModel):
    """The model's entry for one segment (the JSON schema it is constrained to)."""

    id: str = Field(max_length=60)
    name: str = Field(min_length=2, max_length=80)
    description: str = Field(min_length=20, max_length=400)
    include: list[str] = Field(default_factory=list, max_length=3)
    exclude: list[str] = Field(default_factory=list, max_length=3)


def grounded(answer: SegmentName, terms: list[str]) -> bool:
    """Whether the entry rests on the evidence: it uses one of the segment's top terms (a word sharing its first
    five letters counts: 'encryption' for 'encrypted'). A small model that copies the prompt's example does not."""
    text = " ".join([answer.id.replace("_", " "), answer.name, answer.description, *answer.include]).lower()
    words = set(re.findall(r"\w+", text))
    for term in (t.lower() for t in terms):
        if not term.isascii() and term in text:  # CJK bigrams: a substring (no word boundaries to match on)
            return True
        if term.isascii() and any(w[:5] == term[:5] for w in words if len(w) >= min(len(term), 5)):
            return True
    return not terms


def _checker(terms: list[str]) -> Callable[[SegmentName], None]:
    def check(answer: SegmentName) -> None:
        _check(answer)
        if not grounded(answer, terms[:8]):
            raise ValueError(
                "the entry must describe this group's users from their evidence: use its distinctive terms ("
                + ", ".join(terms[:5])
                + ")"
            )

    return check


def _check(answer: SegmentName) -> None:
    """Refuse names that say nothing (re-asked with this message, as schema errors are)."""
    name = answer.name.strip().lower()
    if name in _EMPTY_NAMES or sum(ch.isalpha() for ch in name) < 2 or _COUNTS.search(name):
        raise ValueError(f"name {answer.name!r} says nothing about the segment's users' interests")
    if len(answer.description.split()) < 4 and sum(ch.isalpha() for ch in answer.description) < 12:
        raise ValueError("description must be a sentence about what the segment's users do")


@dataclass
class NameAnswer:
    """A segment's entry and where it came from."""

    id: str
    name: str
    description: str
    include: list[str]
    exclude: list[str]
    named_by: str  # llm | terms
    cache_hit: bool
    error: str | None = None


def slug(text: str, fallback: str) -> str:
    """A taxonomy id from free text: lower-case ASCII letters, digits and underscores (fallback if none)."""
    out = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:48].strip("_")
    return out or fallback


def term_name(terms: list[str], index: int) -> NameAnswer:
    """The plain name built from a segment's top terms."""
    top = terms[:3] or [f"segment {index + 1}"]
    return NameAnswer(
        id=slug("_".join(top[:2]), f"segment_{index + 1:02d}"),
        name=", ".join(top),
        description="Users whose activity is distinguished by: " + ", ".join(terms[:8] or top) + ".",
        include=[", ".join(terms[:5])] if terms else [],
        exclude=[],
        named_by="terms",
        cache_hit=False,
    )


@dataclass(frozen=True)
class NoLLM:
    """`--naming terms`: no model at all; every segment is named from its top terms."""

    backend_id: str = "none"
    model_id: str = "top-terms"


class Naming:
    """Names segments with one backend and prompt, recording every call in the run."""

    def __init__(
        self,
        store: Store,
        backend: Backend | NoLLM,
        prompt: Prompt,
        run_id: str,
        *,
        max_tokens: int,
        timeout: float,
        retry_failed: bool = False,
    ) -> None:
        self.store, self.backend, self.prompt, self.run_id = store, backend, prompt, run_id
        self.max_tokens, self.timeout, self.retry_failed = max_tokens, timeout, retry_failed
        self.calls = self.cache_hits = self.failed = 0
        store.remember_prompt(prompt.hash, prompt.name, prompt.version, prompt.template)

    def request(self, evidence: dict[str, Any]) -> str:
        """The prompt for one segment's evidence."""
        return self.prompt.render(answer_language=answer_language_phrase(None), **evidence)

    def name(self, index: int, terms: list[str], evidence: dict[str, Any]) -> NameAnswer:
        """The segment's entry: cached, asked, or (when the answer is unusable) built from its terms."""
        if isinstance(self.backend, NoLLM):
            return term_name(terms, index)
        text = self.request(evidence)
        key = self._key(text)
        hit = self._usable(self.store.cached([key]).get(key), terms)
        if hit is not None:
            self.cache_hits += 1
            self._record(key, "", "", hit.model_dump(), Usage(), 0, None, cache_hit=True)
            return _answer(hit, index, cache_hit=True)
        # The same model, prompt and evidence at temperature 0 answered junk before: it would again. The stored
        # failure is the answer (recorded as a cache hit that carries its error), unless --retry-failed.
        failed = None if self.retry_failed else failed_before(self.store, key, INVALID)
        if failed is not None:
            self.cache_hits += 1
            self._record(key, "", "", None, Usage(), 0, failed, cache_hit=True)
            fallback = term_name(terms, index)
            fallback.error, fallback.cache_hit = failed[:200], True
            return fallback
        self.calls += 1
        try:
            result = call_structured(
                self.backend,
                [{"role": "user", "content": text}],
                SegmentName,
                max_tokens=self.max_tokens,
                timeout=self.timeout,
                policy=RetryPolicy(reasks=1),
                check=_checker(terms),
                close_cut=True,
            )
        except (OutputValidationError, BackendError) as exc:
            self.failed += 1
            usage = getattr(exc, "usage", None) or Usage()
            raw = getattr(exc, "raw_output", "") or ""
            attempts = getattr(exc, "attempts", 0) or usage.transport_attempts
            kind = INVALID if isinstance(exc, OutputValidationError) else "backend error: "
            self._record(key, text, raw, None, usage, attempts, (kind + str(exc))[:500], cache_hit=False)
            fallback = term_name(terms, index)
            fallback.error = str(exc)[:200]
            return fallback
        parsed = result.value.model_dump()
        self._record(key, text, result.raw, parsed, result.usage, result.attempts, None, cache_hit=False)
        return _answer(result.value, index, cache_hit=False)

    @staticmethod
    def _usable(row: dict[str, Any] | None, terms: list[str]) -> SegmentName | None:
        """A stored answer, if it passes today's checks (one stored before a check was added may not)."""
        if row is None or not row.get("parsed"):
            return None
        try:
            answer = SegmentName.model_validate(row["parsed"])
            _checker(terms)(answer)
        except ValueError:  # pydantic's ValidationError is a ValueError
            return None
        return answer

    def _key(self, text: str) -> str:
        blob = json.dumps([STAGE, self.backend.model_id, self.prompt.hash, text], ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def _record(
        self,
        key: str,
        request: str,
        raw: str,
        parsed: Any,
        usage: Usage,
        attempts: int,
        error: str | None,
        *,
        cache_hit: bool,
    ) -> None:
        call = CallRecord(
            run_id=self.run_id,
            user_id="",
            stage=STAGE,
            cache_key=key,
            backend=self.backend.backend_id,
            model_id=self.backend.model_id,
            prompt_name=self.prompt.name,
            prompt_version=self.prompt.version,
            prompt_hash=self.prompt.hash,
            request=request,
            raw_output=raw,
            parsed=parsed,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_ms=usage.latency_ms,
            attempts=attempts,
            error=error,
            cache_hit=cache_hit,
        )
        meta = CallMeta(transport_attempts=usage.transport_attempts, reasks=usage.reasks, cost_usd=None)
        record_call(self.store, call, meta)


def _answer(value: SegmentName, index: int, cache_hit: bool) -> NameAnswer:
    hints = [h.strip() for h in value.include if h.strip()]
    return NameAnswer(
        id=slug(value.id, "") or slug(value.name, f"segment_{index + 1:02d}"),
        name=value.name.strip(),
        description=value.description.strip(),
        include=hints,
        exclude=[h.strip() for h in value.exclude if h.strip()],
        named_by="llm",
        cache_hit=cache_hit,
    )
