"""What the OpenAI and LangChain backends share about HTTP: status mapping, Retry-After, billed-or-not, formats.

A failed call is either transient (429, 408, 409, 5xx, timeouts, dropped connections: retried by structured.py) or
fatal (other 4xx, with a hint). A failure after which the server may have done the work (a timeout, a connection
dropped after sending, a cut-off body) is marked `maybe_billed`, so the cost ledger counts its prompt tokens.
"""

from __future__ import annotations

import email.utils
import time
from typing import Any

from ..errors import BackendError, FatalBackendError, TransientBackendError

__all__ = [
    "HINTS",
    "connection_error",
    "malformed_body",
    "never_sent",
    "response_format",
    "retry_after_seconds",
    "status_error",
    "timeout_error",
]

HINTS = {
    400: "bad request",
    401: "authentication failed: check the API key",
    403: "permission denied for this key",
    404: "not found: check the model name and the base URL",
    413: "request too large",
    422: "request rejected as unprocessable",
}


def response_format(mode: str, schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """The `response_format` a schema mode sends: strict json_schema (OpenAI), json_object+schema (llama.cpp)."""
    if schema is None or mode == "none":
        return None
    if mode == "json_schema":
        return {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": _strict(schema), "strict": True},
        }
    if mode == "json_object":
        return {"type": "json_object", "schema": schema}
    return {"type": "json_object"}


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's strict mode wants every property required and no extra ones, at every level."""
    node = dict(schema)
    if node.get("type") == "object" and "properties" in node:
        node["properties"] = {k: _strict(v) for k, v in node["properties"].items()}
        node["required"] = list(node["properties"])
        node["additionalProperties"] = False
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"])
    for key in ("default", "title", "minLength", "maxLength"):  # not accepted by strict mode
        node.pop(key, None)
    return node


def retry_after_seconds(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` / `retry-after` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return max(parsed.timestamp() - time.time(), 0.0) if parsed else None


def status_error(who: str, status: int, detail: str, headers: Any) -> BackendError:
    """An HTTP error status as the error class that decides whether it is retried."""
    if status == 429 and "insufficient_quota" in detail:
        return FatalBackendError(
            f"{who}: HTTP 429 insufficient quota: {detail} (not retried)", status_code=status
        )
    if status in (408, 409, 429) or status >= 500:
        return TransientBackendError(
            f"{who}: HTTP {status}: {detail}", retry_after=retry_after_seconds(headers), status_code=status
        )
    hint = HINTS.get(status, "client error")
    return FatalBackendError(f"{who}: HTTP {status} {hint}: {detail} (not retried)", status_code=status)


def timeout_error(who: str, timeout: float) -> TransientBackendError:
    """No answer in time: the server may still have done (and billed) the work."""
    return TransientBackendError(f"{who}: no answer within the {timeout:g} s timeout", maybe_billed=True)


def connection_error(who: str, exc: Exception) -> TransientBackendError:
    """A dropped connection; billed unless the request never left (refused, DNS)."""
    return TransientBackendError(
        f"{who}: connection failed ({exc.__cause__ or exc})", maybe_billed=not never_sent(exc)
    )


def malformed_body(who: str, exc: Exception) -> TransientBackendError:
    """A 200 whose body is cut short or is not the JSON promised: the work was done."""
    return TransientBackendError(f"{who}: malformed response body ({exc})", maybe_billed=True)


def never_sent(exc: Exception) -> bool:
    """A connection that was never made (refused, DNS) carried no request."""
    cause = exc.__cause__
    return type(cause).__name__ in ("ConnectError", "ConnectTimeout") or isinstance(
        cause, ConnectionRefusedError
    )
