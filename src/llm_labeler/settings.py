"""Settings resolved once at the edge (CLI or API caller) and passed down."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DEFAULT_BACKEND", "DEFAULT_DB", "bundled_path", "default_db_path", "prompts_dir", "repo_root"]

DEFAULT_DB = "llm_labeler.duckdb"
DEFAULT_BACKEND = "llamacpp:default"


def default_db_path() -> str:
    """`LLM_LABELER_DB` if set, else ./llm_labeler.duckdb."""
    return os.environ.get("LLM_LABELER_DB") or DEFAULT_DB


def repo_root() -> Path:
    """The source checkout this package runs from (editable installs)."""
    return Path(__file__).resolve().parents[2]


def prompts_dir() -> Path:
    """`LLM_LABELER_PROMPTS`, else the checkout's prompts/, else the copy shipped inside the package."""
    env = os.environ.get("LLM_LABELER_PROMPTS")
    if env:
        return Path(env)
    checkout = repo_root() / "prompts"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parent / "data" / "prompts"


def bundled_path(*parts: str) -> Path:
    """A file shipped with the project (taxonomies/, tests/fixtures/): the checkout's copy."""
    return repo_root().joinpath(*parts)
