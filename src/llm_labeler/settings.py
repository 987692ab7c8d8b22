"""Settings resolved at the edge: the one module that reads environment variables.

Every `LLM_LABELER_*` variable (and the few third-party ones the package honours) is read by a function here;
library code calls these functions or takes the value as a parameter, and never touches os.environ itself.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "DEFAULT_BACKEND",
    "DEFAULT_DB",
    "bundled_path",
    "default_db_path",
    "embedding_dtype",
    "env_secret",
    "llama_threads",
    "newsgroups_dir",
    "openai_base_url",
    "prices_path",
    "prompts_dir",
    "redact_patterns_path",
]

DEFAULT_DB = "llm_labeler.duckdb"
DEFAULT_BACKEND = "llamacpp:default"
_DATA = Path(__file__).resolve().parent / "data"


def _get(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def default_db_path() -> str:
    """`LLM_LABELER_DB` if set, else ./llm_labeler.duckdb."""
    return _get("LLM_LABELER_DB") or DEFAULT_DB


def prompts_dir() -> Path:
    """`LLM_LABELER_PROMPTS`, else the prompts shipped inside the package (the checkout's prompts/ links there)."""
    env = _get("LLM_LABELER_PROMPTS")
    return Path(env) if env else _DATA / "prompts"


def bundled_path(*parts: str) -> Path:
    """A file shipped inside the package: taxonomies/..., fixtures/20ng_sample/..., prompts/..."""
    return _DATA.joinpath(*parts)


def prices_path() -> str | None:
    """`LLM_LABELER_PRICES`: a price table YAML that extends the built-in one."""
    return _get("LLM_LABELER_PRICES")


def redact_patterns_path() -> str | None:
    """`LLM_LABELER_REDACT_PATTERNS`: extra PII patterns (YAML name -> regex)."""
    return _get("LLM_LABELER_REDACT_PATTERNS")


def llama_threads() -> int:
    """`LLM_LABELER_THREADS`: llama.cpp threads (0: the cores this process may run on)."""
    return int(_get("LLM_LABELER_THREADS") or 0)


EMBEDDING_DTYPE_ENV = "LLM_LABELER_EMBEDDING_DTYPE"


def embedding_dtype() -> str | None:
    """`LLM_LABELER_EMBEDDING_DTYPE`: auto | float32 | bfloat16 for the embedding scorer."""
    return _get(EMBEDDING_DTYPE_ENV)


def newsgroups_dir(env_var: str) -> str | None:
    """Where the 20 Newsgroups tarball lies, when the environment says so."""
    return _get(env_var)


def openai_base_url() -> str | None:
    """`OPENAI_BASE_URL`, as the OpenAI client itself reads it."""
    return _get("OPENAI_BASE_URL")


def env_secret(name: str) -> str | None:
    """An API key from the environment variable a backend id names (default OPENAI_API_KEY)."""
    return _get(name)
