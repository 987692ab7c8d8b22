"""One labeling run, start to finish: cache lookups, scorer calls, profiles, budget, then labels and stats.

The generated (json) scorer's calls go through a Dispatcher (concurrent, within the budget); every call is stored
by the Ledger as it arrives, so a killed run keeps what it paid for and a rerun pays for none of it again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..errors import BackendError, FatalBackendError, RunInterrupted
from ..schemas import Event
from ..segments import JsonScorer, JsonScoreResult, Scorer, ScoreResult
from ..store import LabelRecord, Store
from ..structured import Usage
from .combinations import LABEL_MODEL, label_model_specs
from .config import LabelProgress, RunResult
from .dispatch import Budget, Dispatcher, Job, worst_case_tokens
from .labels import calibration, make_labels
from .ledger import Ledger
from .prepare import RunSetup, redact_events

__all__ = ["LabelRun"]

_ABORT_STATUSES = {401, 403, 404}  # a wrong key, permission or model name fails every call: stop at the first
_ABORT_AFTER = 5  # consecutive rejected requests (any 4xx) mean the requests themselves are wrong: stop


class LabelRun:
    """State of one labeling run; `execute` holds its whole lifecycle (start, chunks, labels, finish)."""

    def __init__(self, store: Store, setup: RunSetup, kind: str = "label", run_id: str | None = None) -> None:
        self.store, self.setup, self.kind, self.requested_id = store, setup, kind, run_id
        self.notes = list(setup.notes)
        self.dispatcher = Dispatcher(setup.concurrency, setup.budget())
        self.unreached: set[str] = set()
        self.fatal: FatalBackendError | None = None
        self.rejected_in_a_row = 0
        self.results: dict[str, dict[str, ScoreResult]] = {}
        self.empty: set[str] = set()
        self.routed_away: dict[str, set[str]] = {}  # scorer -> users it does not score (another language's)
        self.cal_used: dict[str, list[float]] = {}
        self.label_model: dict[str, Any] = {}  # what the label-model combination estimated
        self.run_id = ""
        self.ledger: Ledger | None = None
        self._progress: Callable[[LabelProgress], None] = lambda p: None
        self._total, self._done_before, self._answers = 0, 0, 0

    @property
    def budget(self) -> Budget | None:
        """The run's cost budget (None: unlimited)."""
        return self.dispatcher.budget

    @property
    def stopped_at(self) -> Job | None:
        """The first job the budget could not hold (None: not stopped)."""
        return self.dispatcher.stopped_at

    # -- lifecycle ------------------------------------------------------------------------------------------
    def execute(self, user_ids: Sequence[str], progress: Callable[[LabelProgress], None]) -> RunResult:
        """Start the run row, score every chunk, store the labels, finish the run row with its status and stats.

        Interrupted (Ctrl-C), the run still stores the labels of every user all its scorers had answered, then
        raises RunInterrupted (a KeyboardInterrupt) saying how many; a rerun pays for none of the stored answers.
        """
        ledger = self._start()
        started, status, labels = time.perf_counter(), "failed", []
        # Concurrent calls need work in hand: a chunk holds at least a few calls per worker.
        chunk_size = max(self.setup.config.chunk_size, 4 * self.dispatcher.concurrency)
        self._progress, self._total = progress, len(user_ids)
        progress(LabelProgress("label", 0, len(user_ids), 0))
        reached: list[str] = []
        try:
            for start in range(0, len(user_ids), chunk_size):
                chunk = list(user_ids[start : start + chunk_size])
                self._done_before, self._answers = len(reached) - len(self.unreached), 0
                self._score_chunk(ledger, self.store.events_for(chunk))
                reached += chunk
                self._report(ledger, len(reached) - len(self.unreached))
                if self.stopped_at is not None:
                    break
            labels = self._labels(ledger, [u for u in reached if u not in self.unreached])
            self.store.write_labels(labels)
            status = "stopped_budget" if self.stopped_at is not None else "done"
        except KeyboardInterrupt as exc:
            status = "stopped"
            labels = self._labels(ledger, self._answered(user_ids))
            self.store.write_labels(labels)
            raise RunInterrupted(self.run_id, len(labels), len(user_ids)) from exc
        finally:
            stats = self._stats(ledger, user_ids, time.perf_counter() - started)
            stats["labeled"] = len(labels)
            self.store.finish_run(self.run_id, status, stats)
        warnings = self.notes + [w for w in self.setup.backend.warnings if w not in self.notes]
        scores = {
            u: {name: list(r.scores) for name, r in got.items() if r.scores is not None}
            for u, got in self.results.items()
        }
        return RunResult(self.run_id, labels, stats, warnings, scores)

    def _answered(self, user_ids: Sequence[str]) -> list[str]:
        """Users every scorer has answered (or found empty) so far: their labels are final."""
        names = set(self.setup.scorers)

        def expected(u: str) -> set[str]:
            return {n for n in names if u not in self.routed_away.get(n, set())}

        return [u for u in user_ids if u in self.empty or expected(u) <= set(self.results.get(u, {}))]

    def _report(self, ledger: Ledger, done: float) -> None:
        self._progress(LabelProgress("label", done, self._total, ledger.tally.cache_hits))

    def _answer(self, ledger: Ledger) -> None:
        """One scorer answered one user (or served it from the cache): the bar moves by 1 / scorers."""
        self._answers += 1
        self._report(ledger, self._done_before + self._answers / max(len(self.setup.scorers), 1))

    def _start(self) -> Ledger:
        setup = self.setup
        self.store.remember_taxonomy(
            setup.tax_hash, setup.taxonomy.name, setup.taxonomy.model_dump(mode="json")
        )
        for prompt in [s.prompt for s in setup.scorers.values()] + [
            setup.profiler.prompt if setup.profiler else None
        ]:
            if prompt is not None:
                self.store.remember_prompt(prompt.hash, prompt.name, prompt.version, prompt.template)
        self.run_id = self.store.start_run(
            self.kind,
            setup.config.backend,
            setup.primary.model_id,
            setup.taxonomy.name,
            setup.tax_hash,
            setup.config_json(),
            self.requested_id,
        )
        self.ledger = Ledger(self.store, self.run_id, setup.tax_hash, setup.pricing)
        return self.ledger

    def _stats(self, ledger: Ledger, user_ids: Sequence[str], wall: float) -> dict[str, Any]:
        t, n = ledger.tally, max(len(user_ids), 1)
        stats: dict[str, Any] = {
            "users": len(user_ids),
            "languages": self.store.language_mix(user_ids),
            "calls": t.calls,
            "cache_hits": t.cache_hits,
            "failed_calls": t.failed_calls,
            "empty_history": len(self.empty),
            "prompt_tokens": t.prompt_tokens,
            "completion_tokens": t.completion_tokens,
            "wall_s": round(wall, 3),
            "s_per_user": round(wall / n, 4),
            "llm_s": round(t.llm_seconds, 3),
            "prompt_tokens_per_user": round(t.prompt_tokens / n, 1),
            "calibration": self.cal_used,
            **({"label_model": self.label_model} if self.label_model else {}),
            "concurrency": self.dispatcher.concurrency,
            "redaction": self.setup.redactor is not None,
            "local": self.setup.backend.capabilities.local,
            **t.hosted_stats(),
            "unreached": len(self.unreached),
        }
        if self.budget is not None:
            stats["budget"] = {
                "max_cost_usd": self.budget.max_cost,
                "spent_usd": round(self.budget.spent, 6),
                "stopped": self.stopped_at is not None,
                "stopped_before_user": self.stopped_at.user_id if self.stopped_at else None,
            }
        return stats

    # -- scoring ------------------------------------------------------------------------------------------
    def _score_chunk(self, ledger: Ledger, events: dict[str, list[Event]]) -> None:
        """Every scorer (and the profiler) over one chunk of users."""
        for name, scorer in self.setup.scorers.items():
            self._score_with(ledger, name, scorer, events)
        if self.setup.profiler:
            self._profiles(ledger, events)

    def _score_with(self, ledger: Ledger, name: str, scorer: Scorer, events: dict[str, list[Event]]) -> None:
        work = self.setup.jobs(scorer, events)
        jobs, events = work.jobs, work.events
        self.empty |= work.empty
        self.routed_away.setdefault(name, set()).update(work.skipped)
        self._answers += len(work.skipped) + len(work.empty)  # nothing to wait for: they count as answered
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
            ledger.record(scorer, hit, job, hit=True)
            self._answer(ledger)
        if isinstance(scorer, JsonScorer):
            self._dispatch(ledger, name, scorer, todo)
            return
        for result in scorer.score([(job.user_id, events[job.user_id]) for job in todo]):
            ledger.record(scorer, result, jobs[result.user_id], hit=False)
            if result.error is None:
                self._keep(name, result)
            self._answer(ledger)

    def _dispatch(self, ledger: Ledger, name: str, scorer: JsonScorer, todo: list[Job]) -> None:
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
            cost = ledger.record(scorer, result, job, hit=False)
            if self.budget is not None:
                self.budget.settle(reserved, cost or 0.0)
            if result.error is None:
                self._keep(name, result)
            self._answer(ledger)
        self.unreached |= {j.user_id for j in self.dispatcher.unstarted}
        if self.stopped_at is not None and self.stopped_at.user_id in self.unreached:
            self.notes.append(self._budget_note(self.stopped_at))
        if self.fatal is not None:
            raise self.fatal

    def _fatal(self, job: Job, exc: BackendError) -> ScoreResult:
        """A fatal error becomes this user's failed call; some stop the run (after the calls in flight)."""
        rejected = isinstance(exc, FatalBackendError)
        self.rejected_in_a_row = self.rejected_in_a_row + 1 if rejected else 0
        status = exc.status_code
        if isinstance(exc, FatalBackendError) and (
            status in _ABORT_STATUSES or self.rejected_in_a_row >= _ABORT_AFTER
        ):
            if status not in _ABORT_STATUSES:
                exc = FatalBackendError(
                    f"{_ABORT_AFTER} requests in a row were rejected, stopping; the last: {exc}"
                )
            self.fatal = self.fatal or exc
            self.dispatcher.halt()
        usage = exc.usage or Usage()
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
        # the texts would hold every user's rendered history in memory until the end of the run.
        slim = replace(result, request="", raw="") if result.request or result.raw else result
        self.results.setdefault(result.user_id, {})[name] = slim

    # -- profiles -----------------------------------------------------------------------------------------------
    def _profiles(self, ledger: Ledger, events: dict[str, list[Event]]) -> None:
        profiler = self.setup.profiler
        assert profiler is not None
        for uid, evs in events.items():
            if uid in self.unreached:
                continue
            sent, counts = self._outgoing(evs)
            request, _, _ = profiler.request(sent)
            if not request:
                continue
            key = profiler.cache_key(request)
            row = self.store.cached([key]).get(key)
            if row is not None:
                ledger.tally.cache_hits += 1
                self.store.write_profile(
                    self.run_id, uid, row["call_id"], row["parsed"]["profile"], row["parsed"]["dropped"]
                )
                continue
            reserved = self._reserve_profile(uid, request)
            if reserved is None:
                return
            self._profile_one(ledger, uid, sent, key, request, counts, reserved)

    def _outgoing(self, evs: list[Event]) -> tuple[list[Event], dict[str, int]]:
        """The events as the profile call may send them (redacted when they leave the machine)."""
        redactor, setup = self.setup.redactor, self.setup
        if redactor is None or not (
            setup.config.redact is True or setup.sends_text(setup.backend.backend_id)
        ):
            return evs, {}
        return redact_events(redactor, evs)

    def _reserve_profile(self, uid: str, request: str) -> float | None:
        if self.budget is None:
            return 0.0
        profiler = self.setup.profiler
        assert profiler is not None
        inp, outp = worst_case_tokens(request, profiler.max_tokens, profiler.policy)
        worst = self.budget.price.cost(inp, outp)
        if self.budget.try_reserve(worst):
            return worst
        self.dispatcher.stopped_at = Job(uid, request, "")
        self.notes.append(self._budget_note(self.dispatcher.stopped_at))
        return None

    def _profile_one(
        self,
        ledger: Ledger,
        uid: str,
        evs: list[Event],
        key: str,
        request: str,
        counts: dict[str, int],
        reserved: float,
    ) -> None:
        profiler = self.setup.profiler
        assert profiler is not None
        res = profiler.profile(uid, evs)
        parsed: dict[str, Any] = {
            "profile": res.profile.model_dump() if res.profile else None,
            "dropped": res.evidence_dropped,
        }
        call_id, cost = ledger.record_profile(profiler, key, request, res, parsed, counts)
        if self.budget is not None:
            self.budget.settle(reserved, cost or 0.0)
        if res.profile is not None:
            self.store.write_profile(self.run_id, uid, call_id, parsed["profile"], res.evidence_dropped)

    # -- labels -------------------------------------------------------------------------------------------------
    def _labels(self, ledger: Ledger, user_ids: Sequence[str]) -> list[LabelRecord]:
        cal = calibration(self.setup.scorers, self.results, self._stored_scores)
        self.cal_used = {k: [round(float(x), 4) for x in v] for k, v in cal.items()}
        if self.setup.config.combination == LABEL_MODEL:
            got = {u: self.results[u] for u in user_ids if u in self.results}
            specs, self.label_model = label_model_specs(
                self.setup.specs, got, cal, len(self.setup.taxonomy.ids)
            )
            self.setup.specs[:] = specs
        return make_labels(self.setup, self.run_id, user_ids, self.results, cal, self.empty, ledger.call_ids)

    def _stored_scores(self, scorer: Scorer) -> list[list[float]]:
        prompt_hash = scorer.prompt.hash if scorer.prompt else ""
        return self.store.stored_scores(scorer.stage, scorer.model_id, self.setup.tax_hash, prompt_hash)


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
