"""What every scorer shares: how it takes part in the combination, its result, its protocol, its cache key."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..prompts import Prompt
from ..schemas import Event
from ..structured import Usage

__all__ = ["DEFAULT_CALIBRATION", "JsonScoreResult", "ScoreResult", "Scorer", "ScorerSpec", "cache_key"]

# The calibration each scorer gets unless told otherwise (what the default combination uses): the tiny LLM and
# the multilingual model need their batch mean subtracted (label bias; compressed E5 cosines), MiniLM cosines and
# generated answers are used as they are. Chosen on the tune halves (evals/*_tune.yaml).
DEFAULT_CALIBRATION = {"llm": "batch", "embedding": "none", "multilingual": "batch", "json": "none"}


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
    params: dict[str, Any]  # options that change the answer: part of the cache key

    @property
    def prompt(self) -> Prompt | None:
        """The prompt file this scorer renders (None for scorers without one)."""
        ...

    def request_text(self, events: Sequence[Event]) -> str:
        """The user-specific input: the cache key is built from it."""
        ...

    def applies(self, events: Sequence[Event]) -> bool:
        """Whether this scorer scores this user at all (an embedding model routed to other languages does not)."""
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


@dataclass
class JsonScoreResult(ScoreResult):
    """A json-scorer result that also says where its confidence came from (stored with the call)."""

    confidence_source: str = "self_reported"

    def parsed(self) -> dict[str, Any]:
        """What is cached for this result, with the confidence source."""
        return {**super().parsed(), "confidence_source": self.confidence_source}
