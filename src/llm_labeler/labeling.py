"""Orchestration of a labeling run: cache lookups, scorer calls, calibration, labels, provenance."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .backends import get_backend
from .backends.base import ChoiceScorer
from .errors import ConfigError
from .profiles import Profiler
from .schemas import Event, SegmentAssignment, Taxonomy
from .segments import (
    EmbeddingScorer,
    JsonScorer,
    NextTokenScorer,
    Scorer,
    ScoreResult,
    ScorerSpec,
    cache_key,
    combine,
)
from .settings import DEFAULT_BACKEND
from .store import CallRecord, LabelRecord, Store
from .structured import Usage

__all__ = ["LabelConfig", "Progress", "RunResult", "build_scorers", "default_specs", "label_users"]

MIN_BATCH_FOR_CALIBRATION = 20


@dataclass
class LabelConfig:
    """Everything that decides a label; stored with the run."""

    backend: str = DEFAULT_BACKEND
    scorers: list[ScorerSpec] | None = None  # None: the default combination for the backend
    embedding_backend: str = "embedding:default"
    profile: bool = False
    threshold: float = 0.0
    temperature: float = 2.0
    budget_tokens: int = 400
    max_chars_per_event: int = 300
    chunk_size: int = 32
    prompt_segment: str | None = None  # prompt name/version/path for the llm scorer
    prompt_json: str | None = None
    prompt_profile: str | None = None


@dataclass
class Progress:
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


def default_specs(backend: Any, embeddings: bool) -> list[ScorerSpec]:
    """The default combination: embeddings carry most weight; the LLM adds its calibrated opinion."""
    llm = ScorerSpec("llm", 0.3) if isinstance(backend, ChoiceScorer) else ScorerSpec("json", 0.5, "none")
    return [llm, ScorerSpec("embedding", 1.0)] if embeddings else [ScorerSpec(llm.name, 1.0, llm.calibration)]


def build_scorers(
    config: LabelConfig, taxonomy: Taxonomy
) -> tuple[dict[str, Scorer], list[ScorerSpec], list[str]]:
    """Instantiate the scorers a config asks for, degrading explicitly where something is missing."""
    from .backends.embedding import embeddings_available
    from .prompts import load_prompt

    notes: list[str] = []
    backend = get_backend(config.backend)
    has_emb = embeddings_available()
    specs = config.scorers or default_specs(backend, has_emb)
    if config.scorers is None and not has_emb:
        notes.append("sentence-transformers is not installed: labeling with the LLM alone (lower quality)")
    scorers: dict[str, Scorer] = {}
    for spec in specs:
        if spec.name == "llm":
            if not isinstance(backend, ChoiceScorer):
                raise ConfigError(
                    f"scorer 'llm' needs a local backend that scores choices; {config.backend} "
                    "cannot: use the 'json' scorer"
                )
            prompt = load_prompt(config.prompt_segment) if config.prompt_segment else None
            scorers["llm"] = NextTokenScorer(
                backend, taxonomy, prompt, config.budget_tokens, config.max_chars_per_event
            )
        elif spec.name == "embedding":
            if not has_emb:
                raise ConfigError("scorer 'embedding' needs the embeddings extra (sentence-transformers)")
            scorers["embedding"] = EmbeddingScorer(get_backend(config.embedding_backend), taxonomy)
        elif spec.name == "json":
            prompt = load_prompt(config.prompt_json) if config.prompt_json else None
            scorers["json"] = JsonScorer(
                backend, taxonomy, prompt, config.budget_tokens, config.max_chars_per_event
            )
        else:
            raise ConfigError(f"unknown scorer {spec.name!r}; scorers: llm, embedding, json")
    return scorers, specs, notes


@dataclass
class _Tally:
    calls: int = 0
    cache_hits: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_seconds: float = 0.0

    def add(self, usage: Usage) -> None:
        self.calls += 1
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.llm_seconds += usage.latency_ms / 1000


class _Run:
    """State of one labeling run."""

    def __init__(
        self,
        store: Store,
        taxonomy: Taxonomy,
        config: LabelConfig,
        kind: str,
        progress: Callable[[Progress], None] | None,
        run_id: str | None,
    ) -> None:
        self.store, self.taxonomy, self.config = store, taxonomy, config
        self.progress = progress or (lambda p: None)
        self.scorers, self.specs, self.notes = build_scorers(config, taxonomy)
        self.tax_hash = taxonomy.content_hash()
        self.profiler = (
            Profiler(
                get_backend(config.backend),
                None if not config.prompt_profile else _prompt(config.prompt_profile),
            )
            if config.profile
            else None
        )
        self.primary = next(iter(self.scorers.values()))
        self._remember()
        self.run_id = store.start_run(
            kind,
            config.backend,
            self.primary.model_id,
            taxonomy.name,
            self.tax_hash,
            self._config_json(),
            run_id,
        )
        self.tally = _Tally()
        self.results: dict[str, dict[str, ScoreResult]] = {}
        self.evidence: dict[str, list[str]] = {}
        self.call_ids: dict[str, list[str]] = {}
        self.empty: set[str] = set()

    def _remember(self) -> None:
        self.store.remember_taxonomy(self.tax_hash, self.taxonomy.name, self.taxonomy.model_dump(mode="json"))
        for s in [*self.scorers.values(), self.profiler]:
            prompt = getattr(s, "prompt", None)
            if prompt is not None:
                self.store.remember_prompt(prompt.hash, prompt.name, prompt.version, prompt.template)

    def _config_json(self) -> dict[str, Any]:
        cfg = asdict(self.config)
        cfg["scorers"] = [asdict(s) for s in self.specs]
        cfg["models"] = {name: s.model_id for name, s in self.scorers.items()}
        cfg["prompts"] = {name: s.prompt.ref for name, s in self.scorers.items() if s.prompt}
        return cfg

    # -- scoring ------------------------------------------------------------------------------------------
    def score_chunk(self, events: dict[str, list[Event]]) -> None:
        for name, scorer in self.scorers.items():
            self._score_with(name, scorer, events)
        if self.profiler:
            self._profiles(events)

    def _score_with(self, name: str, scorer: Scorer, events: dict[str, list[Event]]) -> None:
        params = getattr(scorer, "params", {})
        keys, todo = {}, []
        for uid, evs in events.items():
            request = scorer.request_text(evs)
            if not request:
                self.empty.add(uid)
                continue
            keys[uid] = cache_key(scorer, self.tax_hash, params, request)
        hits = self.store.cached(keys.values())
        for uid, key in keys.items():
            row = hits.get(key)
            if row is None:
                todo.append((uid, events[uid]))
                continue
            parsed = row["parsed"] or {}
            self._keep(
                name,
                ScoreResult(
                    uid,
                    parsed.get("scores"),
                    evidence=parsed.get("evidence") or {},
                    rationale=parsed.get("rationale") or "",
                ),
            )
            self._record(
                scorer, ScoreResult(uid, parsed.get("scores"), raw=row["raw_output"] or ""), key, hit=True
            )
        for result in scorer.score(todo):
            self._record(scorer, result, keys[result.user_id], hit=False)
            if result.error is None:
                self._keep(name, result)

    def _keep(self, name: str, result: ScoreResult) -> None:
        self.results.setdefault(result.user_id, {})[name] = result

    def _record(self, scorer: Scorer, result: ScoreResult, key: str, hit: bool) -> None:
        prompt = scorer.prompt
        call = CallRecord(
            run_id=self.run_id,
            user_id=result.user_id,
            stage=scorer.stage,
            cache_key=key,
            backend=scorer.backend_id,
            model_id=scorer.model_id,
            prompt_name=prompt.name if prompt else "",
            prompt_version=prompt.version if prompt else "",
            prompt_hash=prompt.hash if prompt else "",
            taxonomy_hash=self.tax_hash,
            request="" if hit else result.request,
            raw_output=result.raw,
            parsed=None if hit else result.parsed(),
            prompt_tokens=0 if hit else result.usage.prompt_tokens,
            completion_tokens=0 if hit else result.usage.completion_tokens,
            latency_ms=0.0 if hit else result.usage.latency_ms,
            attempts=0 if hit else result.attempts,
            error=result.error,
            cache_hit=hit,
        )
        self.store.record_call(call)
        self.call_ids.setdefault(result.user_id, []).append(call.call_id)
        if hit:
            self.tally.cache_hits += 1
        else:
            self.tally.add(result.usage)
            self.tally.failed_calls += result.error is not None

    def _profiles(self, events: dict[str, list[Event]]) -> None:
        assert self.profiler is not None
        for uid, evs in events.items():
            request, _, _ = self.profiler.request(evs)
            if not request:
                continue
            key = self.profiler.cache_key(request)
            row = self.store.cached([key]).get(key)
            if row is not None:
                self.tally.cache_hits += 1
                self.store.write_profile(
                    self.run_id, uid, row["call_id"], row["parsed"]["profile"], row["parsed"]["dropped"]
                )
                continue
            res = self.profiler.profile(uid, evs)
            parsed: dict[str, Any] = {
                "profile": res.profile.model_dump() if res.profile else None,
                "dropped": res.evidence_dropped,
            }
            call = CallRecord(
                self.run_id,
                uid,
                "profile",
                key,
                self.profiler.backend_id,
                self.profiler.model_id,
                self.profiler.prompt.name,
                self.profiler.prompt.version,
                self.profiler.prompt.hash,
                "",
                request,
                res.raw,
                parsed,
                res.usage.prompt_tokens,
                res.usage.completion_tokens,
                res.usage.latency_ms,
                res.attempts,
                res.error,
            )
            self.store.record_call(call)
            self.tally.add(res.usage)
            if res.profile is not None:
                self.store.write_profile(
                    self.run_id, uid, call.call_id, parsed["profile"], res.evidence_dropped
                )

    # -- labels -------------------------------------------------------------------------------------------------
    def calibration(self) -> dict[str, np.ndarray]:
        """Per scorer: the mean score over this batch of users, or over stored calls, or an empty-history prompt."""
        out: dict[str, np.ndarray] = {}
        for name, scorer in self.scorers.items():
            rows = [r[name].scores for r in self.results.values() if name in r and r[name].scores]
            if len(rows) < MIN_BATCH_FOR_CALIBRATION:
                rows += self._stored_scores(scorer)
            if len(rows) >= MIN_BATCH_FOR_CALIBRATION:
                out[name] = np.asarray(rows, dtype=np.float64).mean(axis=0)
            elif isinstance(scorer, NextTokenScorer):
                out[name] = np.asarray(scorer.calibration_scores())
        return out

    def _stored_scores(self, scorer: Scorer) -> list[list[float]]:
        return self.store.stored_scores(
            scorer.stage, scorer.model_id, self.tax_hash, scorer.prompt.hash if scorer.prompt else ""
        )

    def labels(self, user_ids: Sequence[str]) -> list[LabelRecord]:
        cal = self.calibration()
        self.cal_used = {k: [round(float(x), 4) for x in v] for k, v in cal.items()}
        out = []
        for uid in user_ids:
            results = self.results.get(uid, {})
            reason: str | None
            if not results:
                reason = "empty history" if uid in self.empty else "every scorer failed"
                out.append(
                    self._record_label(
                        uid,
                        SegmentAssignment(primary=None, probabilities={}, confidence=0.0, abstained=True),
                        reason,
                    )
                )
                continue
            assignment = combine(
                self.taxonomy, results, self.specs, cal, self.config.temperature, self.config.threshold
            )
            assignment.evidence = self._evidence(results, assignment.primary)
            reason = "below confidence threshold" if assignment.abstained else None
            out.append(self._record_label(uid, assignment, reason))
        return out

    @staticmethod
    def _evidence(results: dict[str, ScoreResult], primary: str | None) -> list[str]:
        emb = results.get("embedding")
        if emb is not None and primary:
            return list(emb.evidence.get(primary, []))
        return []

    def _record_label(self, uid: str, a: SegmentAssignment, reason: str | None) -> LabelRecord:
        prompt = self.primary.prompt
        failed = reason == "every scorer failed"
        return LabelRecord(
            run_id=self.run_id,
            user_id=uid,
            primary_segment=a.primary,
            segments=a.segments,
            probabilities=a.probabilities,
            confidence=a.confidence,
            abstained=a.abstained,
            model_id=self.primary.model_id,
            prompt_name=prompt.name if prompt else "",
            prompt_version=prompt.version if prompt else "",
            prompt_hash=prompt.hash if prompt else "",
            taxonomy_name=self.taxonomy.name,
            taxonomy_hash=self.tax_hash,
            abstain_reason=reason,
            rationale=a.rationale,
            evidence=a.evidence,
            scorers={
                "specs": [asdict(s) for s in self.specs],
                "models": {n: s.model_id for n, s in self.scorers.items()},
            },
            call_ids=self.call_ids.get(uid, []),
            error="every scorer failed" if failed else None,
        )


def _prompt(ref: str) -> Any:
    from .prompts import load_prompt

    return load_prompt(ref)


def label_users(
    store: Store,
    taxonomy: Taxonomy,
    config: LabelConfig | None = None,
    users: Sequence[str] | None = None,
    limit: int | None = None,
    kind: str = "label",
    progress: Callable[[Progress], None] | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Label users (all, a list, or the first N): cached answers are reused, new ones stored as they arrive."""
    config = config or LabelConfig()
    user_ids = store.user_ids(users, limit)
    store.mark_interrupted_runs()
    run = _Run(store, taxonomy, config, kind, progress, run_id)
    started = time.perf_counter()
    status = "failed"
    try:
        for start in range(0, len(user_ids), config.chunk_size):
            chunk = user_ids[start : start + config.chunk_size]
            run.score_chunk(store.events_for(chunk))
            run.progress(
                Progress("label", min(start + len(chunk), len(user_ids)), len(user_ids), run.tally.cache_hits)
            )
        labels = run.labels(user_ids)
        store.write_labels(labels)
        status = "done"
    except KeyboardInterrupt:
        status = "stopped"
        raise
    finally:
        stats = _stats(run, user_ids, time.perf_counter() - started)
        store.finish_run(run.run_id, status, stats)
    return RunResult(run.run_id, labels, stats, run.notes)


def _stats(run: _Run, user_ids: Sequence[str], wall: float) -> dict[str, Any]:
    t = run.tally
    n = max(len(user_ids), 1)
    return {
        "users": len(user_ids),
        "calls": t.calls,
        "cache_hits": t.cache_hits,
        "failed_calls": t.failed_calls,
        "empty_history": len(run.empty),
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "wall_s": round(wall, 3),
        "s_per_user": round(wall / n, 4),
        "llm_s": round(t.llm_seconds, 3),
        "prompt_tokens_per_user": round(t.prompt_tokens / n, 1),
        "calibration": getattr(run, "cal_used", {}),
    }


warnings.filterwarnings("ignore", message=".*TypedStorage.*")
