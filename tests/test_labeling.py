"""Labeling orchestration (fake backend) and the real embedded model end to end."""

from __future__ import annotations

import math

import pytest

from llm_labeler.backends import get_backend
from llm_labeler.errors import ConfigError, UnknownUserError
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.schemas import Taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.store import Store

FAKE_LLM = LabelConfig(backend="fake:echo", scorers=[ScorerSpec("llm", 1.0)])


def _paid_calls(store: Store) -> int:
    return int(store.query("SELECT count(*) AS n FROM calls WHERE NOT cache_hit")[0]["n"])


def test_second_run_makes_no_calls(loaded_store: Store, coarse_taxonomy: Taxonomy) -> None:
    first = label_users(loaded_store, coarse_taxonomy, FAKE_LLM, limit=8)
    assert first.stats["calls"] == 8 and first.stats["cache_hits"] == 0
    second = label_users(loaded_store, coarse_taxonomy, FAKE_LLM, limit=8)
    assert second.stats["calls"] == 0 and second.stats["cache_hits"] == 8
    assert [lab.primary_segment for lab in first.labels] == [lab.primary_segment for lab in second.labels]
    assert _paid_calls(loaded_store) == 8


def test_labels_carry_provenance(loaded_store: Store, coarse_taxonomy: Taxonomy) -> None:
    result = label_users(loaded_store, coarse_taxonomy, FAKE_LLM, limit=3)
    rows = loaded_store.labels(result.run_id)
    assert len(rows) == 3
    for row in rows:
        assert row["model_id"] == "fake-echo" and row["taxonomy_hash"] == coarse_taxonomy.content_hash()
        assert len(row["prompt_hash"]) == 64 and row["prompt_name"] == "segment_score"
        assert math.isclose(sum(row["probabilities"].values()), 1.0, rel_tol=1e-4)
        assert row["primary_segment"] in coarse_taxonomy.ids and row["call_ids"]
    stored_prompt = loaded_store.query(
        "SELECT template FROM prompts WHERE prompt_hash = ?", [rows[0]["prompt_hash"]]
    )
    assert "Interest category" in stored_prompt[0]["template"]
    assert loaded_store.get_run(result.run_id)["status"] == "done"


def test_unknown_users_are_named(loaded_store: Store, coarse_taxonomy: Taxonomy) -> None:
    with pytest.raises(UnknownUserError, match="nobody"):
        label_users(loaded_store, coarse_taxonomy, FAKE_LLM, users=["nobody"])


def test_empty_history_abstains_without_a_call(store: Store, coarse_taxonomy: Taxonomy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "e.csv"
    path.write_text("user_id,item_title\nquiet,a\n", encoding="utf-8")
    store.ingest(path)
    result = label_users(store, coarse_taxonomy, FAKE_LLM)
    (lab,) = result.labels
    assert lab.abstained and lab.primary_segment is None and lab.abstain_reason == "empty history"
    assert result.stats["calls"] == 0


def test_junk_model_output_is_stored_as_failed_and_retried_next_time(
    loaded_store: Store, coarse_taxonomy: Taxonomy
) -> None:
    junk = LabelConfig(backend="fake:junk", scorers=[ScorerSpec("json", 1.0, "none")])
    result = label_users(loaded_store, coarse_taxonomy, junk, limit=2)
    assert all(lab.abstained and lab.error == "every scorer failed" for lab in result.labels)
    failed = loaded_store.query("SELECT error, raw_output, attempts FROM calls WHERE error IS NOT NULL")
    assert len(failed) == 2 and failed[0]["raw_output"] == "this is not json {" and failed[0]["attempts"] == 3
    again = label_users(loaded_store, coarse_taxonomy, junk, limit=2)
    assert again.stats["calls"] == 2  # failures are never served from the cache


def test_json_scorer_and_unknown_scorer(loaded_store: Store, coarse_taxonomy: Taxonomy) -> None:
    ok = label_users(
        loaded_store, coarse_taxonomy, LabelConfig(backend="fake:echo", scorers=[ScorerSpec("json")]), limit=2
    )
    assert all(lab.primary_segment in coarse_taxonomy.ids for lab in ok.labels)
    with pytest.raises(ConfigError, match="unknown scorer"):
        label_users(
            loaded_store, coarse_taxonomy, LabelConfig(backend="fake:echo", scorers=[ScorerSpec("x")])
        )


def test_unknown_backend_lists_valid_ones() -> None:
    with pytest.raises(ConfigError, match="llamacpp:"):
        get_backend("nosuch:thing")


def test_real_forward_pass_of_the_embedded_model(embedded_backend) -> None:  # type: ignore[no-untyped-def]
    """Catches a bad llama.cpp build (the native build segfaults here) and a broken model install."""
    prefix = "Topics: Computers, Religion.\nUser activity:\n"
    tech = embedded_backend.score_choices(
        prefix, "- [post] My SCSI disk will not boot\nTopic:", [" Computers", " Religion"]
    )
    faith = embedded_backend.score_choices(
        prefix, "- [post] Prayer, scripture and God\nTopic:", [" Computers", " Religion"]
    )
    assert all(math.isfinite(x) and x < 0 for x in tech.logprobs + faith.logprobs)
    # The history moves the distribution: the difference between the two answers changes sign or size.
    assert (tech.logprobs[0] - tech.logprobs[1]) > (faith.logprobs[0] - faith.logprobs[1])
    assert embedded_backend.model_id.startswith("gemma-3-270m") and len(embedded_backend.sha256) == 64


def test_embedded_model_labels_real_users_and_caches(
    loaded_store: Store, coarse_taxonomy: Taxonomy, gold_coarse: dict[str, str]
) -> None:
    config = LabelConfig(backend="llamacpp:default", scorers=[ScorerSpec("llm", 1.0)])
    users = sorted(gold_coarse)[:4]
    first = label_users(loaded_store, coarse_taxonomy, config, users=users)
    assert first.stats["calls"] == 4 and first.stats["prompt_tokens"] > 4 * 50
    assert all(lab.primary_segment in coarse_taxonomy.ids for lab in first.labels)
    assert all(lab.model_id.startswith("gemma-3-270m") for lab in first.labels)
    second = label_users(loaded_store, coarse_taxonomy, config, users=users)
    assert second.stats["calls"] == 0 and second.stats["cache_hits"] == 4
