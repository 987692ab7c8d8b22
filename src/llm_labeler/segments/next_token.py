"""The `llm` scorer: next-token log-probabilities of each segment name after the prompt (local models)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

from ..backends.base import ChoiceScorer
from ..history import render_history
from ..prompts import Prompt, load_prompt, split_prompt
from ..schemas import Event, Taxonomy
from ..structured import Usage
from .base import ScoreResult

__all__ = ["NextTokenScorer", "choice_letters"]

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def choice_letters(n: int) -> list[str]:
    """One single-token label per segment: A..Z, then 27, 28, ... for taxonomies longer than the alphabet."""
    return [_LETTERS[i] if i < len(_LETTERS) else str(i + 1) for i in range(n)]


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
        letters = choice_letters(len(taxonomy.segments))
        self.prefix, self.suffix = split_prompt(self.prompt, taxonomy=taxonomy, letters=letters)
        chat_frame = getattr(backend, "chat_frame", None)  # local models with a chat template
        frame = chat_frame() if self.prompt.options.get("chat") and chat_frame else None
        self.framed = frame is not None
        if frame is not None:  # the prompt is the user turn; the answer is the assistant's first token
            self.prefix, self.suffix = frame[0] + self.prefix, self.suffix + frame[1]
        if self.prompt.options.get("choices") == "letters":
            # After a chat frame the answer starts a turn (no space); after plain text it follows "...only." + " ".
            self.choices = [("" if frame is not None else " ") + c for c in letters]
        else:
            self.choices = [" " + s.name for s in taxonomy.segments]
        self.budget_tokens, self.max_chars = budget_tokens, max_chars_per_event
        self.params = {"budget_tokens": budget_tokens, "max_chars_per_event": max_chars_per_event}

    def applies(self, events: Sequence[Event]) -> bool:
        """Every user (any language)."""
        return True

    def request_text(self, events: Sequence[Event]) -> str:
        """The rendered history plus the question that ends the prompt."""
        rendered = render_history(events, self.budget_tokens, self.max_chars, self.backend.count_tokens)
        if rendered.empty:
            return ""
        # inside a chat frame, a user's "<|im_end|>" is text, not the end of the turn
        text = self.backend.strip_control(rendered.text) if self.framed else rendered.text
        return text + self.suffix

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
