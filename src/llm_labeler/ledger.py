"""The books of a labeling run: every call stored as it arrives, with its tokens, cost and redactions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .dispatch import Budget, Job
from .errors import ConfigError
from .pricing import Price, PriceTable
from .segments import Scorer, ScoreResult
from .store import CallRecord, Store
from .store.hosted import CallMeta, record_call_with_meta
from .structured import Usage

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
    """Stores each call at once (a killed run keeps it) and prices it for the budget."""

    def __init__(self, store: Store, tax_hash: str, backend: Any, prices: PriceTable) -> None:
        self.store, self.tax_hash, self.backend, self.prices = store, tax_hash, backend, prices
        self.run_id = ""
        self.tally = Tally()
        self.call_ids: dict[str, list[str]] = {}

    @property
    def price_name(self) -> str:
        """The model name the price table is searched with."""
        return str(getattr(self.backend, "model_name", None) or self.backend.model_id)

    def budget(self, max_cost: float | None) -> Budget | None:
        """A budget at the backend's price; unknown prices of a hosted model are an error."""
        if max_cost is None:
            return None
        price = self.prices.get(self.price_name)
        if price is None and self.backend.capabilities.local:
            price = Price(0.0, 0.0)  # a local model costs no money: the budget never binds
        if price is None:
            raise ConfigError(
                f"--max-cost needs the price of {self.price_name!r}: add it to a price table YAML "
                "($LLM_LABELER_PRICES), e.g. `my-model: {input: 0.15, output: 0.60}` (USD per million tokens)"
            )
        return Budget(max_cost, price)

    def cost(self, backend_id: str, usage: Usage) -> float | None:
        """USD of one call's every attempt; other (local) scorers are free, unknown prices are None."""
        if backend_id != self.backend.backend_id:
            return 0.0
        prompt = usage.prompt_tokens + usage.estimated_prompt_tokens
        cost = self.prices.cost(self.price_name, prompt, usage.completion_tokens)
        return 0.0 if cost is None and self.backend.capabilities.local else cost

    def record(self, scorer: Scorer, result: ScoreResult, job: Job, hit: bool) -> float | None:
        """Store one scorer call; return its cost in USD (None: price unknown)."""
        prompt = scorer.prompt
        call = CallRecord(
            run_id=self.run_id,
            user_id=result.user_id,
            stage=scorer.stage,
            cache_key=job.key,
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
        if hit:
            record_call_with_meta(self.store, call, CallMeta(transport_attempts=0, cost_usd=0.0))
            self.call_ids.setdefault(result.user_id, []).append(call.call_id)
            self.tally.cache_hits += 1
            return 0.0
        source = getattr(result, "confidence_source", None)
        return self.record_paid(call, result.usage, job.redactions, source)

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
        record_call_with_meta(self.store, call, meta)
        if link:
            self.call_ids.setdefault(call.user_id, []).append(call.call_id)
        self.tally.add_paid(usage, cost, redactions, call.error is not None)
        return cost
