"""Hosted-backend parts that need no server: ids and options, retries, limiter, budget, prices, confidence."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from faultproxy import FaultProxy, Rule
from typer.testing import CliRunner

from llm_labeler.backends import get_backend
from llm_labeler.backends.base import Capabilities, Completion, Request
from llm_labeler.backends.openai_backend import response_format, retry_after_seconds
from llm_labeler.cli import app
from llm_labeler.confidence import logprob_distribution, token_logprobs, vote_distribution
from llm_labeler.dispatch import Budget, Dispatcher, Job, worst_case_tokens
from llm_labeler.errors import ConfigError, FatalBackendError, TransientBackendError
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.pricing import Price, load_prices
from llm_labeler.schemas import Taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.store import Store
from llm_labeler.structured import RateLimiter, RetryPolicy, Usage, call_structured, close_json

IDS = ["computers", "recreation", "science", "politics", "religion", "marketplace"]


@dataclass
class Scripted:
    """A backend whose answers and failures follow a script (a test double for the retry loop only)."""

    script: list[object]
    backend_id: str = "scripted:x"
    model_id: str = "scripted"
    capabilities: Capabilities = field(default_factory=Capabilities)
    seen: list[float] = field(default_factory=list)

    def complete(self, request: Request) -> Completion:
        self.seen.append(time.monotonic())
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        return Completion(str(step), prompt_tokens=10, completion_tokens=5, finish_reason="stop")


def _fast() -> RetryPolicy:
    return RetryPolicy(attempts=4, initial=0.01, maximum=0.05, jitter=0.0, reasks=1)


def test_backend_ids_and_options() -> None:
    b = get_backend(
        "openai-compatible:http://127.0.0.1:9/v1#m?schema=json_object&logprobs=1&rpm=60&concurrency=3"
    )
    assert b.backend_id == "openai-compatible:http://127.0.0.1:9/v1#m" and b.model_id == "openai-compatible/m"
    assert b.capabilities.logprobs and b.capabilities.concurrency == 3 and not b.capabilities.local
    assert b.limits == (60, None) and b.schema_mode == "json_object"
    with pytest.raises(ConfigError, match="BASE_URL#MODEL"):
        get_backend("openai-compatible:http://127.0.0.1:9/v1")
    with pytest.raises(ConfigError, match="schema="):
        get_backend("openai-compatible:http://127.0.0.1:9/v1#m?schema=xml")
    with pytest.raises(ConfigError, match="PROVIDER:MODEL"):
        get_backend("langchain:gpt-4o-mini")
    with pytest.raises(ConfigError, match="use_chat_model"):
        get_backend("langchain:instance:nobody")


def test_openai_needs_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        get_backend("openai:gpt-4o-mini", reuse=False)


def test_response_formats() -> None:
    schema = {
        "type": "object",
        "properties": {"a": {"type": "string", "maxLength": 5, "title": "A"}, "b": {"type": "number"}},
        "required": ["a"],
    }
    strict = response_format("json_schema", schema)
    assert strict is not None and strict["json_schema"]["strict"] is True
    body = strict["json_schema"]["schema"]
    assert body["required"] == ["a", "b"] and body["additionalProperties"] is False
    assert "maxLength" not in body["properties"]["a"] and "title" not in body["properties"]["a"]
    assert response_format("json_object", schema) == {"type": "json_object", "schema": schema}
    assert response_format("json_mode", schema) == {"type": "json_object"}
    assert response_format("none", schema) is None


def test_retry_after_headers() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 25 < (retry_after_seconds({"retry-after": future}) or 0) <= 31
    assert retry_after_seconds({}) is None


def test_transport_retries_honour_retry_after_and_count_every_attempt() -> None:
    backend = Scripted(
        [TransientBackendError("429", retry_after=0.3), TransientBackendError("500"), '{"x": 1}']
    )
    from pydantic import BaseModel

    class X(BaseModel):
        x: int

    result = call_structured(backend, [{"role": "user", "content": "hi"}], X, policy=_fast())  # type: ignore[arg-type]
    assert result.value.x == 1 and result.usage.transport_attempts == 3 and result.usage.failed_attempts == 2
    assert backend.seen[1] - backend.seen[0] >= 0.3  # Retry-After won over the 10 ms backoff
    assert result.usage.estimated_prompt_tokens == 0  # refused/5xx attempts are not billed


def test_fatal_errors_are_not_retried_and_carry_usage() -> None:
    from pydantic import BaseModel

    class X(BaseModel):
        x: int

    backend = Scripted([FatalBackendError("HTTP 401"), '{"x": 1}'])
    with pytest.raises(FatalBackendError) as info:
        call_structured(backend, [{"role": "user", "content": "hi"}], X, policy=_fast())  # type: ignore[arg-type]
    assert len(backend.seen) == 1 and info.value.usage.transport_attempts == 1  # type: ignore[attr-defined]
    billed = TransientBackendError("timeout")
    billed.maybe_billed = True  # type: ignore[attr-defined]
    backend = Scripted([billed] * 4)
    with pytest.raises(TransientBackendError) as info2:
        call_structured(backend, [{"role": "user", "content": "x" * 400}], X, policy=_fast())  # type: ignore[arg-type]
    usage: Usage = info2.value.usage  # type: ignore[attr-defined]
    assert usage.transport_attempts == 4 and usage.estimated_prompt_tokens >= 4 * 100


def test_validation_reasks_are_separate_from_transport_retries() -> None:
    from pydantic import BaseModel

    class X(BaseModel):
        x: int

    backend = Scripted(['{"x": "nope"}', TransientBackendError("reset"), '{"x": 2}'])
    result = call_structured(backend, [{"role": "user", "content": "hi"}], X, policy=_fast())  # type: ignore[arg-type]
    assert result.attempts == 2 and result.usage.reasks == 1 and result.usage.transport_attempts == 3


def test_cut_off_answers_are_closed_not_half_parsed() -> None:
    assert close_json('{"a": "b", "r": "long text \\"quoted') == '{"a": "b", "r": "long text \\"quoted"}'
    assert close_json('{"a": [1, {"b": "c\\') == '{"a": [1, {"b": "c"}]}'


def test_rate_limiter_paces_requests_and_tokens() -> None:
    limiter = RateLimiter(rpm=2, window=0.5)
    start = time.monotonic()
    for _ in range(3):
        limiter.acquire(1)
    assert time.monotonic() - start >= 0.45  # the third request waited for the window
    tokens = RateLimiter(tpm=100, window=0.4)
    tokens.acquire(80)
    start = time.monotonic()
    tokens.acquire(30)
    assert time.monotonic() - start >= 0.35 and tokens.waited_s > 0


def test_prices_match_families_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = load_prices()
    assert table.get("gpt-4o-mini-2024-07-18") == table.get("gpt-4o-mini") != table.get("gpt-4o")
    assert table.get("openai/gpt-4o-mini") == table.get("gpt-4o-mini") and table.get("nope") is None
    assert Price(1.0, 2.0).cost(1_000_000, 500_000) == pytest.approx(2.0)
    path = tmp_path / "prices.yaml"
    path.write_text("'my-*': {input: 3, output: 4}\ngpt-4o-mini: {input: 9, output: 9}\n", encoding="utf-8")
    monkeypatch.setenv("LLM_LABELER_PRICES", str(path))
    table = load_prices()
    assert table.get("my-model") == Price(3, 4) and table.get("gpt-4o-mini") == Price(9, 9)
    path.write_text("m: {input: cheap}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="numeric"):
        load_prices()


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


def test_logprob_confidence_is_normalised_over_allowed_segments() -> None:
    text = '{ "primary": "computers", "confidence": 0.5}'
    tokens = [
        {"token": t, "logprob": -0.1, "top_logprobs": []} for t in ["{", " ", '"', "primary", '":', ' "']
    ]
    tokens.append(
        {
            "token": "comp",
            "logprob": -0.5,
            "top_logprobs": [
                {"token": "comp", "logprob": -0.5},
                {"token": "re", "logprob": -1.5},  # shared by recreation and religion
                {"token": "science", "logprob": -2.0},
                {"token": "xyz", "logprob": -3.0},
            ],
        }
    )
    tokens.append({"token": 'uters", "confidence": 0.5}', "logprob": -0.1, "top_logprobs": []})
    dist = logprob_distribution(text, tokens, IDS)
    assert dist is not None and dist.covered == 4
    probs = [math.exp(x) for x in dist.logprobs]
    assert sum(probs) == pytest.approx(1.0) and max(range(6), key=probs.__getitem__) == 0
    assert probs[1] == pytest.approx(probs[4]) and probs[3] == probs[5] < probs[2]  # unseen get the floor
    assert (
        logprob_distribution('{"primary": "computers"}', tokens, IDS) is None
    )  # tokens do not spell the text
    assert token_logprobs({"logprobs": tokens}) == tokens and token_logprobs(None) is None


def test_vote_distribution() -> None:
    probs = [math.exp(x) for x in vote_distribution(["science", "science", "politics"], IDS)]
    assert sum(probs) == pytest.approx(1.0) and probs[2] > probs[3] > probs[0]


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


def test_plan_and_logs_commands(loaded_store: Store, coarse_taxonomy: Taxonomy, tmp_path: Path) -> None:
    runner = CliRunner()
    taxonomy = str(Path(__file__).resolve().parents[1] / "taxonomies" / "20ng_coarse.yaml")
    label_users(
        loaded_store, coarse_taxonomy, LabelConfig(backend="fake:junk", scorers=[ScorerSpec("json")]), limit=2
    )
    planned = runner.invoke(
        app,
        ["plan", "--db", loaded_store.path, "--taxonomy", taxonomy, "--backend", "fake:echo", "--scorers", "json",
         "--limit", "3", "--json"],
    )  # fmt: skip
    assert planned.exit_code == 0, planned.output
    import json

    data = json.loads(planned.output)
    assert data["users"] == 3 and data["scorers"][0]["calls"] == 3 and data["totals"]["cost_usd"] == 0.0
    assert "User activity" in data["sample_prompt"]
    errors = runner.invoke(app, ["logs", "--db", loaded_store.path, "--errors", "--json"])
    rows = json.loads(errors.output)
    assert len(rows) == 2 and all("OutputValidationError" in r["error"] for r in rows)
    for cmd in (["plan", "--help"], ["logs", "--help"], ["label", "--help"]):
        shown = runner.invoke(app, cmd, env={"COLUMNS": "200"})
        assert shown.exit_code == 0
    assert "--max-cost" in shown.output and "--concurrency" in shown.output and "--no-redact" in shown.output


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
    from llm_labeler.segments import JsonScorer

    with FaultProxy(DEAD_UPSTREAM, rules=[Rule("503", "")], retry_after=0.0) as proxy:
        backend = get_backend(_via(proxy), reuse=False)
        scorer = JsonScorer(backend, coarse_taxonomy, policy=_fast())
        result = scorer.score_one("u1", "Pick a segment for: my SCSI disk fails")
    assert proxy.stats.injected["503"] == 4 and result.scores is None
    assert result.error is not None and "HTTP 503" in result.error and result.usage.failed_attempts == 4


def test_only_consecutive_rejections_stop_the_run() -> None:
    from types import SimpleNamespace

    from llm_labeler.labelrun import LabelRun

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
