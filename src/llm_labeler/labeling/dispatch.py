"""Concurrent, budget-guarded execution of per-user LLM calls.

The caller's thread submits jobs and receives results in completion order, so it alone touches the store and
commits each result as it arrives. A job starts only when the budget can hold its worst-case cost on top of what
was spent and what is in flight; the first job that cannot start stops the run cleanly, and says which it was.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError
from ..history import approx_tokens
from ..structured import RetryPolicy
from .pricing import Price

__all__ = ["Budget", "Dispatcher", "Job", "worst_case_tokens"]


@dataclass
class Job:
    """One user's request for one scorer."""

    user_id: str
    text: str
    key: str
    redactions: dict[str, int] = field(default_factory=dict)


def worst_case_tokens(text: str, max_tokens: int, policy: RetryPolicy, samples: int = 1) -> tuple[int, int]:
    """(input, output) tokens one job can cost at most: every re-ask, every transport attempt, every sample.

    Prompt tokens are estimated from characters with a 25% margin; each re-ask resends the prompt plus the
    previous answer and the error.
    """
    prompt = int(approx_tokens(text) * 1.25) + 16
    inputs = sum(prompt + k * (max_tokens + 80) for k in range(policy.reasks + 1)) * policy.attempts
    outputs = (policy.reasks + 1) * max_tokens
    return inputs * samples, outputs * samples


class Budget:
    """Spent plus reserved (in flight) never exceeds `max_cost` USD."""

    def __init__(self, max_cost: float, price: Price) -> None:
        self.max_cost, self.price = max_cost, price
        self.spent = 0.0
        self.reserved = 0.0
        self._lock = threading.Lock()

    def try_reserve(self, amount: float) -> bool:
        """Hold `amount` for a call about to start, if the budget allows it."""
        with self._lock:
            if self.spent + self.reserved + amount > self.max_cost:
                return False
            self.reserved += amount
            return True

    def settle(self, reserved: float, actual: float) -> None:
        """Replace a reservation by what the call really cost."""
        with self._lock:
            self.reserved -= reserved
            self.spent += actual


class Dispatcher:
    """Runs jobs on up to `concurrency` threads; stops submitting on a budget limit or when halted."""

    def __init__(self, concurrency: int = 1, budget: Budget | None = None) -> None:
        self.concurrency = max(1, concurrency)
        self.budget = budget
        self.halted = False
        self.stopped_at: Job | None = None  # the first job the budget could not hold
        self.unstarted: list[Job] = []

    def halt(self) -> None:
        """Start nothing more; calls in flight finish and are still delivered."""
        self.halted = True

    def run(
        self,
        jobs: Sequence[Job],
        fn: Callable[[Job], Any],
        worst_cost: Callable[[Job], float],
    ) -> Iterator[tuple[Job, Any, float]]:
        """Yield (job, result or BackendError, reserved USD) as calls complete."""
        queue = list(jobs)
        pending: dict[Future[Any], tuple[Job, float]] = {}
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="llm-call") as pool:
            while queue or pending:
                self._fill(pool, queue, pending, fn, worst_cost)
                if not pending:
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: pending[f][0].user_id):
                    job, reserved = pending.pop(fut)
                    yield job, _outcome(fut), reserved
        self.unstarted = queue

    def _fill(
        self,
        pool: ThreadPoolExecutor,
        queue: list[Job],
        pending: dict[Future[Any], tuple[Job, float]],
        fn: Callable[[Job], Any],
        worst_cost: Callable[[Job], float],
    ) -> None:
        while queue and len(pending) < self.concurrency and not self.halted and self.stopped_at is None:
            job = queue[0]
            reserve = worst_cost(job) if self.budget else 0.0
            if self.budget is not None and not self.budget.try_reserve(reserve):
                self.stopped_at = job
                return
            queue.pop(0)
            pending[pool.submit(fn, job)] = (job, reserve)


def _outcome(fut: Future[Any]) -> Any:
    try:
        return fut.result()
    except BackendError as exc:  # fatal errors reach the caller's thread, which records and decides
        return exc
