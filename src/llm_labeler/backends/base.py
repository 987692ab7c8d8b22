"""The backend protocols: messages (+ optional JSON schema) in, raw text and usage out; texts in, vectors out.

Backend      chat completion (every LLM backend)
ChoiceScorer scores fixed choices from one forward pass (local llama.cpp models)
Embedder     unit-length sentence embeddings (the embedding scorer's model)

Parsing, retries, caching and logging are not a backend's job (see structured.py and the labeling package).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import parse_qsl

__all__ = [
    "Backend",
    "BackendBase",
    "Capabilities",
    "ChoiceScorer",
    "ChoiceScores",
    "Completion",
    "Embedder",
    "Message",
    "Request",
    "file_sha256",
    "parse_options",
]


def file_sha256(path: Path) -> str:
    """sha256 of a model file (memoised on path, size and mtime: a multi-GB GGUF is hashed once a process)."""
    stat = path.stat()
    return _sha256_cached(str(path), stat.st_size, stat.st_mtime)


@lru_cache(maxsize=16)
def _sha256_cached(path: str, size: int, mtime: float) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def parse_options(arg: str) -> tuple[str, dict[str, str]]:
    """`MODEL?a=1&b=2` -> (MODEL, {a: 1, b: 2}): the options part of a backend id."""
    head, _, query = arg.partition("?")
    return head, dict(parse_qsl(query, keep_blank_values=True))


Message = dict[str, str]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; callers degrade explicitly (with a warning) when a feature is missing."""

    json_schema: bool = False  # constrained decoding / strict structured outputs
    json_mode: bool = False  # "valid JSON" mode without a schema
    logprobs: bool = False  # token logprobs in completions
    next_token_scores: bool = False  # implements ChoiceScorer (one forward pass, no decoding)
    concurrency: int = 1  # parallel requests that make sense
    local: bool = False  # text never leaves the machine (no PII redaction needed)


@dataclass(frozen=True)
class Request:
    """One completion request."""

    messages: Sequence[Message]
    json_schema: dict[str, Any] | None = None
    max_tokens: int = 256
    temperature: float = 0.0
    top_logprobs: int = 0
    timeout: float = 60.0
    seed: int | None = 0


@dataclass
class Completion:
    """A backend's raw answer and its usage."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    # For the first generated token: candidate token text -> logprob (where the backend returns them).
    first_token_logprobs: dict[str, float] | None = None
    finish_reason: str | None = None
    raw: Any = field(default=None, repr=False)


@dataclass
class ChoiceScores:
    """Log-probabilities of each choice as the continuation of a prompt."""

    logprobs: list[float]
    prompt_tokens: int
    latency_ms: float


RateLimits = tuple[int | None, int | None]  # requests and tokens per minute (None: no limit)


@runtime_checkable
class Backend(Protocol):
    """Anything that completes chat messages."""

    backend_id: str
    model_id: str
    capabilities: Capabilities
    limits: RateLimits
    warnings: Sequence[str]  # degradations it chose while running (e.g. a schema form the server refused)

    @property
    def price_name(self) -> str:
        """The model name a price table is searched with."""
        ...

    def complete(self, request: Request) -> Completion:
        """Send one request; raise TransientBackendError / FatalBackendError on failure."""
        ...


class BackendBase:
    """What a backend has unless it says otherwise: no rate limits, no warnings, priced by its model id."""

    backend_id: str
    model_id: str
    capabilities: Capabilities
    limits: RateLimits = (None, None)
    warnings: Sequence[str] = ()
    # True where labeling.default_specs' fixed weights were fitted for this very model (the embedded Gemma, by
    # `eval tune` on the 20 Newsgroups tune halves). Any other backend gets, unless a combination is named, the
    # label-model combination: its weights are estimated on each run's own users (no gold).
    fitted_default: bool = False

    @property
    def price_name(self) -> str:
        """The model name a price table is searched with."""
        return self.model_id


@runtime_checkable
class Embedder(Protocol):
    """A sentence-embedding model."""

    backend_id: str
    model_id: str

    def encode(self, texts: Sequence[str]) -> Any:
        """Unit-length float32 vectors of a user's texts, one row per text (a numpy array)."""
        ...

    def encode_cached(self, texts: tuple[str, ...]) -> Any:
        """Vectors of a small fixed set of texts (segment descriptions: the queries of an asymmetric model),
        memoised."""
        ...

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text (after its own truncation)."""
        ...


@runtime_checkable
class ChoiceScorer(Protocol):
    """A backend that scores fixed choices from one forward pass, reusing a cached shared prefix."""

    backend_id: str
    model_id: str

    def score_choices(self, prefix: str, text: str, choices: Sequence[str]) -> ChoiceScores:
        """Log-probability of each choice following prefix + text."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for this text."""
        ...
