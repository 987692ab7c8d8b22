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

__all__ = [
    "MIN_CONTENT_CHARS",
    "RenderedHistory",
    "approx_tokens",
    "clean_text",
    "content_chars",
    "has_content",
    "render_history",
    "subject_key",
]

_TAG = re.compile(r"<[^>]{0,200}>")
_QUOTE = re.compile(r"^\s*(>|\|>).*$", re.MULTILINE)
_ATTRIBUTION = re.compile(r"^.{0,120}\b(writes|wrote|said):\s*$", re.MULTILINE | re.IGNORECASE)
_SPACE = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n+")
# One token a character: CJK radicals, punctuation, kana and ideographs (extension A included), Hangul, compatibility
# ideographs and forms, full-width forms (，：！ in a taxonomy's description), and the ideographs beyond the BMP
# (extension B onwards: names such as 𠮷).
_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef\U00020000-\U0003ffff]")
MIN_HISTORY_CHARS = 12
# Letters and digits (any script) a history must hold, once cleaned, before anyone judges it: a user whose only
# titles are `<br/>`, `&nbsp;` or `...` has said nothing, and abstains.
MIN_CONTENT_CHARS = 3


def clean_text(text: str | None) -> str:
    """Strip HTML, quoted replies and attribution lines; normalise Unicode and whitespace."""
    if not text:
        return ""
    text = unicodedata.normalize("NFKC", html.unescape(_TAG.sub(" ", text)))
    text = _ATTRIBUTION.sub("", _QUOTE.sub("", text))
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    text = _SPACE.sub(" ", text)
    return _BLANKS.sub("\n", text).strip()


def content_chars(event: Event) -> int:
    """Letters and digits (any script) in an event's cleaned title, category and text: what it says."""
    fields = (event.item_title, event.item_category, event.text)
    return sum(ch.isalnum() for value in fields if value for ch in clean_text(value))


def has_content(events: Sequence[Event]) -> bool:
    """True when the events say anything at all once cleaned (markup, entities and punctuation do not count)."""
    total = 0
    for event in events:
        total += content_chars(event)
        if total >= MIN_CONTENT_CHARS:
            return True
    return False


def approx_tokens(text: str) -> int:
    """A tokenizer-free estimate: ~4 Latin characters a token, one token per CJK character."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


@dataclass(frozen=True)
class _Parts:
    """An event's cleaned head (type, id, title, category, rating) and body, cleaned once per render."""

    head: str
    body: str
    subject: str

    @classmethod
    def of(cls, event: Event, with_id: bool, show_title: bool = True) -> _Parts:
        # 'Re: Re: x' says 'x' in more tokens; the reply markers carry no interest.
        title = _cut(_REPLY.sub("", clean_text(event.item_title)), 120)
        head = [f"[{event.event_type or 'event'}]"]
        if with_id and event.item_id:
            head.append(f"[id: {event.item_id}]")
        if title and show_title:
            head.append(title)
        if event.item_category:
            head.append(f"(category: {_cut(clean_text(event.item_category), 60)})")
        if event.rating is not None:
            head.append(f"(rating: {event.rating:g})")
        body = clean_text(event.text).replace("\n", " ")
        return cls(" ".join(head), body, subject_key(title))

    def line(self, max_chars: int) -> str:
        return self.head + (" — " + _truncate(self.body, max_chars) if self.body else "")

    def approx_tokens(self, max_chars: int) -> int:
        """A cheap upper-ish estimate of line(max_chars)'s tokens, for planning only."""
        return approx_tokens(self.head) + (approx_tokens(self.body[:max_chars]) + 1 if self.body else 0)


def _truncate(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = _cut(text, max_chars)
    space = cut.rfind(" ")
    # CJK text has no spaces: cut on the character budget rather than losing the whole snippet.
    return (cut[:space] if space > max_chars // 2 else cut) + "…"


def _cut(text: str, max_chars: int) -> str:
    """At most max_chars code points, never ending inside a user-perceived character: a base letter keeps its
    marks (Thai vowels, accents NFKC cannot compose), an ideograph its variation selector, an emoji its skin tone,
    joined sequence or flag pair."""
    n = max_chars
    while 0 < n < len(text) and (_extends(text[n]) or text[n - 1] == "\u200d"):
        n -= 1
    if 0 < n < len(text) and _is_flag_half(text[n]):
        pairs = len(text[:n]) - len(text[:n].rstrip(_FLAG_HALVES))
        n -= pairs % 2  # an odd run of regional indicators before the cut: the last one is half a flag
    return text[:n]


_FLAG_HALVES = "".join(chr(c) for c in range(0x1F1E6, 0x1F200))


def _is_flag_half(ch: str) -> bool:
    return "\U0001f1e6" <= ch <= "\U0001f1ff"


def _extends(ch: str) -> bool:
    """True for a code point that belongs to the one before it (mark, joiner, emoji modifier or tag)."""
    return (
        unicodedata.category(ch)[0] == "M"
        or ch == "\u200d"
        or "\U0001f3fb" <= ch <= "\U0001f3ff"
        or "\U000e0020" <= ch <= "\U000e007f"
    )


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
    """Spend the token budget on the most informative events, then list them oldest first.

    Every kind and category is covered first (newest first within each); a subject already shown is not repeated
    ('Re: x' after 'x'); when the events do not all fit, bodies get shorter so that more of them do (a subject
    and a sentence say more about an interest than the tail of one long post).
    """
    order, parts = _candidates(events, budget_tokens, with_ids)
    cap = _breadth_cap(parts, budget_tokens, max_chars_per_event)
    chosen: list[tuple[int, str]] = []
    used = 0
    for index, part in zip(order, parts):
        if budget_tokens - used < MIN_LINE_TOKENS and chosen:
            break  # nothing useful fits any more
        line = "- " + part.line(cap)
        if chosen and part.approx_tokens(cap) > 2 * (budget_tokens - used):
            continue  # far too long for what is left: not worth a tokenizer call
        cost = count_tokens(line) + 1
        if used + cost > budget_tokens:
            if chosen:
                continue  # a shorter event further down may still fit
            line, cost = _first_line(part, budget_tokens, count_tokens)
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


def _first_line(part: _Parts, budget: int, count_tokens: Callable[[str], int]) -> tuple[str, int]:
    """The first event's line when it does not fit: a body of ~3 characters a token of budget, and if that still does
    not fit (Chinese is about one token a character; a long title alone can pass a small budget), the longest prefix
    of the line that does, found by bisection (about ten tokenizer calls, for this one line)."""
    line = "- " + part.line(max(40, budget * 3))
    cost = count_tokens(line) + 1
    if cost <= budget:
        return line, cost
    best: tuple[str, int] | None = None
    lo, hi = _MIN_CUT, len(line) - 1
    while lo <= hi:
        mid = (lo + hi) // 2
        cut = _truncate(line, mid)
        cut_cost = count_tokens(cut) + 1
        if cut_cost <= budget:
            best, lo = (cut, cut_cost), mid + 1
        else:
            hi = mid - 1
    if best is None:  # not even "- x…" fits a budget this small: the shortest line
        short = _truncate(line, _MIN_CUT)
        return short, count_tokens(short) + 1
    return best


_MIN_CUT = 3  # "- " and one character
MIN_LINE_TOKENS = 8  # below this much budget left, no event line fits
MIN_CHARS_PER_EVENT = 80  # bodies are never cut shorter than this to make room for more events
_REPLY = re.compile(r"^\s*((re|aw|fwd?|sv)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
_WAS = re.compile(r"\s*\((was|re)\b[^)]*\)?\s*$", re.IGNORECASE)


def subject_key(title: str | None) -> str:
    """A subject without reply/forward markers and '(was: ...)' tails, for spotting repeats of one thread."""
    text = clean_text(title).lower()
    return " ".join(_WAS.sub("", _REPLY.sub("", text)).split())


def _candidates(events: Sequence[Event], budget: int, with_ids: bool) -> tuple[list[int], list[_Parts]]:
    """Events in priority order as cleaned parts; a repeated subject loses its title (the body stays) or, with no
    body, the event; no more candidates than could ever fit (a line costs at least MIN_LINE_TOKENS / 2)."""
    seen: set[str] = set()
    order: list[int] = []
    parts: list[_Parts] = []
    limit = 2 * budget // MIN_LINE_TOKENS + 1
    for index in _priority_order(events):
        if len(parts) >= limit:
            break
        part = _Parts.of(events[index], with_ids)
        if part.subject and part.subject in seen:
            if not part.body:
                continue
            part = _Parts.of(events[index], with_ids, show_title=False)
        seen.add(part.subject)
        order.append(index)
        parts.append(part)
    return order, parts


def _breadth_cap(parts: Sequence[_Parts], budget: int, max_chars: int) -> int:
    """The longest body (down to MIN_CHARS_PER_EVENT) at which every event fits the budget, by estimate."""
    cap = max_chars
    while cap > MIN_CHARS_PER_EVENT and sum(p.approx_tokens(cap) + 2 for p in parts) > budget:
        cap = max(MIN_CHARS_PER_EVENT, int(cap * 0.7))
    return cap


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
