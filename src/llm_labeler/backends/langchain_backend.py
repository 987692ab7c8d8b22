"""Any LangChain chat model as a backend: the only module that imports langchain.

    langchain:PROVIDER:MODEL[?OPTIONS]   resolved with LangChain's init_chat_model (any installed provider)
    use_chat_model(model, name)          registers a BaseChatModel instance as `langchain:instance:NAME`

OPTIONS: schema=json_schema|json_object|json_mode|native|prompt, logprobs=0|1, concurrency=N, rpm=N, tpm=N,
local=0|1; every other option (base_url, organization, ...) is passed to init_chat_model.

Structured output: `json_schema` (strict, OpenAI), `json_object` (+schema, llama.cpp's server) and `json_mode` are
sent in the request body of OpenAI-style models; `native` uses the model's own `with_structured_output`; `prompt`
puts the schema in the prompt and relies on validation and re-asks. The model's own retries are turned off where
LangChain allows it: structured.py owns retries.
"""

from __future__ import annotations

import json
import time
from typing import Any

from ..errors import BackendError, ConfigError, FatalBackendError
from ..settings import env_secret
from . import register
from .base import BackendBase, Capabilities, Completion, Request, parse_options
from .http import connection_error, malformed_body, response_format, status_error, timeout_error

__all__ = ["SCHEMA_MODES", "LangChainBackend", "use_chat_model"]

SCHEMA_MODES = ("json_schema", "json_object", "json_mode", "native", "prompt")
_OURS = {"schema", "logprobs", "concurrency", "rpm", "tpm", "local"}
_CHAT_MODELS: dict[str, Any] = {}


class LangChainBackend(BackendBase):
    """Wraps a LangChain BaseChatModel; messages + schema in, raw text and usage out."""

    def __init__(
        self,
        chat_model: Any,
        name: str | None = None,
        schema_mode: str | None = None,
        logprobs: bool = False,
        concurrency: int = 8,
        local: bool = False,
        openai_compatible: bool | None = None,
        limits: tuple[int | None, int | None] = (None, None),
        provider: str | None = None,
    ) -> None:
        self.model = chat_model
        self.model_name = _model_name(chat_model)
        kind = type(chat_model).__name__
        self.openai_style = (
            kind in ("ChatOpenAI", "AzureChatOpenAI") if openai_compatible is None else openai_compatible
        )
        self.schema_mode = schema_mode or ("json_schema" if self.openai_style else "native")
        if self.schema_mode not in SCHEMA_MODES:
            raise ConfigError(f"schema={self.schema_mode!r}: choose one of {', '.join(SCHEMA_MODES)}")
        if self.schema_mode in ("json_schema", "json_object", "json_mode") and not self.openai_style:
            raise ConfigError(
                f"schema={self.schema_mode} needs an OpenAI-style chat model; {kind} is not one"
            )
        self.backend_id = f"langchain:{name or kind + ':' + self.model_name}"
        self.model_id = f"langchain/{provider or kind}/{self.model_name}"
        self.capabilities = Capabilities(
            json_schema=self.schema_mode in ("json_schema", "json_object", "native"),
            json_mode=self.schema_mode != "prompt",
            logprobs=logprobs and self.openai_style,
            concurrency=concurrency,
            local=local,
        )
        self.limits = limits  # requests and tokens per minute
        self.warnings: list[str] = []
        # A custom base_url means an OpenAI-compatible server: those read `max_tokens`, which ChatOpenAI renames.
        self.compat_max_tokens = bool(getattr(chat_model, "openai_api_base", None))

    @property
    def price_name(self) -> str:
        """The model name a price table is searched with (the provider's, not our id)."""
        return self.model_name

    def complete(self, request: Request) -> Completion:
        """One chat call; raises TransientBackendError (retry) or FatalBackendError (do not)."""
        start = time.perf_counter()
        try:
            message, parsed = self._invoke(request)
        except BackendError:
            raise
        except Exception as exc:
            raise _classify(exc, self.backend_id, request.timeout) from exc
        return self._completion(message, parsed, (time.perf_counter() - start) * 1000)

    def _invoke(self, request: Request) -> tuple[Any, Any]:
        messages = [(m["role"], m["content"]) for m in request.messages]
        schema = request.json_schema
        if self.schema_mode == "native" and schema is not None:
            runnable = self._bound(request).with_structured_output(schema, include_raw=True)
            out = runnable.invoke(messages)
            return out["raw"], out.get("parsed")
        if self.schema_mode == "prompt" and schema is not None:
            hint = f"\n\nAnswer with one JSON object that matches this JSON schema:\n{json.dumps(schema)}"
            messages[-1] = (messages[-1][0], messages[-1][1] + hint)
        return self._bound(request).invoke(messages), None

    def _bound(self, request: Request) -> Any:
        kwargs: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": request.temperature}
        if not self.openai_style:
            return self.model.bind(**kwargs)
        body: dict[str, Any] = {}
        fmt = response_format(self.schema_mode, request.json_schema) if self.schema_mode != "native" else None
        if fmt is not None:
            body["response_format"] = fmt  # in the body, so LangChain keeps its plain create() path
        if self.compat_max_tokens:
            body["max_tokens"] = request.max_tokens
        if request.top_logprobs and self.capabilities.logprobs:
            kwargs.update(logprobs=True, top_logprobs=min(request.top_logprobs, 20))
        if request.seed is not None:
            kwargs["seed"] = request.seed
        return self.model.bind(**kwargs, timeout=request.timeout, extra_body=body or None)

    def _completion(self, message: Any, parsed: Any, latency_ms: float) -> Completion:
        content = message.content if isinstance(message.content, str) else _text(message.content)
        if parsed is not None:
            content = json.dumps(parsed.model_dump() if hasattr(parsed, "model_dump") else parsed)
        elif not content and getattr(message, "tool_calls", None):
            content = json.dumps(message.tool_calls[0].get("args", {}))
        usage = getattr(message, "usage_metadata", None) or {}
        meta = getattr(message, "response_metadata", None) or {}
        logprobs = (meta.get("logprobs") or {}).get("content")
        return Completion(
            text=content or "",
            prompt_tokens=int(usage.get("input_tokens", 0)),
            completion_tokens=int(usage.get("output_tokens", 0)),
            latency_ms=latency_ms,
            finish_reason=meta.get("finish_reason") or meta.get("stop_reason"),
            raw={"model": meta.get("model_name") or self.model_name, "logprobs": logprobs},
        )


def _text(content: Any) -> str:
    parts = [c.get("text", "") if isinstance(c, dict) else str(c) for c in content or []]
    return "".join(parts)


def _model_name(chat_model: Any) -> str:
    for attr in ("model_name", "model", "model_id"):
        value = getattr(chat_model, attr, None)
        if isinstance(value, str) and value:
            return value
    return type(chat_model).__name__


def _classify(exc: Exception, who: str, timeout: float) -> BackendError:
    """LangChain passes provider SDK errors through: read their HTTP status, else their kind."""
    response = getattr(exc, "response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    name = type(exc).__name__
    if isinstance(status, int):
        return status_error(
            who, status, str(getattr(exc, "message", exc))[:500], getattr(response, "headers", None)
        )
    if "Timeout" in name or isinstance(exc, TimeoutError):
        return timeout_error(who, timeout)
    if "Connection" in name or "Protocol" in name or isinstance(exc, ConnectionError):
        return connection_error(who, exc)
    if isinstance(exc, json.JSONDecodeError) or "ResponseValidation" in name:
        return malformed_body(who, exc)
    return FatalBackendError(f"{who}: {name}: {exc}")


def use_chat_model(chat_model: Any, name: str, **options: Any) -> str:
    """Register a LangChain BaseChatModel instance; returns its backend id (`langchain:instance:NAME`).

    Options are LangChainBackend's: schema_mode, logprobs, concurrency, local, openai_compatible.
    """
    from langchain_core.language_models import BaseChatModel

    if not isinstance(chat_model, BaseChatModel):
        raise ConfigError(f"use_chat_model needs a LangChain BaseChatModel, got {type(chat_model).__name__}")
    _CHAT_MODELS[name] = (chat_model, options)
    return f"langchain:instance:{name}"


@register("langchain")
def _factory(arg: str) -> LangChainBackend:
    spec, opts = parse_options(arg)
    provider, sep, model = spec.partition(":")
    if provider == "instance":
        if model not in _CHAT_MODELS:
            raise ConfigError(
                f"no LangChain model registered as {model!r}: call use_chat_model(model, {model!r})"
            )
        chat_model, options = _CHAT_MODELS[model]
        return LangChainBackend(chat_model, name=spec, **options)
    if not sep or not provider or not model:
        raise ConfigError(
            f"langchain:{arg}: expected langchain:PROVIDER:MODEL, e.g. langchain:openai:gpt-4o-mini"
        )
    return LangChainBackend(
        _init(provider, model, opts),
        name=spec,
        schema_mode=opts.get("schema"),
        logprobs=opts.get("logprobs", "0") in ("1", "true", "yes"),
        concurrency=int(opts.get("concurrency", "8")),
        local=opts.get("local", "0") in ("1", "true", "yes"),
        limits=_limits(opts),
        provider=provider,
    )


def _init(provider: str, model: str, opts: dict[str, str]) -> Any:
    from langchain.chat_models import init_chat_model

    kwargs: dict[str, Any] = {k: v for k, v in opts.items() if k not in _OURS}
    kwargs.setdefault("max_retries", 0)  # structured.py retries, bounded and counted
    if provider == "openai" and kwargs.get("base_url") and not env_secret("OPENAI_API_KEY"):
        kwargs.setdefault("api_key", "unused")  # a local OpenAI-compatible server needs no key
    try:
        return init_chat_model(model, model_provider=provider, **kwargs)
    except ImportError as exc:
        raise ConfigError(f"langchain provider {provider!r} needs its package: {exc}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"langchain:{provider}:{model}: {exc}") from exc


def _limits(opts: dict[str, str]) -> tuple[int | None, int | None]:
    return (int(opts["rpm"]) if opts.get("rpm") else None, int(opts["tpm"]) if opts.get("tpm") else None)
