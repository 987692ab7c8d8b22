"""Eval suites: YAML files naming a dataset with gold labels, a taxonomy, prompt variants, backends and gates.

    name: 20ng_coarse
    taxonomy: ../taxonomies/20ng_coarse.yaml     # paths are relative to the suite file
    dataset:                                     # newsgroups: the 20 Newsgroups tarball, split by user
      loader: newsgroups                         #   (files: events + a gold CSV column)
      gold: coarse                               # coarse | fine | multi
      split: test                                # tune | test | all; tune on 'tune', report on 'test'
      n: 300                                     # sample size, and its seed
    prompts: [segment_score@1, segment_score@2]  # variants of the LLM prompt (name@version or a path)
    backends: [llamacpp:default]
    combinations:                                # scorer combinations; no specs = the default pipeline
      - name: default
      - name: llm-only
        specs: [{name: llm, weight: 1.0, calibration: batch}]
    thresholds: {macro_f1: 0.80}                 # floors the primary cell must clear (exit 1 otherwise)
    gate: {metrics: [accuracy, macro_f1], tolerance: 0.0}   # what --baseline may not lose

Every combination that uses the LLM runs once per prompt x backend; the embedding-only zero-shot baseline is added
when a suite does not name a baseline, and runs once.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ..errors import ConfigError
from ..segments import ScorerSpec
from ..settings import DEFAULT_BACKEND

__all__ = [
    "BASELINE_NAME",
    "DEFAULT_NAME",
    "Combination",
    "DatasetSpec",
    "GateSpec",
    "SpecModel",
    "Suite",
    "load_suite",
]

BASELINE_NAME = "embedding-only"
DEFAULT_NAME = "default"
# Names a suite may gate on or show; dotted names reach inside covered / per_segment ('per_segment.religion.f1').
METRIC_ROOTS = (
    "accuracy",
    "macro_f1",
    "micro_f1",
    "kappa",
    "coverage",
    "abstain_rate",
    "invalid_output_rate",
    "ece",
    "latency_p50_ms",
    "latency_p95_ms",
    "tokens_per_user",
    "cost_usd",
    "jaccard",
    "hamming",
    "covered",
    "per_segment",
)
# What a practitioner tries first: cosine to each segment's description, no calibration, no LLM.
BASELINE_SPECS = [ScorerSpec("embedding", 1.0, "none")]


class SpecModel(BaseModel):
    """One scorer inside a combination."""

    model_config = ConfigDict(extra="forbid")

    name: Literal["llm", "embedding", "multilingual", "json"]
    weight: float = Field(default=1.0, ge=0.0)
    calibration: Literal["batch", "none"] = "batch"

    def spec(self) -> ScorerSpec:
        """The labeling layer's ScorerSpec."""
        return ScorerSpec(self.name, self.weight, self.calibration)


class Combination(BaseModel):
    """One scorer combination (a column of the matrix); no specs means the backend's default pipeline."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.+=-]*$")
    specs: list[SpecModel] | None = None
    temperature: float | None = Field(default=None, gt=0.0)
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    budget_tokens: int | None = Field(
        default=None,
        ge=16,
        description="history token budget of the LLM scorers (default: the label default)",
    )
    embedding: str | None = Field(
        default=None, description="embedding model id of the embedding scorer (default: the label default)"
    )
    multilingual: str | None = Field(
        default=None, description="embedding model id of the multilingual scorer (default: the label default)"
    )
    backend: str | None = Field(
        default=None, description="this combination's LLM backend (default: each of the suite's backends)"
    )
    prompt: str | None = Field(
        default=None, description="this combination's LLM prompt (default: each of the suite's prompts)"
    )
    fitted: str | None = Field(
        default=None,
        description="a combination stored by `eval tune` (or 'label-model'): its specs, models and backend",
    )
    tune: str | None = Field(
        default=None,
        description="with fitted: the tune-split suite that fits it (by `eval tune`) when the store lacks it",
    )
    tune_from: str | None = Field(
        default=None, description="the tune suite's combination to fit (default: primary)"
    )
    tune_method: Literal["logloss", "label-model"] = "logloss"
    baseline: bool = False

    @property
    def uses_llm(self) -> bool:
        """Whether the combination calls the suite's LLM backend (else prompts and backends do not vary it)."""
        if self.fitted is not None and self.fitted != "label-model":
            return False  # its backend and prompt are the stored combination's own: the cell appears once
        return self.specs is None or any(s.name in ("llm", "json") and s.weight > 0 for s in self.specs)

    def scorer_specs(self) -> list[ScorerSpec] | None:
        """ScorerSpecs for LabelConfig (None: the default pipeline)."""
        return None if self.specs is None else [s.spec() for s in self.specs]


class DatasetSpec(BaseModel):
    """Where users and gold labels come from."""

    model_config = ConfigDict(extra="forbid")

    loader: Literal["newsgroups", "files"]
    gold: str = Field(
        default="coarse", description="newsgroups: coarse | fine | multi; files: the gold CSV column"
    )
    # newsgroups: default test; files: default all (a files suite that names a split is split by user, by
    # sha256(split_seed:user_id) rank, exactly like the newsgroups loader)
    split: Literal["tune", "test", "all"] | None = None
    test_fraction: float = Field(default=0.5, gt=0.0, lt=1.0)
    split_seed: int = 20
    min_posts: int = Field(default=3, ge=1)
    max_posts_per_user: int | None = Field(default=None, ge=1)
    n: int | None = Field(default=None, ge=1, description="sample size; None: every user of the split")
    seed: int = 1
    tarball: str | None = None
    events: str | None = None
    gold_csv: str | None = None
    multi_separator: str = "|"

    @model_validator(mode="after")
    def _files_need_paths(self) -> DatasetSpec:
        if self.loader == "files" and not (self.events and self.gold_csv):
            raise ValueError("the 'files' loader needs 'events' and 'gold_csv'")
        if self.loader == "newsgroups" and self.gold not in ("coarse", "fine", "multi"):
            raise ValueError(f"newsgroups gold must be coarse, fine or multi, not {self.gold!r}")
        if self.split is None:
            self.split = "test" if self.loader == "newsgroups" else "all"
        return self


class GateSpec(BaseModel):
    """What --baseline compares, and how much drop is tolerated."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "macro_f1"])
    tolerance: float = Field(default=0.0, ge=0.0)


class Suite(BaseModel):
    """An evaluation suite."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    description: str = ""
    taxonomy: str
    dataset: DatasetSpec
    prompts: list[str] = Field(default_factory=lambda: ["segment_score"], min_length=1)
    backends: list[str] = Field(default_factory=lambda: [DEFAULT_BACKEND], min_length=1)
    combinations: list[Combination] = Field(default_factory=lambda: [Combination(name=DEFAULT_NAME)])
    metrics: list[str] = Field(default_factory=lambda: ["accuracy", "macro_f1", "micro_f1", "kappa"])
    thresholds: dict[str, float] = Field(default_factory=dict)
    gate: GateSpec = Field(default_factory=lambda: GateSpec())
    primary: str | None = None
    path: str = Field(default="", exclude=True)

    @field_validator("combinations")
    @classmethod
    def _with_baseline(cls, combos: list[Combination]) -> list[Combination]:
        names = [c.name for c in combos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate combination name(s): {', '.join(dupes)}")
        if not any(c.baseline for c in combos):
            # The embedding zero-shot row is in every matrix: it is the bar the labeler has to clear.
            base = [SpecModel.model_validate(asdict(s)) for s in BASELINE_SPECS]
            combos = [*combos, Combination(name=BASELINE_NAME, specs=base, baseline=True)]
        return combos

    @model_validator(mode="after")
    def _known_metrics(self) -> Suite:
        named = [*self.metrics, *self.thresholds, *self.gate.metrics]
        unknown = [m for m in named if m.split(".")[0] not in METRIC_ROOTS]
        if unknown:
            raise ValueError(f"unknown metric(s) {', '.join(unknown)}; metrics: {', '.join(METRIC_ROOTS)}")
        return self

    @model_validator(mode="after")
    def _primary_exists(self) -> Suite:
        names = [c.name for c in self.combinations]
        if self.primary is not None and self.primary not in names:
            raise ValueError(
                f"primary {self.primary!r} is not a combination; combinations: {', '.join(names)}"
            )
        return self

    @property
    def primary_combination(self) -> str:
        """The combination whose metrics are the headline and the gate (first non-baseline by default)."""
        if self.primary:
            return self.primary
        return next((c.name for c in self.combinations if not c.baseline), self.combinations[0].name)

    def resolve(self, relative: str) -> Path:
        """A path from the suite file, relative to the suite's folder (or the repo root as a fallback)."""
        p = Path(relative).expanduser()
        if p.is_absolute():
            return p
        here = Path(self.path).resolve().parent if self.path else Path.cwd()
        for base in (here, here.parent, Path.cwd()):
            if (base / p).exists():
                return base / p
        return here / p

    def content_hash(self) -> str:
        """sha256 of the suite's canonical JSON (what was asked for, not where the file lies)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


def load_suite(path: str | Path, overrides: dict[str, Any] | None = None) -> Suite:
    """Read and validate a suite file; errors name the file and the field."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{p}: suite file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: a suite is a mapping with name, taxonomy, dataset, ...")
    data.update(overrides or {})
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(f"{p}: invalid suite: {problems}") from exc
    suite.path = str(p)
    return suite
