"""labeling/run.py: budgets, and the run stopping on rejected requests (through a fault-injecting proxy)."""

from __future__ import annotations

import time

import pytest
from faultproxy import FaultProxy, Rule

from llm_labeler.backends import get_backend
from llm_labeler.errors import ConfigError, FatalBackendError, TransientBackendError
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.labeling.dispatch import Job
from llm_labeler.schemas import Taxonomy
from llm_labeler.segments import JsonScorer, ScorerSpec
from llm_labeler.store import Store
from llm_labeler.structured import RetryPolicy


def _fast() -> RetryPolicy:
    return RetryPolicy(attempts=4, initial=0.01, maximum=0.05, jitter=0.0, reasks=1)


def test_max_cost_needs_a_price_and_local_backends_are_free(
    loaded_store: Store, coarse_taxonomy: Taxonomy
) -> None:
    hosted = LabelConfig(
        backend="openai-compatible:http://127.0.0.1:9/v1#unpriced-model",
        scorers=[ScorerSpec("json")],
        max_cost=1.0,
    )
    with pytest.raises(ConfigError, match="price of 'unpriced-model'"):
        label_users(loaded_store, coarse_taxonomy, hosted, limit=1)
    local = LabelConfig(
        backend="fake:echo", scorers=[ScorerSpec("json", 1.0, "none")], max_cost=0.0, redact=True
    )
    result = label_users(loaded_store, coarse_taxonomy, local, limit=3)
    assert len(result.labels) == 3 and result.stats["budget"]["spent_usd"] == 0.0
    assert result.stats["cost_usd"] == 0.0 and result.stats["redaction"] is True  # asked for, even if local


DEAD_UPSTREAM = "http://127.0.0.1:9"  # these faults are answered by the proxy itself; nothing is forwarded


def _via(proxy: FaultProxy) -> str:
    return f"openai-compatible:{proxy.url()}#gemma?schema=json_object"


def test_auth_errors_stop_the_run_at_the_first_call(loaded_store: Store, coarse_taxonomy: Taxonomy) -> None:
    config = LabelConfig(backend="", scorers=[ScorerSpec("json", 1.0, "none")])
    with FaultProxy(DEAD_UPSTREAM, rules=[Rule("401", "")]) as proxy:
        config.backend = _via(proxy)
        started = time.monotonic()
        with pytest.raises(FatalBackendError, match=r"HTTP 401 authentication failed.*not retried"):
            label_users(loaded_store, coarse_taxonomy, config, limit=3)
    assert proxy.stats.requests == 1 and time.monotonic() - started < 20  # no retry, no second user
    (run,) = loaded_store.query("SELECT run_id, status FROM runs")
    assert run["status"] == "failed"
    (call,) = loaded_store.query("SELECT error, transport_attempts FROM calls")
    assert "HTTP 401" in call["error"] and call["transport_attempts"] == 1


def test_consecutive_bad_requests_stop_the_run(loaded_store: Store, coarse_taxonomy: Taxonomy) -> None:
    config = LabelConfig(backend="", scorers=[ScorerSpec("json", 1.0, "none")])
    with FaultProxy(DEAD_UPSTREAM, rules=[Rule("400", "")]) as proxy:
        config.backend = _via(proxy)
        with pytest.raises(FatalBackendError, match="5 requests in a row were rejected"):
            label_users(loaded_store, coarse_taxonomy, config, limit=8)
    assert proxy.stats.requests == 5  # each failed fast (no retry), and the sixth was never sent
    rows = loaded_store.query("SELECT error FROM calls")
    assert len(rows) == 5 and all("HTTP 400 bad request" in r["error"] for r in rows)


def test_exhausted_retries_become_a_failed_row(loaded_store: Store, coarse_taxonomy: Taxonomy) -> None:

    with FaultProxy(DEAD_UPSTREAM, rules=[Rule("503", "")], retry_after=0.0) as proxy:
        backend = get_backend(_via(proxy), reuse=False)
        scorer = JsonScorer(backend, coarse_taxonomy, policy=_fast())
        result = scorer.score_one("u1", "Pick a segment for: my SCSI disk fails")
    assert proxy.stats.injected["503"] == 4 and result.scores is None
    assert result.error is not None and "HTTP 503" in result.error and result.usage.failed_attempts == 4


def test_only_consecutive_rejections_stop_the_run() -> None:
    from types import SimpleNamespace

    from llm_labeler.labeling.run import LabelRun

    halted: list[bool] = []
    run = SimpleNamespace(
        rejected_in_a_row=0, fatal=None, dispatcher=SimpleNamespace(halt=lambda: halted.append(True))
    )
    job = Job("u", "text", "k")
    for exc in [FatalBackendError("HTTP 400")] * 4 + [TransientBackendError("HTTP 503 after retries")]:
        row = LabelRun._fatal(run, job, exc)  # type: ignore[arg-type]
        assert row.scores is None and row.error is not None
    assert run.rejected_in_a_row == 0 and not halted  # a server failure breaks the streak of rejections
    for _ in range(5):
        LabelRun._fatal(run, job, FatalBackendError("HTTP 400"))  # type: ignore[arg-type]
    assert halted and "5 requests in a row were rejected" in str(run.fatal)
