"""`label --dry-run` / `plan`: what a labeling run would do and cost, without calling a model.

It builds the same scorers and the same (redacted) requests as `label_users`, so its cache hits are exact; tokens
are estimated from characters (prompt) and from past calls of the same model (answer, latency), else from bounds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..history import approx_tokens
from ..schemas import Taxonomy
from ..segments import JsonScorer, Scorer
from ..store import Store
from ..store.calls import usage_history
from .combinations import resolve_combination
from .config import LabelConfig, check_limit
from .prepare import prepare
from .pricing import CallPricing

__all__ = ["Plan", "ScorerPlan", "plan_run"]

_CHAT_OVERHEAD = 8  # tokens a chat template adds around one message


@dataclass
class ScorerPlan:
    """One scorer's share of the run."""

    scorer: str
    model_id: str
    calls: int
    cache_hits: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    seconds: float | None
    basis: str  # where the answer-token and time figures come from


@dataclass
class Plan:
    """Users, cache hits, tokens, cost and time of a labeling run before it runs."""

    users: int
    empty_history: int
    scorers: list[ScorerPlan]
    redactions: dict[str, int]
    redaction: bool
    concurrency: int
    sample_prompt: str
    notes: list[str] = field(default_factory=list)
    users_within_budget: int | None = None

    @property
    def totals(self) -> dict[str, Any]:
        """Sums over scorers (cost and time are None when any part is unknown)."""
        costs = [s.cost_usd for s in self.scorers]
        secs = [s.seconds for s in self.scorers]
        return {
            "calls": sum(s.calls for s in self.scorers),
            "cache_hits": sum(s.cache_hits for s in self.scorers),
            "prompt_tokens": sum(s.prompt_tokens for s in self.scorers),
            "completion_tokens": sum(s.completion_tokens for s in self.scorers),
            "cost_usd": None if None in costs else round(sum(c or 0.0 for c in costs), 6),
            "seconds": None if None in secs else round(sum(s or 0.0 for s in secs), 1),
        }


def plan_run(
    store: Store,
    taxonomy: Taxonomy,
    config: LabelConfig,
    users: Sequence[str] | None = None,
    limit: int | None = None,
) -> Plan:
    """Plan a labeling run: the same users, scorers and requests as label_users, and no model call."""
    check_limit(limit)
    user_ids = store.user_ids(users, limit)
    setup = prepare(resolve_combination(store, config, taxonomy), taxonomy)
    events = store.events_for(user_ids)
    parts, redactions, empty, sample, per_user = [], Counter[str](), set[str](), "", Counter[str]()
    for name, scorer in setup.scorers.items():
        sends = setup.sends_text(scorer.backend_id)
        work = setup.jobs(scorer, events)
        jobs, no_history = work.jobs, work.empty
        empty |= no_history
        hits = store.cached(j.key for j in jobs.values())
        todo = [j for j in jobs.values() if j.key not in hits]
        if sends:
            for job in todo:
                redactions.update(job.redactions)
        if not sample and todo and scorer.prompt is not None:
            sample = getattr(scorer, "prefix", "") + todo[0].text  # a next-token scorer's shared prefix first
        part = _scorer_plan(
            store, name, scorer, [j.text for j in todo], len(jobs) - len(todo), setup.concurrency
        )
        part.cost_usd = _price(setup.pricing, scorer.backend_id, part)
        if part.cost_usd and todo:
            per_user.update({j.user_id: part.cost_usd / len(todo) for j in todo})
        parts.append(part)
    result = Plan(
        users=len(user_ids),
        empty_history=len(empty),
        scorers=parts,
        redactions=dict(redactions),
        redaction=setup.redactor is not None,
        concurrency=setup.concurrency,
        sample_prompt=sample,
        notes=setup.notes,
    )
    if config.max_cost is not None and result.totals["cost_usd"] is not None:
        result.users_within_budget = _within(user_ids, per_user, config.max_cost)
    return result


def _scorer_plan(
    store: Store, name: str, scorer: Scorer, texts: list[str], hits: int, concurrency: int
) -> ScorerPlan:
    past = usage_history(store, scorer.stage, scorer.model_id)
    is_json = isinstance(scorer, JsonScorer)
    samples = scorer.samples if isinstance(scorer, JsonScorer) else 1
    prompt = sum(approx_tokens(t) + _CHAT_OVERHEAD for t in texts) * samples
    if is_json:
        assert isinstance(scorer, JsonScorer)
        answer = past["completion_tokens"] if past else scorer.max_tokens
        completion = int(answer * len(texts) * samples)
    else:
        completion = 0
    seconds = None
    if past:
        seconds = past["latency_ms"] / 1000 * len(texts) * samples / (concurrency if is_json else 1)
    basis = f"median of {int(past['n'])} recent calls" if past else ("max_tokens" if is_json else "-")
    return ScorerPlan(
        scorer=name,
        model_id=scorer.model_id,
        calls=len(texts) * samples,
        cache_hits=hits,
        prompt_tokens=prompt,
        completion_tokens=completion,
        cost_usd=None,
        seconds=seconds,
        basis=basis,
    )


def _price(pricing: CallPricing, backend_id: str, part: ScorerPlan) -> float | None:
    cost = pricing.cost(backend_id, part.prompt_tokens, part.completion_tokens)
    return None if cost is None else round(cost, 6)


def _within(user_ids: Sequence[str], per_user: Counter[str], max_cost: float) -> int:
    """How many users (in run order) the expected cost fits into."""
    spent, n = 0.0, 0
    for uid in user_ids:
        spent += per_user.get(uid, 0.0)
        if spent > max_cost:
            break
        n += 1
    return n
