"""call -> validate -> re-ask -> fail closed. The only retry and re-ask loop in the package.

Transport retries (429, 5xx, timeouts, dropped connections) and validation re-asks are kept apart: a transport
retry resends the same request; a re-ask sends the model its invalid answer and the validation error.
"""

from __future__ import annotations

import json
import re
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
from .errors import OutputValidationError, TransientBackendError

__all__ = ["RetryPolicy", "StructuredResult", "Usage", "call_structured", "inline_refs", "parse_json_object"]

T = TypeVar("T", bound=BaseModel)


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded transport retries with exponential backoff and jitter; Retry-After wins when longer."""

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0
    jitter: float = 0.5
    reasks: int = 2


@dataclass
class Usage:
    """Tokens and time over every attempt of one logical call (retries and re-asks included)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    transport_attempts: int = 0
    reasks: int = 0

    def add(self, completion: Completion) -> None:
        """Count one answered attempt."""
        self.prompt_tokens += completion.prompt_tokens
        self.completion_tokens += completion.completion_tokens
        self.latency_ms += completion.latency_ms


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
    obj, _ = json.JSONDecoder().raw_decode(candidate[start:])
    return obj


def _wait(policy: RetryPolicy) -> Callable[[RetryCallState], float]:
    backoff = wait_exponential_jitter(initial=policy.initial, max=policy.maximum, jitter=policy.jitter)

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        retry_after = getattr(exc, "retry_after", None) or 0.0
        return max(float(retry_after), backoff(state))

    return wait


def complete_with_retries(
    backend: Backend, request: Request, policy: RetryPolicy, usage: Usage
) -> Completion:
    """One request, retried on transient failures only; other errors pass straight through."""
    retrying = Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=_wait(policy),
        retry=retry_if_exception_type(TransientBackendError),
        reraise=True,
    )
    for attempt in retrying:
        with attempt:
            usage.transport_attempts += 1
            completion = backend.complete(request)
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
) -> StructuredResult[T]:
    """Ask for JSON matching `model`; re-ask with the error a bounded number of times, then raise."""
    policy = policy or RetryPolicy()
    schema = schema or inline_refs(model.model_json_schema())
    usage, history, raw = Usage(), list(messages), ""
    for attempt in range(1, policy.reasks + 2):
        request = Request(history, json_schema=schema, max_tokens=max_tokens, timeout=timeout)
        completion = complete_with_retries(backend, request, policy, usage)
        usage.add(completion)
        raw = completion.text
        try:
            value = model.model_validate(parse_json_object(raw))
            if check:
                check(value)
            return StructuredResult(value, raw, attempt, usage, completion)
        except (ValueError, ValidationError) as exc:
            error = _short_error(exc)
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
    exc_out = OutputValidationError(f"output never matched {model.__name__}: {error}", raw, policy.reasks + 1)
    exc_out.usage = usage  # type: ignore[attr-defined]
    raise exc_out


def _short_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
    return str(exc)[:300]
