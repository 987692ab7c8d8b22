"""Pydantic data shared by every layer: events, taxonomies, profiles and segment assignments."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import TaxonomyError
from .settings import bundled_path

__all__ = [
    "ABSTAIN_ID",
    "EVENT_FIELDS",
    "Abstain",
    "Event",
    "Interest",
    "InterestProfile",
    "Segment",
    "SegmentAssignment",
    "Taxonomy",
    "bundled_taxonomies",
    "load_taxonomy",
]

EVENT_FIELDS = ("user_id", "ts", "event_type", "item_id", "item_title", "item_category", "text", "rating")
ABSTAIN_ID = "unclassified"


class Event(BaseModel):
    """One thing a user did: viewed, clicked, bought, reviewed, asked, posted."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    ts: datetime | None = None
    event_type: str | None = None
    item_id: str | None = None
    item_title: str | None = None
    item_category: str | None = None
    text: str | None = None
    rating: float | None = None


class Segment(BaseModel):
    """One segment of a taxonomy."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=64)
    name: str = Field(min_length=1)
    description: str
    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)
    examples: list[str] = Field(default_factory=list)

    @field_validator("description")
    @classmethod
    def _non_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("description must not be empty")
        return value.strip()

    def embedding_text(self) -> str:
        """The text a sentence-embedding scorer compares histories with."""
        parts = [f"{self.name}: {self.description}"]
        parts += self.include + self.examples
        return " ".join(parts)


class Abstain(BaseModel):
    """The outcome used when no segment is confident enough."""

    model_config = ConfigDict(extra="forbid")

    id: str = ABSTAIN_ID
    name: str = "Unclassified"
    description: str = "Not enough evidence to place the user in any segment."


class Taxonomy(BaseModel):
    """A set of segments users are assigned to."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    multi_label: bool = False
    segments: list[Segment] = Field(min_length=2)
    abstain: Abstain = Field(default_factory=Abstain)

    @model_validator(mode="after")
    def _unique_ids(self) -> Taxonomy:
        seen: set[str] = set()
        dupes = sorted({s.id for s in self.segments if s.id in seen or seen.add(s.id)})  # type: ignore[func-returns-value]
        if dupes:
            raise ValueError(f"duplicate segment id(s): {', '.join(dupes)}")
        if self.abstain.id in seen:
            raise ValueError(f"segment id {self.abstain.id!r} is reserved for the abstain outcome")
        return self

    @property
    def ids(self) -> list[str]:
        """Segment ids in file order."""
        return [s.id for s in self.segments]

    def content_hash(self) -> str:
        """sha256 of the canonical JSON form: stored with every label."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()

    def segment_enum(self) -> type[Enum]:
        """An Enum of the segment ids, so that an invalid label cannot parse."""
        return Enum("SegmentId", {f"s{i}": sid for i, sid in enumerate(self.ids)})  # type: ignore[return-value]


def load_taxonomy(path: str | Path) -> Taxonomy:
    """Read and validate a taxonomy YAML file; errors name the file and the problem.

    A bare name that is not a file (`20ng_coarse`, `ecommerce`) means the taxonomy of that name shipped with the
    package, so an installed wheel can label without a checkout.
    """
    p = _bundled_taxonomy(Path(path))
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        shipped = ", ".join(bundled_taxonomies())
        raise TaxonomyError(
            f"{p}: taxonomy file not found (shipped taxonomies, usable by name: {shipped})"
        ) from exc
    except yaml.YAMLError as exc:
        raise TaxonomyError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise TaxonomyError(f"{p}: a taxonomy must be a mapping with 'name' and 'segments'")
    try:
        return Taxonomy.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(_describe(err) for err in exc.errors())
        raise TaxonomyError(f"{p}: invalid taxonomy: {problems}") from exc


def _bundled_taxonomy(p: Path) -> Path:
    if p.exists() or len(p.parts) != 1:
        return p
    shipped = bundled_path("taxonomies", p.name if p.suffix in (".yaml", ".yml") else f"{p.name}.yaml")
    return shipped if shipped.is_file() else p


def bundled_taxonomies() -> list[str]:
    """Names of the taxonomies shipped with the package."""
    return sorted(f.stem for f in bundled_path("taxonomies").glob("*.yaml"))


def _describe(err: Any) -> str:
    loc = ".".join(str(x) for x in err.get("loc", ()))
    msg = str(err.get("msg", "")).removeprefix("Value error, ")
    return f"{loc}: {msg}" if loc else msg


class Interest(BaseModel):
    """One interest in a profile, with the evidence it rests on."""

    topic: str = Field(max_length=80)
    weight: float = Field(ge=0.0, le=1.0)
    evidence: list[str] = Field(default_factory=list, max_length=3)


class InterestProfile(BaseModel):
    """What the LLM reads from a user's history."""

    summary: str = Field(max_length=300)
    interests: list[Interest] = Field(default_factory=list, max_length=5)


class SegmentAssignment(BaseModel):
    """The segment stage's answer for one user."""

    primary: str | None
    segments: list[str] = Field(default_factory=list)
    probabilities: dict[str, float]
    confidence: float
    abstained: bool = False
    rationale: str = ""
    evidence: list[str] = Field(default_factory=list)
