"""The profile stage: the LLM writes a structured InterestProfile whose evidence must exist in the history."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from .backends.base import Backend
from .errors import BackendError, OutputValidationError
from .history import render_history
from .prompts import Prompt, answer_language_phrase, load_prompt
from .schemas import Event, InterestProfile
from .structured import RetryPolicy, Usage, call_structured, inline_refs

__all__ = ["ProfileResult", "Profiler", "check_evidence"]


@dataclass
class ProfileResult:
    """A profile (or the error that prevented one) and what it cost."""

    user_id: str
    profile: InterestProfile | None
    evidence_dropped: int = 0
    request: str = ""
    raw: str = ""
    usage: Usage = field(default_factory=Usage)
    attempts: int = 1
    error: str | None = None


def check_evidence(profile: InterestProfile, item_ids: Sequence[str], history_text: str) -> int:
    """Drop evidence that is neither an item id of the user nor a phrase from their history; return the count."""
    known = set(item_ids)
    haystack = history_text.lower()
    dropped = 0
    for interest in profile.interests:
        kept = [
            e
            for e in interest.evidence
            if e in known or (len(e.strip()) >= 4 and e.strip().lower() in haystack)
        ]
        dropped += len(interest.evidence) - len(kept)
        interest.evidence = kept
    return dropped


class Profiler:
    """Writes one InterestProfile per user, schema-constrained and bounded in tokens."""

    stage = "profile"

    def __init__(
        self,
        backend: Backend,
        prompt: Prompt | None = None,
        budget_tokens: int = 300,
        max_tokens: int = 200,
        policy: RetryPolicy | None = None,
        answer_language: str = "English",
    ) -> None:
        self.backend = backend
        self.answer_language = answer_language_phrase(answer_language)
        self.backend_id, self.model_id = backend.backend_id, backend.model_id
        self.prompt = prompt or load_prompt("profile")
        self.budget_tokens, self.max_tokens = budget_tokens, max_tokens
        self.policy = policy or RetryPolicy(reasks=1)
        self.schema = inline_refs(InterestProfile.model_json_schema())
        self.params = {"budget_tokens": budget_tokens, "max_tokens": max_tokens}

    def cache_key(self, request: str) -> str:
        """Content address of a profile call."""
        blob = json.dumps([self.stage, self.model_id, self.prompt.hash, self.params, request], sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def request(self, events: Sequence[Event]) -> tuple[str, list[str], str]:
        """(prompt text, item ids shown, history text)."""
        rendered = render_history(events, self.budget_tokens, 200, with_ids=True)
        if rendered.empty:
            return "", [], ""
        return (
            self.prompt.render(history=rendered.text, answer_language=self.answer_language),
            rendered.item_ids,
            rendered.text,
        )

    def profile(self, user_id: str, events: Sequence[Event]) -> ProfileResult:
        """Ask for the profile; invalid answers are re-asked, then recorded as failed with the raw output."""
        text, item_ids, history = self.request(events)
        try:
            result = call_structured(
                self.backend,
                [{"role": "user", "content": text}],
                InterestProfile,
                schema=self.schema,
                max_tokens=self.max_tokens,
                policy=self.policy,
            )
        except OutputValidationError as exc:
            return ProfileResult(
                user_id, None, 0, text, exc.raw_output, exc.usage or Usage(), exc.attempts, str(exc)
            )
        except BackendError as exc:
            return ProfileResult(user_id, None, 0, text, "", error=f"{type(exc).__name__}: {exc}")
        dropped = check_evidence(result.value, item_ids, history)
        return ProfileResult(user_id, result.value, dropped, text, result.raw, result.usage, result.attempts)
