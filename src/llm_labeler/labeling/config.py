"""What decides a label (LabelConfig), the progress events a run reports, and what a finished run returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..segments import ScorerSpec
from ..segments.combine import DEFAULT_TEMPERATURE
from ..settings import DEFAULT_BACKEND
from ..store import LabelRecord

__all__ = ["LabelConfig", "LabelProgress", "RunResult"]


@dataclass
class LabelConfig:
    """Everything that decides a label; stored with the run."""

    backend: str = DEFAULT_BACKEND
    scorers: list[ScorerSpec] | None = None  # None: the default combination for the backend
    embedding_backend: str = "embedding:default"
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


@dataclass
class LabelProgress:
    """A progress event for the caller's progress bar."""

    stage: str
    done: int
    total: int
    cache_hits: int = 0


@dataclass
class RunResult:
    """A finished run: labels, statistics and any degradation warnings."""

    run_id: str
    labels: list[LabelRecord]
    stats: dict[str, Any]
    warnings: list[str] = field(default_factory=list)
