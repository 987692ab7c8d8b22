"""A deterministic backend for orchestration tests, registered like the real ones (`fake:NAME`).

`fake:echo` answers JSON that validates against the requested schema, picking segments by keyword;
`fake:junk` answers text that never validates; `fake:flaky` fails transiently on every other call.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Any

from ..errors import TransientBackendError
from . import register
from .base import BackendBase, Capabilities, ChoiceScores, Completion, Request

__all__ = ["FakeBackend"]


class FakeBackend(BackendBase):
    """Deterministic answers; counts calls so tests can assert on caching."""

    def __init__(self, mode: str = "echo") -> None:
        self.mode = mode
        self.backend_id = f"fake:{mode}"
        self.model_id = f"fake-{mode}"
        self.capabilities = Capabilities(json_schema=True, json_mode=True, next_token_scores=True, local=True)
        self.calls = 0
        # A deterministic test double: orchestration tests keep the fixed weights; `fake:unfitted` stands for a
        # model nobody fitted a combination for (it gets the label-model default).
        self.fitted_default = mode != "unfitted"

    def count_tokens(self, text: str) -> int:
        """One token per word."""
        return len(text.split())

    def score_choices(self, prefix: str, text: str, choices: Sequence[str]) -> ChoiceScores:
        """Higher score for choices whose words appear in the text."""
        self.calls += 1
        lowered = text.lower()
        scores = [-5.0 + 3.0 * sum(w in lowered for w in _words(c)) for c in choices]
        return ChoiceScores(scores, self.count_tokens(text), 1.0)

    def complete(self, request: Request) -> Completion:
        """Answer the last user message."""
        self.calls += 1
        if self.mode == "flaky" and self.calls % 2 == 1:
            raise TransientBackendError("fake transient failure")
        prompt = request.messages[-1]["content"]
        text = "this is not json {" if self.mode == "junk" else json.dumps(_fill(request.json_schema, prompt))
        return Completion(text, self.count_tokens(prompt), self.count_tokens(text), 1.0, finish_reason="stop")


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3]


def _fill(schema: dict[str, Any] | None, prompt: str) -> Any:
    """A minimal instance of a JSON schema, deterministic in the prompt."""
    if not schema:
        return {"answer": hashlib.md5(prompt.encode()).hexdigest()[:8]}
    kind = schema.get("type")
    if "enum" in schema:
        options = schema["enum"]
        hits = [o for o in options if isinstance(o, str) and any(w in prompt.lower() for w in _words(o))]
        return (hits or options)[0]
    if "anyOf" in schema:
        return _fill(schema["anyOf"][0], prompt)
    if kind == "object":
        props = schema.get("properties", {})
        return {k: _fill(v, prompt) for k, v in props.items()}
    if kind == "array":
        return [_fill(schema.get("items", {}), prompt)]
    if kind == "number":
        return 0.5
    if kind == "integer":
        return 1
    if kind == "boolean":
        return True
    return "fake"


@register("fake")
def _factory(arg: str) -> FakeBackend:
    return FakeBackend(arg or "echo")
