"""labeling/dispatch.py: the budget, concurrent dispatch, worst-case costs."""

from __future__ import annotations

import threading
import time

from llm_labeler.labeling.dispatch import Budget, Dispatcher, Job, worst_case_tokens
from llm_labeler.labeling.pricing import Price
from llm_labeler.structured import RetryPolicy


def test_budget_and_dispatcher_stop_before_crossing() -> None:
    budget = Budget(1.0, Price(1.0, 1.0))
    jobs = [Job(f"u{i}", "text", f"k{i}") for i in range(5)]
    dispatcher = Dispatcher(concurrency=2, budget=budget)
    seen = []
    for _job, result, reserved in dispatcher.run(jobs, lambda j: j.user_id, lambda j: 0.3):
        seen.append(result)
        budget.settle(reserved, 0.25)
    assert budget.spent <= 1.0 and dispatcher.stopped_at is not None
    assert len(seen) == 3 and [j.user_id for j in dispatcher.unstarted] == ["u3", "u4"]
    assert dispatcher.stopped_at.user_id == "u3"


def test_dispatcher_runs_concurrently_and_delivers_on_the_callers_thread() -> None:
    caller = threading.get_ident()
    workers: set[int] = set()

    def slow(job: Job) -> str:
        workers.add(threading.get_ident())
        time.sleep(0.2)
        return job.user_id

    start = time.monotonic()
    out = [
        (r, threading.get_ident())
        for _, r, _ in Dispatcher(4).run([Job(f"u{i}", "", "") for i in range(4)], slow, lambda j: 0.0)
    ]
    assert time.monotonic() - start < 0.6 and len(workers) == 4  # four at once, not one after another
    assert sorted(r for r, _ in out) == ["u0", "u1", "u2", "u3"] and {t for _, t in out} == {caller}


def test_worst_case_covers_reasks_attempts_and_samples() -> None:
    inp, outp = worst_case_tokens("x" * 400, 50, RetryPolicy(attempts=2, reasks=1), samples=3)
    assert outp == 3 * 2 * 50 and inp > 3 * 2 * 2 * 100
