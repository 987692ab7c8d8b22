"""The OpenAI API and any OpenAI-compatible server (vLLM, llama.cpp server, Ollama): the only `openai` importer.

    openai:MODEL[?OPTIONS]                 api.openai.com (or $OPENAI_BASE_URL), key from $OPENAI_API_KEY
    openai-compatible:BASE_URL#MODEL[?OPTIONS]
    openai-compatible:URL1,URL2,...#MODEL[?OPTIONS]   a fleet of servers of one model (backends/fleet.py)

OPTIONS (`&`-separated): schema=json_schema|json_object|json_mode|none (structured-output form; llama.cpp's
server needs json_object), logprobs=0|1, top_logprobs=N, concurrency=N, rpm=N, tpm=N, local=0|1 (text stays on
this machine: no redaction by default), key_env=NAME (environment variable holding the API key),
max_tokens_field=max_tokens|max_completion_tokens (default: the latter for api.openai.com only). For a fleet,
concurrency, rpm and tpm hold for each endpoint, and eject_after=N (failures in a row, default 3) and cooldown=S
(seconds out, default 30) decide when an endpoint is taken out and for how long.

The SDK's own retries are off: structured.py owns retries, so that they are bounded, logged and counted.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import urlparse

from ..errors import BackendError, ConfigError, FatalBackendError, TransientBackendError
from ..settings import env_secret, openai_base_url
from . import register
from .base import BackendBase, Capabilities, Completion, Request, parse_options
from .fleet import EndpointFleet
from .http import connection_error, malformed_body, response_format, status_error, timeout_error

__all__ = [
    "SCHEMA_MODES",
    "OpenAIBackend",
]

SCHEMA_MODES = ("json_schema", "json_object", "json_mode", "none")
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


def _flag(value: str | None, default: bool) -> bool:
    return default if value is None else value.lower() in ("1", "true", "yes", "on")


class OpenAIBackend(BackendBase):
    """Chat completions through the official `openai` client; failures mapped to transient or fatal errors."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        scheme: str = "openai",
        options: dict[str, str] | None = None,
    ) -> None:
        from openai import OpenAI

        opts = options or {}
        self.model_name, self.scheme = model, scheme
        self.schema_mode = opts.get("schema", "json_schema")
        if self.schema_mode not in SCHEMA_MODES:
            raise ConfigError(f"schema={self.schema_mode!r}: choose one of {', '.join(SCHEMA_MODES)}")
        self.top_logprobs = int(opts.get("top_logprobs", "20"))
        self.limits = (_int(opts.get("rpm")), _int(opts.get("tpm")))
        self.warnings: list[str] = []
        host = urlparse(base_url or openai_base_url() or "https://api.openai.com").hostname
        self.capabilities = Capabilities(
            json_schema=self.schema_mode in ("json_schema", "json_object"),
            json_mode=self.schema_mode != "none",
            logprobs=_flag(opts.get("logprobs"), scheme == "openai"),
            concurrency=int(opts.get("concurrency", "16" if scheme == "openai" else "8")),
            local=_flag(opts.get("local"), False),
        )
        self.is_loopback = host in _LOCAL_HOSTS
        # OpenAI itself wants max_completion_tokens (reasoning models reject max_tokens); compatible servers
        # (llama.cpp, vLLM, Ollama) read max_tokens and would silently ignore the other, leaving output unbounded.
        self.max_tokens_field = opts.get(
            "max_tokens_field", "max_completion_tokens" if host == "api.openai.com" else "max_tokens"
        )
        self.backend_id = f"{scheme}:{model}" if base_url is None else f"{scheme}:{base_url}#{model}"
        self.model_id = f"{scheme}/{model}"
        key = api_key or env_secret(opts.get("key_env", "OPENAI_API_KEY"))
        if not key and scheme == "openai":
            raise ConfigError(
                f"{self.backend_id} needs an API key: set {opts.get('key_env', 'OPENAI_API_KEY')}"
            )
        self.client = OpenAI(base_url=base_url, api_key=key or "unused", max_retries=0)

    @property
    def price_name(self) -> str:
        """The model name a price table is searched with (the provider's, not our id)."""
        return self.model_name

    def complete(self, request: Request) -> Completion:
        """One chat completion; raises TransientBackendError (retry) or FatalBackendError (do not)."""
        start = time.perf_counter()
        try:
            response = self._create(request)
        except BackendError:
            raise
        except Exception as exc:
            if self._schema_rejected(exc):
                return self._degrade(request, exc)
            raise self._classify(exc, request.timeout) from exc
        return self._completion(response, (time.perf_counter() - start) * 1000)

    def _create(self, request: Request) -> Any:
        kwargs: dict[str, Any] = {
            "model": self.model_name,
            "messages": list(request.messages),
            self.max_tokens_field: request.max_tokens,
            "temperature": request.temperature,
            "timeout": request.timeout,
        }
        if request.seed is not None:
            kwargs["seed"] = request.seed
        fmt = response_format(self.schema_mode, request.json_schema)
        if fmt is not None:
            kwargs["response_format"] = fmt
        if request.top_logprobs and self.capabilities.logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = min(request.top_logprobs, self.top_logprobs)
        raw = self.client.chat.completions.with_raw_response.create(**kwargs)
        try:
            return raw.parse()
        except Exception as exc:  # a 200 whose body is cut short or is not the JSON promised
            raise malformed_body(self.backend_id, exc) from exc

    def _schema_rejected(self, exc: Exception) -> bool:
        """A server that does not know OpenAI's json_schema envelope (llama.cpp answers 500, others 400)."""
        status = getattr(exc, "status_code", None)
        text = str(exc).lower()
        return (
            self.schema_mode == "json_schema"
            and status in (400, 422, 500)
            and "response_format" in text
            and ("json_schema" in text or "json_object" in text)
        )

    def _degrade(self, request: Request, exc: Exception) -> Completion:
        self.schema_mode = "json_object"
        self.warnings.append(
            f"{self.backend_id} rejected strict json_schema structured outputs; "
            "degraded to json_object with the schema attached (pass ?schema=json_object to skip the probe)"
        )
        return self.complete(request)

    def _classify(self, exc: Exception, timeout: float) -> BackendError:
        import openai

        who = self.backend_id
        if isinstance(exc, openai.APITimeoutError):
            return timeout_error(who, timeout)
        if isinstance(exc, openai.APIConnectionError):
            return connection_error(who, exc)
        if isinstance(exc, openai.APIStatusError):
            return status_error(
                who, int(exc.status_code), _error_message(exc), getattr(exc.response, "headers", None)
            )
        if isinstance(exc, openai.APIResponseValidationError | json.JSONDecodeError):
            return malformed_body(who, exc)
        return FatalBackendError(f"{who}: {type(exc).__name__}: {exc}")

    def _completion(self, response: Any, latency_ms: float) -> Completion:
        choice = response.choices[0] if response.choices else None
        if choice is None:
            raise TransientBackendError(f"{self.backend_id}: response without choices")
        message = choice.message
        text = message.content or ""
        if not text and getattr(message, "refusal", None):
            text = f"(refusal) {message.refusal}"
        usage = response.usage
        logprobs = None
        if choice.logprobs is not None and choice.logprobs.content:
            logprobs = [tok.model_dump() for tok in choice.logprobs.content]
        return Completion(
            text=text,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            latency_ms=latency_ms,
            first_token_logprobs=_first(logprobs),
            finish_reason=choice.finish_reason,
            raw={"model": response.model, "logprobs": logprobs},
        )


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        msg = err.get("message") if isinstance(err, dict) else err
        code = err.get("code") if isinstance(err, dict) else None
        return f"{msg}" + (f" [{code}]" if code else "")
    return str(getattr(exc, "message", exc))[:500]


def _first(logprobs: list[dict[str, Any]] | None) -> dict[str, float] | None:
    if not logprobs:
        return None
    return {t["token"]: float(t["logprob"]) for t in logprobs[0].get("top_logprobs") or []}


def _int(value: str | None) -> int | None:
    return int(value) if value else None


@register("openai")
def _openai(arg: str) -> OpenAIBackend:
    model, opts = parse_options(arg)
    if not model or model == "default":
        raise ConfigError("openai backend ids name a model: openai:gpt-4o-mini")
    return OpenAIBackend(model, scheme="openai", options=opts)


@register("openai-compatible")
def _compatible(arg: str) -> OpenAIBackend | EndpointFleet:
    url, sep, rest = arg.partition("#")
    model, opts = parse_options(rest)
    if not sep or not model or not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"openai-compatible:{arg}: expected openai-compatible:BASE_URL#MODEL, "
            "e.g. openai-compatible:http://127.0.0.1:8000/v1#my-model"
        )
    if "," in url:
        return _fleet(arg, url.split(","), model, opts)
    return OpenAIBackend(model, base_url=url, scheme="openai-compatible", options=opts)


def _fleet(arg: str, urls: list[str], model: str, opts: dict[str, str]) -> EndpointFleet:
    """One OpenAIBackend per URL behind an EndpointFleet; the rate limits move from the run to each endpoint."""
    if any(not u.startswith(("http://", "https://")) for u in urls):
        raise ConfigError(f"openai-compatible:{arg}: every URL of a fleet starts with http:// or https://")
    own = {k: v for k, v in opts.items() if k not in ("rpm", "tpm", "eject_after", "cooldown")}
    endpoints = [OpenAIBackend(model, base_url=u, scheme="openai-compatible", options=own) for u in urls]
    return EndpointFleet(
        f"openai-compatible:{arg}",
        endpoints,
        rpm=_int(opts.get("rpm")),
        tpm=_int(opts.get("tpm")),
        eject_after=int(opts.get("eject_after", "3")),
        cooldown_s=float(opts.get("cooldown", "30")),
    )
