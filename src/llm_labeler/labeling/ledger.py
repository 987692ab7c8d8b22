"""The books of a labeling run: every call stored as it arrives, with its tokens, cost and redactions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..profiles import Profiler, ProfileResult
from ..prompts import Prompt
from ..segments import JsonScoreResult, Scorer, ScoreResult
from ..store import CallRecord, Store
from ..store.calls import CallMeta, record_call
from ..structured import Usage
from .dispatch import Job
from .pricing import CallPricing

__all__ = ["Ledger", "Tally"]


@dataclass
class Tally:
    """Running totals of a run's calls (retries and re-asks included)."""

    calls: int = 0
    cache_hits: int = 0
    failed_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    llm_seconds: float = 0.0
    transport_attempts: int = 0
    failed_attempts: int = 0
    reasks: int = 0
    est_prompt_tokens: int = 0
    retry_wait_s: float = 0.0
    cost_usd: float = 0.0
    unpriced_calls: int = 0
    redactions: Counter[str] = field(default_factory=Counter)

    def add(self, usage: Usage) -> None:
        """Count one paid call."""
        self.calls += 1
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        self.llm_seconds += usage.latency_ms / 1000
        self.transport_attempts += usage.transport_attempts
        self.failed_attempts += usage.failed_attempts
        self.reasks += usage.reasks
        self.est_prompt_tokens += usage.estimated_prompt_tokens
        self.retry_wait_s += usage.retry_wait_s

    def add_paid(self, usage: Usage, cost: float | None, redactions: dict[str, int], failed: bool) -> None:
        """Count one paid call with its cost (None: price unknown) and redactions."""
        self.add(usage)
        self.failed_calls += failed
        self.redactions.update(redactions)
        self.cost_usd += cost or 0.0
        self.unpriced_calls += cost is None

    def hosted_stats(self) -> dict[str, Any]:
        """Transport, cost and privacy figures."""
        return {
            "transport_attempts": self.transport_attempts,
            "failed_attempts": self.failed_attempts,
            "reasks": self.reasks,
            "retry_wait_s": round(self.retry_wait_s, 3),
            "est_prompt_tokens": self.est_prompt_tokens,
            "cost_usd": round(self.cost_usd, 6) if not self.unpriced_calls else None,
            "unpriced_calls": self.unpriced_calls,
            "redactions": dict(self.redactions),
        }


class Ledger:
    """Stores each call at once (a killed run keeps it) and prices it for the budget; the one CallRecord builder."""

    def __init__(self, store: Store, run_id: str, tax_hash: str, pricing: CallPricing) -> None:
        self.store, self.run_id, self.tax_hash, self.pricing = store, run_id, tax_hash, pricing
        self.tally = Tally()
        self.call_ids: dict[str, list[str]] = {}

    def cost(self, backend_id: str, usage: Usage) -> float | None:
        """USD of one call's every attempt; other (local) scorers are free, unknown prices are None."""
        prompt = usage.prompt_tokens + usage.estimated_prompt_tokens
        return self.pricing.cost(backend_id, prompt, usage.completion_tokens)

    def record(self, scorer: Scorer, result: ScoreResult, job: Job, hit: bool) -> float | None:
        """Store one scorer call (or the cache hit that answered it); return its cost in USD (None: unknown)."""
        call = self._call(
            result.user_id,
            scorer.stage,
            job.key,
            scorer.backend_id,
            scorer.model_id,
            scorer.prompt,
            request="" if hit else result.request,
            raw=result.raw,
            parsed=None if hit else result.parsed(),
            usage=Usage() if hit else result.usage,
            attempts=0 if hit else result.attempts,
            error=result.error,
            cache_hit=hit,
        )
        if hit:
            record_call(self.store, call, CallMeta(transport_attempts=0, cost_usd=0.0))
            self.call_ids.setdefault(result.user_id, []).append(call.call_id)
            self.tally.cache_hits += 1
            return 0.0
        source = result.confidence_source if isinstance(result, JsonScoreResult) else None
        return self.record_paid(call, result.usage, job.redactions, source)

    def record_profile(
        self,
        profiler: Profiler,
        key: str,
        request: str,
        result: ProfileResult,
        parsed: Any,
        redactions: dict[str, int],
    ) -> tuple[str, float | None]:
        """Store one profile call; return its call id and cost. Profiles are not listed on the label."""
        call = self._call(
            result.user_id,
            profiler.stage,
            key,
            profiler.backend_id,
            profiler.model_id,
            profiler.prompt,
            request=request,
            raw=result.raw,
            parsed=parsed,
            usage=result.usage,
            attempts=result.attempts,
            error=result.error,
            cache_hit=False,
            with_taxonomy=False,
        )
        return call.call_id, self.record_paid(call, result.usage, redactions, link=False)

    def _call(
        self,
        user_id: str,
        stage: str,
        key: str,
        backend_id: str,
        model_id: str,
        prompt: Prompt | None,
        *,
        request: str,
        raw: str,
        parsed: Any,
        usage: Usage,
        attempts: int,
        error: str | None,
        cache_hit: bool,
        with_taxonomy: bool = True,
    ) -> CallRecord:
        return CallRecord(
            run_id=self.run_id,
            user_id=user_id,
            stage=stage,
            cache_key=key,
            backend=backend_id,
            model_id=model_id,
            prompt_name=prompt.name if prompt else "",
            prompt_version=prompt.version if prompt else "",
            prompt_hash=prompt.hash if prompt else "",
            taxonomy_hash=self.tax_hash if with_taxonomy else "",
            request=request,
            raw_output=raw,
            parsed=parsed,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_ms=usage.latency_ms,
            attempts=attempts,
            error=error,
            cache_hit=cache_hit,
        )

    def record_paid(
        self,
        call: CallRecord,
        usage: Usage,
        redactions: dict[str, int],
        source: str | None = None,
        link: bool = True,
    ) -> float | None:
        """Store a paid call with its transport figures and cost; count it (`link`: list it on the label)."""
        cost = self.cost(call.backend, usage)
        meta = CallMeta(
            transport_attempts=usage.transport_attempts,
            reasks=usage.reasks,
            est_prompt_tokens=usage.estimated_prompt_tokens,
            cost_usd=cost,
            redactions=redactions,
            confidence_source=source,
        )
        record_call(self.store, call, meta)
        if link:
            self.call_ids.setdefault(call.user_id, []).append(call.call_id)
        self.tally.add_paid(usage, cost, redactions, call.error is not None)
        return cost
