"""Chinese (and other CJK) histories in prompts: the budget holds, cuts land between characters, estimates are sane."""

from __future__ import annotations

import csv
import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest

from llm_labeler.history import approx_tokens, clean_text, render_history
from llm_labeler.schemas import Event

TOUTIAO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "toutiao_readers" / "events.csv"
# A real headline and keyword style (toutiao_readers), made long: Chinese has no spaces to cut at.
HEADLINE = "2019亚洲杯分组揭晓，国足抽中绝对好签，如何看待国足的分组？"
BODY = "国足在小组赛中以三比一战胜对手，看台上的球迷高声欢呼，主教练赛后表示球队还有很大的提升空间。" * 12
# What the prompt shows: NFKC turns the full-width ，？ into plain ,?
SHOWN_HEADLINE, SHOWN_BODY = clean_text(HEADLINE), clean_text(BODY)


def _view(i: int, title: str | None, text: str | None = None) -> Event:
    return Event(user_id="u", event_type="view", item_id=f"n{i}", item_title=title, text=text)


def _toutiao_users() -> list[list[Event]]:
    if not TOUTIAO.exists():
        pytest.skip("toutiao_readers dataset not present")
    users: dict[str, list[Event]] = {}
    with TOUTIAO.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            fields = {k: v or None for k, v in row.items() if k not in ("ts", "rating")}
            users.setdefault(row["user_id"], []).append(Event(**fields))
    return list(users.values())


def _intact(text: str) -> bool:
    """Valid UTF-8 both ways, no replacement character."""
    return "\ufffd" not in text and text.encode("utf-8").decode("utf-8") == text


def _extends(ch: str) -> bool:
    """Belongs to the character before it: a combining mark, variation selector, joiner or skin tone."""
    return unicodedata.category(ch).startswith("M") or ch == "\u200d" or "\U0001f3fb" <= ch <= "\U0001f3ff"


def _cut_cleanly(full: str, snippet: str) -> bool:
    """The snippet's body is a prefix of `full` that stops between two user-perceived characters."""
    body = snippet.partition(" — ")[2].removesuffix("…")
    assert full.startswith(body), (body[-10:], full[:40])
    flags = len(body) - len(body.rstrip("".join(chr(c) for c in range(0x1F1E6, 0x1F200))))
    return len(body) == len(full) or (not _extends(full[len(body)]) and flags % 2 == 0)


def per_character(text: str) -> int:
    """A tokenizer-free worst case: one token for every character, Latin included."""
    return len(text)


COUNTERS: list[Callable[[str], int]] = [approx_tokens, per_character]


@pytest.mark.parametrize("count", COUNTERS, ids=["approx", "per_char"])
@pytest.mark.parametrize("budget", [20, 30, 60, 100, 200, 400])
def test_chinese_readers_stay_within_the_budget(budget: int, count: Callable[[str], int]) -> None:
    for events in _toutiao_users():
        rendered = render_history(events, budget, count_tokens=count)
        assert rendered.tokens <= budget, rendered.text
        assert sum(count(f"- {s}") + 1 for s in rendered.snippets) == rendered.tokens
        assert rendered.n_used >= 1 and not rendered.empty
        assert _intact(rendered.text)


@pytest.mark.parametrize("count", COUNTERS, ids=["approx", "per_char"])
@pytest.mark.parametrize("budget", [20, 30, 60, 100, 150])
def test_one_long_chinese_event_is_cut_at_the_budget_not_dropped(
    budget: int, count: Callable[[str], int]
) -> None:
    rendered = render_history([_view(0, HEADLINE, BODY)], budget, count_tokens=count)
    assert rendered.n_used == 1 and rendered.tokens <= budget
    assert count(rendered.text) + 1 == rendered.tokens
    assert rendered.text.endswith("…") and _intact(rendered.text)
    assert rendered.tokens >= budget // 2  # cut to fit, not thrown away
    shown = rendered.text[2:-1].removeprefix("[view] ")
    assert f"{SHOWN_HEADLINE} — {SHOWN_BODY}".startswith(shown)


def test_chinese_bodies_without_spaces_are_cut_at_max_chars() -> None:
    rendered = render_history([_view(0, HEADLINE, BODY)], 4000, max_chars_per_event=120)
    assert rendered.snippets == [f"[view] {SHOWN_HEADLINE} — {SHOWN_BODY[:120]}…"]
    events = [_view(i, f"{HEADLINE}{i}", BODY) for i in range(8)]
    narrow = render_history(events, 400, max_chars_per_event=300)
    assert narrow.n_used >= 3 and narrow.tokens <= 400
    for snippet in narrow.snippets:
        assert snippet.endswith("…") and len(snippet.partition(" — ")[2]) >= 80  # shortened, never emptied


def test_mixed_chinese_and_english_lines() -> None:
    body = (
        "苹果发布新款iPhone X，售价8388元起。Apple unveiled the new phone in Cupertino 今天在库比蒂诺发布。"
        * 6
    )
    events = [
        _view(0, "Apple发布会：iPhone X来了", body),
        _view(1, "NBA季后赛 Warriors vs Rockets", "勇士队 won 4-3"),
    ]
    rendered = render_history(events, 120, max_chars_per_event=100)
    assert rendered.n_used == 2 and rendered.tokens <= 120
    assert "Apple发布会：iPhone X来了" not in rendered.text  # NFKC: the full-width colon is a plain one
    assert "Apple发布会:iPhone X来了" in rendered.text and "勇士队 won 4-3" in rendered.text
    first = rendered.snippets[0].partition(" — ")[2]
    assert first.endswith("…") and 50 <= len(first) <= 101 and clean_text(body).startswith(first[:-1])
    assert first[-2] != " " and _intact(rendered.text)  # cut at the last space, the space not kept


def test_approx_tokens_counts_one_token_per_cjk_character() -> None:
    assert approx_tokens("国足抽中绝对好签") == 8
    assert approx_tokens("ひらがなカタカナ") == 8 and approx_tokens("한국어") == 3
    assert approx_tokens("the quick brown fox") == 5  # ~4 Latin characters a token, as before
    assert approx_tokens("iPhone X售价8388元") == 3 + 3  # 3 CJK, 12 other characters
    # Extension B ideographs (names such as 𠮷野家) and full-width punctuation are one token each too.
    assert approx_tokens("𠮷" * 8) == 8
    assert approx_tokens("科技读者：关注手机、互联网！") == 14
    assert approx_tokens(BODY) >= len(BODY) * 0.9


@pytest.mark.parametrize(
    "body",
    [
        "สวัสดีครับ" * 40,  # Thai vowel and tone marks
        "葛\U000e0100城" * 60,  # ideographic variation selectors (a name's exact glyph)
        "点赞👍🏻" * 80,  # skin-tone modifiers
        "中国队加油🇨🇳" * 60,  # a flag is two regional indicators
        "q\u0323\u0307o\u0304 " * 60,  # marks with no precomposed form, which NFKC leaves as they are
    ],
    ids=["thai", "ivs", "skin_tone", "flag", "accent"],
)
def test_cuts_never_split_a_character_from_its_marks(body: str) -> None:
    full = clean_text(body)
    for cap in range(80, 120):
        rendered = render_history([_view(0, "测试", body)], 4000, max_chars_per_event=cap)
        assert _intact(rendered.text) and _cut_cleanly(full, rendered.snippets[0]), cap
    for budget in (20, 30, 40, 60):
        rendered = render_history([_view(0, "测试", body)], budget, count_tokens=per_character)
        assert rendered.tokens <= budget and _cut_cleanly(full, rendered.snippets[0]), budget
