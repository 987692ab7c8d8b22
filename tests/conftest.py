"""Shared fixtures: a temporary store, the bundled 20 Newsgroups fixture, taxonomies, the embedded model."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_labeler.schemas import Taxonomy, load_taxonomy
from llm_labeler.store import Store

ROOT = Path(__file__).resolve().parents[1]
FIXTURE_DIR = ROOT / "tests" / "fixtures" / "20ng_sample"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A fresh DuckDB file store."""
    with Store(tmp_path / "test.duckdb") as s:
        yield s


@pytest.fixture(scope="session")
def events_path() -> Path:
    """60 real 20 Newsgroups users (derived fixture, 10 per coarse family)."""
    return FIXTURE_DIR / "events.jsonl"


@pytest.fixture(scope="session")
def gold_coarse() -> dict[str, str]:
    """user_id -> coarse gold segment for the fixture users."""
    with (FIXTURE_DIR / "gold.csv").open(encoding="utf-8") as fh:
        return {row["user_id"]: row["gold_coarse"] for row in csv.DictReader(fh)}


@pytest.fixture(scope="session")
def coarse_taxonomy() -> Taxonomy:
    """The 6-segment 20 Newsgroups taxonomy."""
    return load_taxonomy(ROOT / "taxonomies" / "20ng_coarse.yaml")


@pytest.fixture
def loaded_store(store: Store, events_path: Path) -> Store:
    """A store with the fixture's events ingested."""
    store.ingest(events_path)
    return store


@pytest.fixture(scope="session")
def embedded_backend():  # type: ignore[no-untyped-def]
    """The real embedded GGUF model through llama-cpp-python (loaded once per test session)."""
    from llm_labeler.backends import get_backend

    return get_backend("llamacpp:default")
