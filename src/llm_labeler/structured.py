"""call -> validate -> re-ask -> fail closed. The only retry and re-ask loop in the package.

Transport retries (429, 5xx, timeouts, dropped connections) and validation re-asks are kept apart: a transport
retry resends the same request; a re-ask sends the model its invalid answer and the validation error.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from .backends.base import Backend, Completion, Message, Request
from .errors import BackendError, OutputValidationError, TransientBackendError
from .history import approx_tokens

__all__ = [
    "RateLimiter",
    "RetryPolicy",
    "StructuredResult",
    "Usage",
    "call_structured",
    "close_json",
    "complete_with_retries",
    "inline_refs",
    "parse_json_object",
    "request_tokens",
]

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded transport retries with exponential backoff and jitter; Retry-After wins when longer."""

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.5
    reasks: int = 2
    max_retry_after: float = (
        120.0  # a server asking for a longer pause gets this much, then the attempt counts
    )


@dataclass
class Usage:
    """Tokens and time over every attempt of one logical call (retries and re-asks included)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    transport_attempts: int = 0
    reasks: int = 0
    failed_attempts: int = 0
    # Prompt tokens of attempts that reached the server but returned no usage (timeouts, cut-off bodies): a server
    # may still bill them. Refused connections, 429s and 5xx answers are not counted.
    estimated_prompt_tokens: int = 0
    retry_wait_s: float = 0.0

    def add(self, completion: Completion) -> None:
        """Count one answered attempt."""
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.latency_ms += completion.latency_ms

    def merge(self, other: Usage) -> None:
        """Add another call's usage (k-sample self-consistency sums its samples)."""
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


class RateLimiter:
    """Requests-per-minute and tokens-per-minute limits over a sliding 60 s window, shared by threads."""

    def __init__(self, rpm: int | None = None, tpm: int | None = None, window: float = 60.0) -> None:
        self.rpm, self.tpm, self.window = rpm, tpm, window
        self._sent: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()
        self.waited_s = 0.0

    def acquire(self, tokens: int) -> float:
        """Block until one more request of `tokens` tokens fits the limits; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                pause = self._pause(time.monotonic(), tokens)
                if pause <= 0:
                    self._sent.append((time.monotonic(), tokens))
                    self.waited_s += waited
                    return waited
            time.sleep(pause)
            waited += pause

    def _pause(self, now: float, tokens: int) -> float:
        while self._sent and now - self._sent[0][0] >= self.window:
            self._sent.popleft()
        if not self._sent:
            return 0.0
        over_rpm = self.rpm is not None and len(self._sent) >= self.rpm
        used = sum(t for _, t in self._sent)
        over_tpm = self.tpm is not None and used + tokens > self.tpm
        return self._sent[0][0] + self.window - now + 0.01 if over_rpm or over_tpm else 0.0


def request_tokens(request: Request) -> int:
    """What a request can cost in tokens at most: its prompt (estimated) plus max_tokens."""
    return sum(approx_tokens(m.get("content", "")) + 4 for m in request.messages) + request.max_tokens


@dataclass
class StructuredResult(Generic[T]):
    """A validated answer and everything it cost."""

    value: T
    raw: str
    attempts: int
    usage: Usage = field(default_factory=Usage)
    completion: Completion | None = None


def inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """Resolve pydantic's $defs/$ref so every backend (and llama.cpp's grammar builder) sees a flat schema."""
    defs = schema.get("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items() if k != "$defs"}
        if isinstance(node, list):
            return [resolve(x) for x in node]
        return node

    flat: dict[str, Any] = resolve(schema)
    return flat


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL)


def parse_json_object(text: str) -> Any:
    """The JSON object in a model's answer (tolerating code fences and chatter around it)."""
    fenced = _FENCE.search(text)
    candidate = fenced.group(1) if fenced else text
    start = candidate.find("{")
    if start < 0:
        raise ValueError("no JSON object in the answer")
    # strict=False: small models put raw newlines inside strings; the content is still unambiguous.
    obj, _ = json.JSONDecoder(strict=False).raw_decode(candidate[start:])
    return obj


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(multiplier=policy.initial, max=policy.maximum, jitter=policy.jitter)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = min(float(getattr(exc, "retry_after", None) or 0.0), policy.max_retry_after)
        return max(retry_after, backoff(state))

    return wait


def _count_sleep(usage: Usage) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        usage.retry_wait_s += state.upcoming_sleep

    return before_sleep


def complete_with_retries(
    backend: Backend,
    request: Request,
    policy: RetryPolicy,
    usage: Usage,
    limiter: RateLimiter | None = None,
) -> Completion:
    """One request, paced by the limiter and retried on transient failures only; other errors pass through."""
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=_wait(policy),
        retry=retry_if_exception_type(TransientBackendError),
        before_sleep=_count_sleep(usage),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            usage.transport_attempts += 1
            if limiter is not None:
                limiter.acquire(request_tokens(request))
            try:
                completion = backend.complete(request)
            except BackendError as exc:
                usage.failed_attempts += 1
                if exc.maybe_billed:  # the server may have done (and billed) the work
                    usage.estimated_prompt_tokens += request_tokens(request) - request.max_tokens
                raise
    return completion


def call_structured(
    backend: Backend,
    messages: list[Message],
    model: type[T],
    *,
    schema: dict[str, Any] | None = None,
    max_tokens: int = 256,
    timeout: float = 60.0,
    policy: RetryPolicy | None = None,
    check: Callable[[T], None] | None = None,
    limiter: RateLimiter | None = None,
    temperature: float = 0.0,
    seed: int | None = 0,
    top_logprobs: int = 0,
    close_cut: bool = False,
) -> StructuredResult[T]:
    """Ask for JSON matching `model`; re-ask with the error a bounded number of times, then raise.

    `close_cut`: an answer cut off at max_tokens is closed (open string, brackets) before validation, so a
    trailing free-text field that ran long does not cost a re-ask; every required field must still validate.

    A transport failure that outlives its retries raises the BackendError with `.usage` attached (what the
    attempts cost); an answer that never validates raises OutputValidationError with the raw output.
    """
    policy = policy or RetryPolicy()
    schema = schema or inline_refs(model.model_json_schema())
    usage, history, raw = Usage(), list(messages), ""
    for attempt in range(1, policy.reasks + 2):
        request = Request(history, schema, max_tokens, temperature, top_logprobs, timeout=timeout, seed=seed)
        try:
            completion = complete_with_retries(backend, request, policy, usage, limiter)
        except BackendError as exc:
            exc.usage, exc.raw_output = usage, raw
            raise
        usage.add(completion)
        raw = completion.text
        cut = close_cut and completion.finish_reason == "length"
        try:
            value = model.model_validate(parse_json_object(close_json(raw) if cut else raw))
            if check:
                check(value)
            return StructuredResult(value, raw, attempt, usage, completion)
        except (ValueError, ValidationError) as exc:
            error = _short_error(exc) + _cut_note(completion)
            usage.reasks += 1 if attempt <= policy.reasks else 0
            history = [
                *messages,
                {"role": "assistant", "content": raw[:2000]},
                {
                    "role": "user",
                    "content": f"That answer is invalid: {error}. "
                    "Reply again with only a JSON object that matches the schema.",
                },
            ]
    raise OutputValidationError(
        f"output never matched {model.__name__}: {error}", raw, policy.reasks + 1, usage
    )


def close_json(text: str) -> str:
    """Close what a cut-off JSON answer left open: a string, then its objects and arrays, innermost first."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in text[text.find("{") :] if "{" in text else "":
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]" and stack:
            stack.pop()
    tail = text[:-1] if escaped else text
    return tail + ('"' if in_string else "") + "".join(reversed(stack))


def _cut_note(completion: Completion) -> str:
    return " (the answer was cut off at max_tokens)" if completion.finish_reason == "length" else ""


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
    return str(exc)[:300]
