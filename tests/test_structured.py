"""structured.py: transport retries, fatal errors, re-asks, cut-off answers, the rate limiter."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from llm_labeler.backends.base import Capabilities, Completion, Request
from llm_labeler.errors import FatalBackendError, TransientBackendError
from llm_labeler.structured import RateLimiter, RetryPolicy, Usage, call_structured, close_json


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
