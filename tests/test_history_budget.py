"""History rendering spends its budget on informative events: coverage, no repeated subjects, breadth, bounds."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from llm_labeler.history import approx_tokens, render_history, subject_key
from llm_labeler.schemas import Event

T0 = datetime(1993, 4, 1)


def _post(i: int, title: str | None = "Topic", text: str = "", category: str | None = None) -> Event:
    return Event(
        user_id="u",
        ts=T0 + timedelta(hours=i),
        event_type="post",
        item_id=f"p{i}",
        item_title=title,
        item_category=category,
        text=text,
    )


def _fixture_users(events_path: Path) -> dict[str, list[Event]]:
    users: dict[str, list[Event]] = {}
    for line in events_path.read_text(encoding="utf-8").splitlines():
        event = Event(**json.loads(line))
        users.setdefault(event.user_id, []).append(event)
    return users


@pytest.mark.parametrize("budget", [60, 100, 200, 400, 800])
def test_budget_is_never_exceeded_on_real_users(events_path: Path, budget: int) -> None:
    for events in _fixture_users(events_path).values():
        rendered = render_history(events, budget)
        assert rendered.tokens <= budget
        assert approx_tokens(rendered.text) <= budget + rendered.n_used
        assert rendered.n_used >= 1


def test_more_budget_never_shows_fewer_events(events_path: Path) -> None:
    for events in _fixture_users(events_path).values():
        used = [render_history(events, b).n_used for b in (100, 200, 400, 800)]
        tokens = [render_history(events, b).tokens for b in (100, 200, 400, 800)]
        assert used == sorted(used)
        assert tokens == sorted(tokens)


def test_repeated_subjects_are_shown_once_and_reply_markers_dropped() -> None:
    events = [
        _post(0, "Gulf War", "first post about the war"),
        _post(1, "Re: Gulf War", "a reply in the same thread"),
        _post(2, "RE: re: Gulf War (was: Death penalty)", "another reply"),
        _post(3, "Hockey playoffs", "the Penguins will win"),
    ]
    rendered = render_history(events, 400)
    assert rendered.text.count("Gulf War") == 1
    assert "Re:" not in rendered.text and "RE:" not in rendered.text
    for body in ("first post", "a reply in the same thread", "another reply", "Penguins"):
        assert body in rendered.text  # the bodies stay: only the repeated subject goes
    assert rendered.n_used == 4


def test_subject_key_normalises_reply_markers_and_was_tails() -> None:
    assert subject_key("Re: Re: Gulf War (was Re: Death Penalty)") == "gulf war"
    assert subject_key("Fwd: AW: Sale") == "sale"
    assert subject_key(None) == ""


def test_a_repeated_subject_without_a_body_is_dropped() -> None:
    events = [_post(0, "Selling a 386", ""), _post(1, "Re: Selling a 386", "asking $150")]
    rendered = render_history(events, 400)
    assert rendered.n_used == 1
    assert rendered.item_ids == ["p1"]


def test_bodies_shrink_so_that_more_events_fit() -> None:
    long = "word " * 200  # 1,000 characters each
    events = [_post(i, f"Subject number {i}", long) for i in range(8)]
    wide = render_history(events, 400, max_chars_per_event=300)
    assert wide.n_used == 8  # every subject is shown, with shorter bodies
    assert all(len(s) < 200 for s in wide.snippets)
    # With room for all of them at full length, bodies are not cut below max_chars_per_event.
    roomy = render_history(events, 4000, max_chars_per_event=300)
    assert roomy.n_used == 8 and all(len(s) > 280 for s in roomy.snippets)


def test_every_category_is_covered_before_a_second_event_of_one() -> None:
    events = [_post(i, f"sports {i}", "x" * 150, "sports") for i in range(6)]
    events.append(_post(6, "a mixer", "y" * 150, "kitchen"))
    rendered = render_history(events, 80)
    assert "kitchen" in rendered.text and "sports" in rendered.text


def test_listed_oldest_first_and_ids_match_the_used_events() -> None:
    events = [_post(i, f"subject {i}", f"body {i}") for i in range(5)]
    rendered = render_history(events, 400, with_ids=True)
    assert rendered.item_ids == [f"p{i}" for i in range(5)]
    positions = [rendered.text.index(f"body {i}") for i in range(5)]
    assert positions == sorted(positions)


def test_long_histories_stop_counting_tokens_once_the_budget_is_spent() -> None:
    events = [_post(i, f"subject {i}", "some text " * 30) for i in range(2000)]
    calls = []

    def counting(text: str) -> int:
        calls.append(text)
        return approx_tokens(text)

    rendered = render_history(events, 200, count_tokens=counting)
    assert rendered.tokens <= 200
    assert len(calls) < 100  # not one tokenizer call per event of a 2,000-event history


def test_a_single_huge_event_is_cut_to_fit() -> None:
    rendered = render_history([_post(0, "essay", "word " * 5000)], 100)
    assert rendered.n_used == 1
    assert rendered.text.endswith("…")


def test_empty_history_stays_empty() -> None:
    assert render_history([], 400).empty
