"""Turn a user's events into budgeted, cleaned prompt text."""

from __future__ import annotations

import html
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from .schemas import Event

__all__ = ["RenderedHistory", "approx_tokens", "clean_text", "event_snippet", "render_history"]

_TAG = re.compile(r"<[^>]{0,200}>")
_QUOTE = re.compile(r"^\s*(>|\|>).*$", re.MULTILINE)
_ATTRIBUTION = re.compile(r"^.{0,120}\b(writes|wrote|said):\s*$", re.MULTILINE | re.IGNORECASE)
_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n+")
_CJK = re.compile(r"[\u3000-\u9fff\uac00-\ud7af\uf900-\ufaff]")
MIN_HISTORY_CHARS = 12


def clean_text(text: str | None) -> str:
    """Strip HTML, quoted replies and attribution lines; normalise Unicode and whitespace."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", html.unescape(_TAG.sub(" ", text)))
    text = _ATTRIBUTION.sub("", _QUOTE.sub("", text))
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    text = _SPACE.sub(" ", text)
    return _BLANKS.sub("\n", text).strip()


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate: ~4 Latin characters a token, one token per CJK character."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


def event_snippet(event: Event, max_chars: int = 300, with_id: bool = False) -> str:
    """One event as a compact line: type, title, category, rating and the start of its text."""
    head = [f"[{event.event_type or 'event'}]"]
    if with_id and event.item_id:
        head.append(f"[id: {event.item_id}]")
    if event.item_title:
        head.append(clean_text(event.item_title)[:120])
    if event.item_category:
        head.append(f"(category: {clean_text(event.item_category)[:60]})")
    if event.rating is not None:
        head.append(f"(rating: {event.rating:g})")
    body = clean_text(event.text).replace("\n", " ")
    line = " ".join(head)
    if body:
        line += " — " + _truncate(body, max_chars)
    return line


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    # CJK text has no spaces: cut on the character budget rather than losing the whole snippet.
    return (cut[:space] if space > max_chars // 2 else cut) + "…"


@dataclass
class RenderedHistory:
    """A history rendered for a prompt, with what was used."""

    text: str
    item_ids: list[str] = field(default_factory=list)
    snippets: list[str] = field(default_factory=list)
    n_events: int = 0
    n_used: int = 0
    tokens: int = 0

    @property
    def empty(self) -> bool:
        """Too little text to judge from: the user abstains without an LLM call."""
        return len(self.text.strip()) < MIN_HISTORY_CHARS


def render_history(
    events: Sequence[Event],
    budget_tokens: int = 400,
    max_chars_per_event: int = 300,
    count_tokens: Callable[[str], int] = approx_tokens,
    with_ids: bool = False,
) -> RenderedHistory:
    """Spend the token budget on the most recent events of each kind first, then list them oldest first."""
    chosen: list[tuple[int, str]] = []
    used = 0
    for index in _priority_order(events):
        line = "- " + event_snippet(events[index], max_chars_per_event, with_ids)
        if len(line) < 6:
            continue
        cost = count_tokens(line) + 1
        if used + cost > budget_tokens:
            if chosen:
                continue  # a shorter event further down may still fit
            line = "- " + event_snippet(events[index], max(40, budget_tokens * 3), with_ids)
            cost = count_tokens(line) + 1
        chosen.append((index, line))
        used += cost
    chosen.sort()
    ids = [events[i].item_id for i, _ in chosen if events[i].item_id]
    return RenderedHistory(
        text="\n".join(line for _, line in chosen),
        item_ids=[i for i in ids if i],
        snippets=[line[2:] for _, line in chosen],
        n_events=len(events),
        n_used=len(chosen),
        tokens=used,
    )


def _priority_order(events: Sequence[Event]) -> list[int]:
    """Round-robin over (event type, category) groups, newest first within each group."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, event in enumerate(events):
        groups[(event.event_type or "", event.item_category or "")].append(i)
    floor = datetime.min
    for members in groups.values():
        members.sort(key=lambda i: (events[i].ts or floor, i), reverse=True)
    order: list[int] = []
    queues = sorted(groups.values(), key=lambda m: (events[m[0]].ts or floor, m[0]), reverse=True)
    depth = 0
    while len(order) < len(events):
        for members in queues:
            if depth < len(members):
                order.append(members[depth])
        depth += 1
    return order
