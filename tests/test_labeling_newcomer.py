"""Issue 17's labeling fixes, each checked on the fake backend: contentless users abstain, Ctrl-C keeps the labels
already answered, progress moves per user, options are validated, --redact and --samples do what they say."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from llm_labeler.errors import ConfigError, InputError, RunInterrupted
from llm_labeler.history import has_content
from llm_labeler.labeling import LabelConfig, label_users, plan_run
from llm_labeler.labeling.prepare import prepare
from llm_labeler.schemas import Event, Taxonomy
from llm_labeler.segments import ScoreResult, ScorerSpec, combine
from llm_labeler.store import Store

FAKE_LLM = LabelConfig(backend="fake:echo", scorers=[ScorerSpec("llm", 1.0)])


def _ingest(store: Store, tmp_path: Path, rows: list[dict[str, str]]) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    store.ingest(path)


def test_markup_entities_and_dots_are_no_history() -> None:
    noise = [Event(user_id="u", item_title=t) for t in ("<br/>", "&nbsp;", "...", " <p></p> ", "—")]
    assert not has_content(noise)
    assert has_content([Event(user_id="u", item_title="<b>好手机</b>")])  # three CJK characters say something


def test_a_user_whose_titles_are_only_markup_abstains_for_every_scorer(store: Store, tmp_path: Path) -> None:
    rows = [{"user_id": "noise", "item_title": t} for t in ("<br/>", "&nbsp;", "...")]
    rows += [{"user_id": "real", "item_title": "My SCSI disk fails to boot with the new controller"}]
    _ingest(store, tmp_path, rows)
    tax = _tiny_taxonomy()
    config = LabelConfig(
        backend="fake:echo", scorers=[ScorerSpec("llm", 0.5), ScorerSpec("json", 1.0, "none")]
    )
    result = label_users(store, tax, config)
    by_user = {lab.user_id: lab for lab in result.labels}
    assert by_user["noise"].abstained and by_user["noise"].abstain_reason == "empty history"
    assert by_user["noise"].primary_segment is None and by_user["real"].primary_segment
    assert not store.query("SELECT 1 FROM calls WHERE user_id = 'noise'")  # no scorer was asked about noise


def test_ctrl_c_stores_the_labels_of_users_already_answered(
    loaded_store: Store, coarse_taxonomy: Taxonomy
) -> None:
    seen: list[float] = []

    def progress(p: object) -> None:
        seen.append(p.done)  # type: ignore[attr-defined]
        if p.done >= 5:  # type: ignore[attr-defined]
            raise KeyboardInterrupt

    config = LabelConfig(backend="fake:echo", scorers=[ScorerSpec("llm", 1.0)], chunk_size=32)
    with pytest.raises(RunInterrupted) as stopped:
        label_users(loaded_store, coarse_taxonomy, config, limit=20, progress=progress)
    stored = loaded_store.labels(stopped.value.run_id)
    assert len(stored) == stopped.value.labeled == 5 and stopped.value.total == 20
    assert loaded_store.get_run(stopped.value.run_id)["status"] == "stopped"
    assert seen[:3] == [
        0,
        1,
        2,
    ]  # per user, inside the first chunk of 32, with the total known from the start
    rerun = label_users(loaded_store, coarse_taxonomy, config, limit=20)
    assert rerun.stats["cache_hits"] == 5 and rerun.stats["calls"] == 15  # resumes, pays for nothing twice


@pytest.mark.parametrize(
    ("field", "value"),
    [("threshold", 1.5), ("threshold", -0.1), ("budget_tokens", 0), ("temperature", 0.0), ("concurrency", 0)],
)
def test_label_options_out_of_range_are_refused(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=field):
        LabelConfig(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize("limit", [0, -3])
def test_a_limit_below_one_is_an_error_not_everyone(
    loaded_store: Store, coarse_taxonomy: Taxonomy, limit: int
) -> None:
    with pytest.raises(InputError, match="at least 1"):
        label_users(loaded_store, coarse_taxonomy, FAKE_LLM, limit=limit)
    with pytest.raises(InputError, match="at least 1"):
        plan_run(loaded_store, coarse_taxonomy, FAKE_LLM, limit=limit)


def test_explicit_redact_on_a_local_backend_redacts_what_the_model_reads(
    store: Store, tmp_path: Path
) -> None:
    _ingest(
        store, tmp_path, [{"user_id": "a", "item_title": "Write to jane.doe@example.com about my SCSI disk"}]
    )
    tax = _tiny_taxonomy()
    quiet = label_users(store, tax, FAKE_LLM)
    assert (
        "jane.doe@example.com"
        in store.query("SELECT request FROM calls WHERE run_id = ?", [quiet.run_id])[0]["request"]
    )
    redacted = label_users(
        store, tax, LabelConfig(backend="fake:echo", scorers=[ScorerSpec("llm", 1.0)], redact=True)
    )
    request = store.query("SELECT request FROM calls WHERE run_id = ?", [redacted.run_id])[0]["request"]
    assert "jane.doe@example.com" not in request and redacted.stats["redactions"].get("email") == 1


def test_samples_without_a_json_scorer_says_it_does_not_apply(coarse_taxonomy: Taxonomy) -> None:
    setup = prepare(
        LabelConfig(backend="fake:echo", scorers=[ScorerSpec("llm", 1.0)], samples=3), coarse_taxonomy
    )
    assert any("--samples 3 applies to the json scorer only" in n for n in setup.notes)


def test_the_rationale_says_which_scorers_agree_not_only_the_probabilities(coarse_taxonomy: Taxonomy) -> None:
    ids = coarse_taxonomy.ids
    llm = ScoreResult("u", [5.0 if s == "science" else 0.0 for s in ids])
    emb = ScoreResult("u", [0.9 if s == "computers" else 0.1 for s in ids])
    specs = [ScorerSpec("llm", 0.3, "none"), ScorerSpec("embedding", 1.0, "none")]
    out = combine(coarse_taxonomy, {"llm": llm, "embedding": emb}, specs, {}, 1.5)
    assert out.primary == "computers"
    assert "embedding put Computers and technology first" in out.rationale, out.rationale
    assert "llm put Science and engineering first" in out.rationale, out.rationale
    assert np.isclose(sum(out.probabilities.values()), 1.0)


def _tiny_taxonomy() -> Taxonomy:
    return Taxonomy.model_validate(
        {
            "name": "tiny",
            "segments": [
                {
                    "id": "computers",
                    "name": "Computers",
                    "description": "Hardware, disks, controllers, software.",
                },
                {"id": "sports", "name": "Sports", "description": "Hockey, baseball, teams and games."},
            ],
        }
    )


def test_rationales_and_profiles_are_asked_in_the_configured_language(
    loaded_store: Store, coarse_taxonomy: Taxonomy
) -> None:
    def request(config: LabelConfig) -> str:
        run = label_users(loaded_store, coarse_taxonomy, config, limit=1)
        rows = loaded_store.query(
            "SELECT stage, request FROM calls WHERE run_id = ? ORDER BY stage", [run.run_id]
        )
        return "\n".join(r["request"] for r in rows)

    base = {"backend": "fake:echo", "scorers": [ScorerSpec("json", 1.0, "none")], "profile": True}
    english = request(LabelConfig(**base))  # type: ignore[arg-type]
    assert english.count("in English") == 2  # the answer's rationale and the profile
    own = request(LabelConfig(**base, answer_language="user"))  # type: ignore[arg-type]
    assert own.count("the language most of the user's activity is written in") == 2
    assert "written in 中文" in request(LabelConfig(**base, answer_language="中文"))  # type: ignore[arg-type]
