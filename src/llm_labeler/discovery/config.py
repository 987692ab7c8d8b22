"""What decides a discovery (DiscoverConfig), its progress events, and what it returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import ConfigError
from ..settings import DEFAULT_BACKEND

__all__ = [
    "K_MAX",
    "K_MIN",
    "METHODS",
    "NAMINGS",
    "DiscoverConfig",
    "DiscoverProgress",
    "DiscoveryResult",
    "ProposedSegment",
]

# --k out of this range is an error; auto searches K_MIN .. min(auto_k_max, n / min_size)
K_MIN = 2
K_MAX = 60
METHODS = ("kmeans", "density")
NAMINGS = ("llm", "terms")  # terms: no LLM call at all, every segment named from its top terms


@dataclass
class DiscoverConfig:
    """Everything that decides a proposed taxonomy; stored with the run."""

    backend: str = DEFAULT_BACKEND  # the LLM that names the segments
    naming: str = "llm"  # llm | terms
    embedder: str = "auto"  # auto: embedding:default when every user writes Latin script, else e5:default
    k: int | None = None  # None: chosen automatically (silhouette)
    method: str = "kmeans"  # kmeans | density (HDBSCAN: users in no dense region are left out, counted)
    min_size: int = 5  # smallest segment; smaller clusters are dissolved into their nearest neighbours
    auto_k_max: int = 20
    merge_similarity: float = 0.95  # centroids at least this cosine-similar are one segment
    n_terms: int = 10
    n_exemplars: int = 3
    max_events: int = 30  # per user, the most recent (as the embedding scorer)
    max_chars_per_event: int = 500
    seed: int = 0
    name: str = "discovered"
    min_similarity: float | None = None  # --from: fit threshold (None: median - 1 sd of the users' best fits)
    max_tokens: int = 150
    retry_failed: bool = False  # ask again where the same model answered the same evidence with junk before
    timeout: float = 120.0

    def __post_init__(self) -> None:
        checks = [
            ("k", self.k is None or K_MIN <= self.k <= K_MAX, f"between {K_MIN} and {K_MAX} (or auto)"),
            ("method", self.method in METHODS, f"one of {', '.join(METHODS)}"),
            ("naming", self.naming in NAMINGS, f"one of {', '.join(NAMINGS)}"),
            ("min_size", self.min_size >= 1, "at least 1 user"),
            ("auto_k_max", K_MIN <= self.auto_k_max <= K_MAX, f"between {K_MIN} and {K_MAX}"),
            ("merge_similarity", 0.0 < self.merge_similarity <= 1.0, "in (0, 1]"),
            ("n_terms", self.n_terms >= 1, "at least 1"),
            ("n_exemplars", self.n_exemplars >= 1, "at least 1"),
            ("max_events", self.max_events >= 1, "at least 1"),
            ("max_chars_per_event", self.max_chars_per_event >= 1, "at least 1"),
        ]
        for name, ok, want in checks:
            if not ok:
                raise ConfigError(f"{name} must be {want}, not {getattr(self, name)!r}")
        if self.method == "density" and self.k is not None:
            raise ConfigError("--k applies to k-means: the density method finds its own number of segments")

    def as_dict(self) -> dict[str, Any]:
        """The config as stored with the run."""
        return asdict(self)


@dataclass
class DiscoverProgress:
    """A progress event (the CLI's progress bar reads done, total and cache_hits)."""

    stage: str  # embed | name
    done: float
    total: int
    cache_hits: int = 0


@dataclass
class ProposedSegment:
    """One proposed segment and the evidence it was named from."""

    id: str
    name: str
    description: str
    include: list[str]
    exclude: list[str]
    members: list[str]  # user ids
    share: float
    terms: list[str]
    exemplars: list[str]  # the most central members' user ids
    named_by: str  # llm | terms (the model's answer was unusable) | kept (--from)
    call_error: str | None = None

    @property
    def size(self) -> int:
        """Number of member users."""
        return len(self.members)

    def segment(self) -> dict[str, Any]:
        """The segment as a taxonomy entry."""
        out: dict[str, Any] = {"id": self.id, "name": self.name, "description": self.description}
        if self.include:
            out["include"] = self.include
        if self.exclude:
            out["exclude"] = self.exclude
        return out


@dataclass
class DiscoveryResult:
    """A finished discovery: the proposed segments, the taxonomy YAML, what it did and cost."""

    run_id: str
    segments: list[ProposedSegment]
    yaml_text: str
    taxonomy_hash: str
    stats: dict[str, Any]
    assignments: dict[str, str | None] = field(default_factory=dict)  # user -> segment id (None: left out)
    warnings: list[str] = field(default_factory=list)
