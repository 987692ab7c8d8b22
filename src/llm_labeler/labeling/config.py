"""What decides a label (LabelConfig), the progress events a run reports, and what a finished run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError, InputError
from ..segments import ScorerSpec
from ..segments.combine import DEFAULT_TEMPERATURE
from ..settings import DEFAULT_BACKEND
from ..store import LabelRecord

__all__ = ["LabelConfig", "LabelProgress", "RunResult", "check_limit"]


@dataclass
class LabelConfig:
    """Everything that decides a label; stored with the run."""

    backend: str = DEFAULT_BACKEND
    scorers: list[ScorerSpec] | None = None  # None: the default combination for the backend
    embedding_backend: str = "embedding:default"  # the English embedding model (Latin-script users)
    multilingual_backend: str = "e5:default"  # the embedding model for users of every other script
    # A named combination: one stored by `eval tune` (its specs, temperature, models and prompt replace these
    # fields), or "label-model" (weights from the scorers' agreement on this run's users).
    combination: str | None = None
    # Embedding and multilingual scorers split users by script (Latin / other); off: both score everyone.
    route_by_script: bool = True
    profile: bool = False
    threshold: float = 0.0
    temperature: float = (
        DEFAULT_TEMPERATURE  # softmax sharpness of the combined z-scores: moves confidences only
    )
    budget_tokens: int = 400
    max_chars_per_event: int = 300
    chunk_size: int = 32
    prompt_segment: str | None = None  # prompt name/version/path for the llm scorer
    prompt_json: str | None = None
    prompt_profile: str | None = None
    # The language of generated rationales and profiles: English, 'user' (the language of the user's activity),
    # or a language named as given.
    answer_language: str = "English"
    # Hosted backends: parallel calls, pacing, budget, privacy, confidence.
    concurrency: int = 1
    rpm: int | None = None  # requests per minute (default: the backend id's ?rpm=)
    tpm: int | None = None  # tokens per minute (default: the backend id's ?tpm=)
    max_cost: float | None = None  # USD; the run stops before a call could cross it
    prices: str | None = None  # price table YAML (default: built-in + $LLM_LABELER_PRICES)
    redact: bool | None = None  # None: on for backends that are not local
    redact_patterns: dict[str, str] = field(default_factory=dict)  # extra name -> regex
    samples: int = 1  # >1: k-sample self-consistency for the json scorer
    max_tokens: int = 120  # bound on each generated answer
    timeout: float = 60.0  # seconds per HTTP call

    def __post_init__(self) -> None:
        checks = [
            ("threshold", 0.0 <= self.threshold <= 1.0, "a confidence between 0 and 1"),
            ("temperature", self.temperature > 0, "greater than 0"),
            ("budget_tokens", self.budget_tokens >= 1, "at least 1 token"),
            ("max_chars_per_event", self.max_chars_per_event >= 1, "at least 1"),
            ("chunk_size", self.chunk_size >= 1, "at least 1"),
            ("concurrency", self.concurrency >= 1, "at least 1"),
            ("samples", self.samples >= 1, "at least 1"),
            ("max_tokens", self.max_tokens >= 1, "at least 1"),
            ("timeout", self.timeout > 0, "greater than 0 seconds"),
            ("max_cost", self.max_cost is None or self.max_cost >= 0, "a USD amount of 0 or more"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ConfigError(f"{name} must be {want}, not {getattr(self, name)!r}")


def check_limit(limit: int | None) -> None:
    """A user limit is a positive count (None: every user)."""
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1 user, not {limit} (leave it out to label every user)")


@dataclass
class LabelProgress:
    """A progress event for the caller's progress bar."""

    stage: str
    done: float  # users answered; fractional while a chunk is between its scorers
    total: int
    cache_hits: int = 0


@dataclass
class RunResult:
    """A finished run: labels, statistics and any degradation warnings."""

    run_id: str
    labels: list[LabelRecord]
    stats: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
    # user -> scorer -> raw scores (as the scorer returned them, before calibration): what `eval tune` fits on
    scores: dict[str, dict[str, list[float]]] = field(default_factory=dict)
