"""The backend registry and the hosted backends' ids and options (no server needed)."""

from __future__ import annotations

import pytest

from llm_labeler.backends import get_backend
from llm_labeler.errors import ConfigError


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
