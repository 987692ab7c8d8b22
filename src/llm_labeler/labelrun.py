"""One labeling run: cache lookups, scorer calls, PII redaction, budget, calibration and labels.

The generated (json) scorer's calls go through a Dispatcher (concurrent, within the budget); every call is stored
by the Ledger as it arrives, so a killed run keeps what it paid for and a rerun pays for none of it again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .backends import get_backend
from .dispatch import Budget, Dispatcher, Job, worst_case_tokens
from .errors import BackendError, FatalBackendError
from .ledger import Ledger
from .pricing import load_prices
from .profiles import Profiler
from .prompts import load_prompt
from .redaction import Redactor, load_patterns
from .schemas import Event, SegmentAssignment, Taxonomy
from .segments import (
    JsonScorer,
    JsonScoreResult,
    NextTokenScorer,
    Scorer,
    ScoreResult,
    ScorerSpec,
    cache_key,
    combine,
)
from .store import CallRecord, LabelRecord, Store
from .structured import Usage

if TYPE_CHECKING:
    from .labeling import LabelConfig

__all__ = ["LabelRun", "make_redactor", "prepare_jobs", "redact_events"]

MIN_BATCH_FOR_CALIBRATION = 20
_ABORT_STATUSES = {401, 403, 404}  # a wrong key, permission or model name fails every call: stop at the first
_ABORT_AFTER = 5  # consecutive rejected requests (any 4xx) mean the requests themselves are wrong: stop


def make_redactor(config: LabelConfig, backend: Any) -> Redactor | None:
    """PII redaction: on when asked, or by default when the backend sends text off this machine."""
    on = config.redact if config.redact is not None else not backend.capabilities.local
    return Redactor({**load_patterns(), **config.redact_patterns}) if on else None


def prepare_jobs(
    scorer: Scorer, events: dict[str, list[Event]], tax_hash: str, redactor: Redactor | None
) -> tuple[dict[str, Job], set[str]]:
    """Each user's request text (redacted when a redactor is given) and cache key; users with no history."""
    params = getattr(scorer, "params", {})
    jobs, empty = {}, set()
    for uid, evs in events.items():
        request = scorer.request_text(evs)
        if not request:
            empty.add(uid)
            continue
        counts: dict[str, int] = {}
        if redactor is not None:
            done = redactor.redact(request)
            request, counts = done.text, done.counts
        jobs[uid] = Job(uid, request, cache_key(scorer, tax_hash, params, request), counts)
    return jobs, empty


def redact_events(redactor: Redactor, evs: list[Event]) -> tuple[list[Event], dict[str, int]]:
    """Events with PII replaced in every text field, and the counts per kind."""
    counts: Counter[str] = Counter()
    out = []
    for e in evs:
        update = {}
        for fld in ("item_title", "item_category", "text"):
            value = getattr(e, fld)
            if value:
                done = redactor.redact(value)
                update[fld] = done.text
                counts.update(done.counts)
        out.append(e.model_copy(update=update))
    return out, dict(counts)


class LabelRun:
    """State of one labeling run."""

    def __init__(
        self,
        store: Store,
        taxonomy: Taxonomy,
        config: LabelConfig,
        built: tuple[dict[str, Scorer], list[ScorerSpec], list[str]],
        kind: str,
        run_id: str | None,
    ) -> None:
        self.store, self.taxonomy, self.config = store, taxonomy, config
        self.scorers, self.specs, self.notes = built
        self.backend = get_backend(config.backend)
        self.tax_hash = taxonomy.content_hash()
        self.ledger = Ledger(store, self.tax_hash, self.backend, load_prices(config.prices))
        self.redactor = make_redactor(config, self.backend)
        concurrency = max(1, min(config.concurrency, self.backend.capabilities.concurrency))
        self.dispatcher = Dispatcher(concurrency, self.ledger.budget(config.max_cost))
        self.unreached: set[str] = set()
        self.fatal: FatalBackendError | None = None
        self.rejected_in_a_row = 0
        self.profiler = (
            Profiler(self.backend, load_prompt(config.prompt_profile) if config.prompt_profile else None)
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
        self.ledger.run_id = self.run_id
        self.tally = self.ledger.tally
        self.results: dict[str, dict[str, ScoreResult]] = {}
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

    @property
    def budget(self) -> Budget | None:
        """The run's cost budget (None: unlimited)."""
        return self.dispatcher.budget

    @property
    def stopped_at(self) -> Job | None:
        """The first job the budget could not hold (None: not stopped)."""
        return self.dispatcher.stopped_at

    # -- scoring ------------------------------------------------------------------------------------------
    def score_chunk(self, events: dict[str, list[Event]]) -> None:
        """Every scorer (and the profiler) over one chunk of users."""
        for name, scorer in self.scorers.items():
            self._score_with(name, scorer, events)
        if self.profiler:
            self._profiles(events)

    def _score_with(self, name: str, scorer: Scorer, events: dict[str, list[Event]]) -> None:
        redactor = self.redactor if self._sends_text(scorer) else None
        jobs, empty = prepare_jobs(scorer, events, self.tax_hash, redactor)
        self.empty |= empty
        hits = self.store.cached(j.key for j in jobs.values())
        todo = []
        for uid, job in jobs.items():
            row = hits.get(job.key)
            if row is None:
                todo.append(job)
                continue
            parsed = row["parsed"] or {}
            self._keep(name, _from_cache(uid, parsed))
            hit = ScoreResult(uid, parsed.get("scores"), raw=row["raw_output"] or "")
            self.ledger.record(scorer, hit, job, hit=True)
        if isinstance(scorer, JsonScorer):
            self._dispatch(name, scorer, todo)
            return
        for result in scorer.score([(job.user_id, events[job.user_id]) for job in todo]):
            self.ledger.record(scorer, result, jobs[result.user_id], hit=False)
            if result.error is None:
                self._keep(name, result)

    def _sends_text(self, scorer: Scorer) -> bool:
        return scorer.backend_id == self.backend.backend_id and not self.backend.capabilities.local

    def _dispatch(self, name: str, scorer: JsonScorer, todo: list[Job]) -> None:
        """Run the json scorer's calls (concurrently, within the budget); commit each as it arrives."""

        def worst(job: Job) -> float:
            inp, outp = worst_case_tokens(job.text, scorer.max_tokens, scorer.policy, scorer.samples)
            return self.budget.price.cost(inp, outp) if self.budget else 0.0

        def call(job: Job) -> ScoreResult:
            return scorer.score_one(job.user_id, job.text)

        for job, result, reserved in self.dispatcher.run(todo, call, worst):
            if isinstance(result, BackendError):
                result = self._fatal(job, result)
            else:
                self.rejected_in_a_row = 0
            cost = self.ledger.record(scorer, result, job, hit=False)
            if self.budget is not None:
                self.budget.settle(reserved, cost or 0.0)
            if result.error is None:
                self._keep(name, result)
        self.unreached |= {j.user_id for j in self.dispatcher.unstarted}
        if self.stopped_at is not None and self.stopped_at.user_id in self.unreached:
            self.notes.append(self._budget_note(self.stopped_at))
        if self.fatal is not None:
            raise self.fatal

    def _fatal(self, job: Job, exc: BackendError) -> ScoreResult:
        """A call that must not be retried: stored as failed; auth/permission/not-found stops the run, and so do
        five rejected requests in a row (a transport failure that outlived its retries is not a rejection)."""
        rejected = isinstance(exc, FatalBackendError)
        self.rejected_in_a_row = self.rejected_in_a_row + 1 if rejected else 0
        status = getattr(exc, "status_code", None)
        if isinstance(exc, FatalBackendError) and (
            status in _ABORT_STATUSES or self.rejected_in_a_row >= _ABORT_AFTER
        ):
            if status not in _ABORT_STATUSES:
                exc = FatalBackendError(
                    f"{_ABORT_AFTER} requests in a row were rejected, stopping; the last: {exc}"
                )
            self.fatal = self.fatal or exc
            self.dispatcher.halt()
        usage = getattr(exc, "usage", Usage())
        return ScoreResult(job.user_id, None, job.text, "", usage=usage, error=f"{type(exc).__name__}: {exc}")

    def _budget_note(self, stopped: Job) -> str:
        assert self.budget is not None
        return (
            f"stopped by --max-cost ${self.budget.max_cost:.4f} before user {stopped.user_id}: "
            f"${self.budget.spent:.4f} spent and its worst case would cross the budget; "
            "rerun with a higher --max-cost to continue (stored answers are not paid again)"
        )

    def _keep(self, name: str, result: ScoreResult) -> None:
        # The call (prompt text, raw answer) is already stored; labels need only scores, evidence, rationale. Keeping
        # the texts would hold every user's rendered history until the end of the run (3.8 KB/user on 20NG).
        slim = replace(result, request="", raw="") if result.request or result.raw else result
        self.results.setdefault(result.user_id, {})[name] = slim

    # -- profiles -----------------------------------------------------------------------------------------------
    def _profiles(self, events: dict[str, list[Event]]) -> None:
        assert self.profiler is not None
        for uid, evs in events.items():
            if uid in self.unreached:
                continue
            sent, counts = self._outgoing(evs)
            request, _, _ = self.profiler.request(sent)
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
            reserved = self._reserve_profile(uid, request)
            if reserved is None:
                return
            self._profile_one(uid, sent, key, request, counts, reserved)

    def _outgoing(self, evs: list[Event]) -> tuple[list[Event], dict[str, int]]:
        """The events as the profile call may send them (redacted when they leave the machine)."""
        if self.redactor is None or self.backend.capabilities.local:
            return evs, {}
        return redact_events(self.redactor, evs)

    def _reserve_profile(self, uid: str, request: str) -> float | None:
        if self.budget is None:
            return 0.0
        assert self.profiler is not None
        inp, outp = worst_case_tokens(request, self.profiler.max_tokens, self.profiler.policy)
        worst = self.budget.price.cost(inp, outp)
        if self.budget.try_reserve(worst):
            return worst
        self.dispatcher.stopped_at = Job(uid, request, "")
        self.notes.append(self._budget_note(self.dispatcher.stopped_at))
        return None

    def _profile_one(
        self, uid: str, evs: list[Event], key: str, request: str, counts: dict[str, int], reserved: float
    ) -> None:
        assert self.profiler is not None
        res = self.profiler.profile(uid, evs)
        parsed: dict[str, Any] = {
            "profile": res.profile.model_dump() if res.profile else None,
            "dropped": res.evidence_dropped,
        }
        p = self.profiler
        call = CallRecord(
            self.run_id, uid, "profile", key, p.backend_id, p.model_id, p.prompt.name, p.prompt.version,
            p.prompt.hash, "", request, res.raw, parsed, res.usage.prompt_tokens, res.usage.completion_tokens,
            res.usage.latency_ms, res.attempts, res.error,
        )  # fmt: skip
        cost = self.ledger.record_paid(call, res.usage, counts, link=False)
        if self.budget is not None:
            self.budget.settle(reserved, cost or 0.0)
        if res.profile is not None:
            self.store.write_profile(self.run_id, uid, call.call_id, parsed["profile"], res.evidence_dropped)

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
                "confidence": {
                    n: r.confidence_source
                    for n, r in self.results.get(uid, {}).items()
                    if isinstance(r, JsonScoreResult)
                },
            },
            call_ids=self.ledger.call_ids.get(uid, []),
            error="every scorer failed" if failed else None,
        )


def _from_cache(uid: str, parsed: dict[str, Any]) -> ScoreResult:
    kwargs: dict[str, Any] = {
        "evidence": parsed.get("evidence") or {},
        "rationale": parsed.get("rationale") or "",
    }
    if "confidence_source" in parsed:
        return JsonScoreResult(
            uid, parsed.get("scores"), confidence_source=parsed["confidence_source"], **kwargs
        )
    return ScoreResult(uid, parsed.get("scores"), **kwargs)
