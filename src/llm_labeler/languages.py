"""A user's dominant script, and the language it implies, from the Unicode scripts of the letters they wrote.

Why a script rule and not a language detector: it needs no dependency and no model, runs offline and fast, and it
answers the question the pipeline needs answered (which writing system: are words separated by spaces, which
embedding model and featurizer fit) without guessing, so a short headline cannot throw it the way it can throw an
n-gram detector. Its limit is stated instead of hidden: a script names a language only where (almost) one language
writes it, so:

- Han -> "zh"; Han with kana -> "ja" (Japanese writes Han too: kana are what tell it apart, see KANA_SHARE);
  kana alone -> "ja"; Hangul -> "ko"; Thai -> "th"; Greek -> "el"; Hebrew -> "he"; Georgian -> "ka", Armenian ->
  "hy", and the Indic scripts of one language each (Tamil "ta", Telugu "te", Kannada "kn", Malayalam "ml",
  Gujarati "gu", Gurmukhi "pa", Oriya "or", Sinhala "si"), Lao "lo", Khmer "km", Thaana "dv";
- a script many languages share is reported as the script: "latin" (English, French, Vietnamese, Indonesian ...),
  "cyrillic" (Russian, Ukrainian, Kazakh ...), "arabic" (Arabic, Persian, Urdu ...), "devanagari" (Hindi, Marathi,
  Nepali ...), "bengali", "ethiopic", ...; letters of any other script count as "other";
- "und" (BCP 47's "undetermined") when a text has no letters at all (digits, punctuation, emoji, URLs only).

What counts: letters only (Unicode category L; digits, punctuation, symbols, combining marks and modifier letters
such as ʼ are ignored), after URLs, e-mail addresses, HTML/XML tags and entities are removed. A Han, kana or Hangul character
writes a whole syllable where an alphabet needs about two letters, so it weighs SYLLABLE_WEIGHT letters: a
Chinese headline that names "iPhone 15 Pro Max" stays Chinese. The dominant script is the one with the most
(weighted) letters; ties go to the script listed first in SCRIPTS. A user's language is that of all their events
taken together (detect_user_languages; the store reads the first 1,000 characters of each event).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence

import numpy as np

__all__ = [
    "KANA_SHARE",
    "NO_LANGUAGE",
    "SCRIPTS",
    "SYLLABLE_WEIGHT",
    "detect_language",
    "detect_user_languages",
    "language_of",
    "script_counts",
]

# The scripts told apart, in tie-break order, and the language each implies (itself where it implies none).
_SCRIPT_LANGUAGE: dict[str, str] = {
    "han": "zh",
    "kana": "ja",
    "hangul": "ko",
    "thai": "th",
    "latin": "latin",
    "cyrillic": "cyrillic",
    "arabic": "arabic",
    "devanagari": "devanagari",
    "greek": "el",
    "hebrew": "he",
    "bengali": "bengali",
    "tamil": "ta",
    "telugu": "te",
    "kannada": "kn",
    "malayalam": "ml",
    "gujarati": "gu",
    "gurmukhi": "pa",
    "oriya": "or",
    "sinhala": "si",
    "lao": "lo",
    "khmer": "km",
    "myanmar": "myanmar",
    "tibetan": "tibetan",
    "georgian": "ka",
    "armenian": "hy",
    "ethiopic": "ethiopic",
    "thaana": "dv",
    "syriac": "syriac",
    "mongolian": "mongolian",
    "other": "other",
}
SCRIPTS: tuple[str, ...] = tuple(_SCRIPT_LANGUAGE)
NO_LANGUAGE = "und"
# Han + kana text is Japanese once kana are at least this share of it. Chinese has no kana at all, and even
# kanji-heavy Japanese (headlines) is expected to carry more than a tenth (an estimate: not measured on a Japanese
# corpus here); a Chinese reader's occasional Japanese title stays below it.
KANA_SHARE = 0.1
SYLLABLE_WEIGHT = 2
_SYLLABIC = frozenset({"han", "kana", "hangul"})
# The first word of a letter's Unicode name -> its script, where that word is not the script's own name.
_NAME_SCRIPT = {
    "CJK": "han",
    "IDEOGRAPHIC": "han",  # 々 〆: written with Han
    "BOPOMOFO": "han",  # Mandarin's phonetic letters, written inside Chinese text
    "HIRAGANA": "kana",
    "KATAKANA": "kana",
    "KATAKANA-HIRAGANA": "kana",  # ー, the long-vowel mark
}
_IGNORED_NAMES = frozenset({"MODIFIER", "MATHEMATICAL"})  # letters used as diacritics or as symbols
_WIDTH_PREFIXES = ("FULLWIDTH ", "HALFWIDTH ")
# What is not prose: tags and entities of HTML/XML, URLs, e-mail addresses. Each pattern runs only on texts that
# hold its marker (a plain substring test): one pattern with alternatives would cost a regex attempt per letter.
# Tags go first (a URL inside an attribute must not swallow the text after it); a URL or address is taken to be
# ASCII, so one glued to Chinese text ("详见https://t.cn/x今天") leaves the Chinese.
_URL_BODY = "[!#-&(-;=?-~]+"  # printable ASCII but quotes and angle brackets
_NOISE = (
    ("<", re.compile(r"<[^<>]{0,500}>")),
    ("&", re.compile(r"&#?\w{1,10};")),
    ("://", re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://" + _URL_BODY)),
    ("www.", re.compile(r"\bwww\." + _URL_BODY)),
    ("@", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+\.[A-Za-z0-9.-]+")),
)
_PAGE = 8  # the lookup table is filled 256 code points at a time, only for pages some text uses
_TABLE = np.zeros(0x110000, dtype=np.uint8)  # code point -> 1 + index in SCRIPTS, 0 for a non-letter
_FILLED = np.zeros(0x110000 >> _PAGE, dtype=bool)
_BATCH = 10_000


def script_counts(text: str) -> dict[str, int]:
    """Letters per script in `text` (scripts with none are left out), URLs and markup removed first."""
    row = _count_rows([text])[0]
    return {SCRIPTS[i]: int(n) for i, n in enumerate(row) if n}


def language_of(counts: Mapping[str, int]) -> str:
    """The language (or script) of the dominant script in letter counts such as script_counts gives."""
    weighted = {s: n * (SYLLABLE_WEIGHT if s in _SYLLABIC else 1) for s, n in counts.items() if n > 0}
    if not weighted:
        return NO_LANGUAGE
    han, kana = counts.get("han", 0), counts.get("kana", 0)
    if han or kana:  # Chinese or Japanese: one writing system, told apart below
        weighted["han"] = weighted.pop("han", 0) + weighted.pop("kana", 0)
    order = {s: i for i, s in enumerate(SCRIPTS)}
    best = max(weighted, key=lambda s: (weighted[s], -order.get(s, len(order))))
    if best == "han":
        return "ja" if kana >= KANA_SHARE * (han + kana) else "zh"
    return _SCRIPT_LANGUAGE.get(best, "other")


def detect_language(text: str) -> str:
    """The language (or script) a text is written in; NO_LANGUAGE when it has no letters."""
    return language_of(script_counts(text))


def detect_user_languages(rows: Iterable[tuple[str, str | None]]) -> Iterator[tuple[str, str]]:
    """(user_id, language) of each user, from (user_id, text) rows that come grouped by user (ORDER BY user_id).

    Streams: rows are counted in vectorised batches, and a user's language is yielded as soon as their rows end.
    """
    current: str | None = None
    total = np.zeros(len(SCRIPTS), dtype=np.int64)
    for chunk in _chunks(rows, _BATCH):
        users = [u for u, _ in chunk]
        counts = _count_rows([t or "" for _, t in chunk])
        starts = [0] + [i for i in range(1, len(users)) if users[i] != users[i - 1]]
        for start, summed in zip(starts, np.add.reduceat(counts, starts, axis=0), strict=True):
            if users[start] != current:
                if current is not None:
                    yield current, _language_of_row(total)
                current, total = users[start], np.zeros(len(SCRIPTS), dtype=np.int64)
            total += summed
    if current is not None:
        yield current, _language_of_row(total)


def _chunks(rows: Iterable[tuple[str, str | None]], size: int) -> Iterator[list[tuple[str, str | None]]]:
    chunk: list[tuple[str, str | None]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _language_of_row(row: np.ndarray) -> str:
    return language_of({SCRIPTS[i]: int(n) for i, n in enumerate(row) if n})


def _count_rows(texts: Sequence[str]) -> np.ndarray:
    """Letters per script of each text, as a (texts, SCRIPTS) matrix: one pass over all code points at once."""
    cleaned = [_prose(t) for t in texts]
    codes = np.frombuffer("".join(cleaned).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    owner = np.repeat(np.arange(len(cleaned)), [len(t) for t in cleaned])
    scripts = _lookup(codes)
    letters = scripts > 0
    flat = np.bincount(
        owner[letters] * len(SCRIPTS) + scripts[letters] - 1, minlength=len(cleaned) * len(SCRIPTS)
    )
    return flat.reshape(len(cleaned), len(SCRIPTS))


def _prose(text: str) -> str:
    """The text without URLs, e-mail addresses and markup."""
    for marker, pattern in _NOISE:
        if marker in text:
            text = pattern.sub(" ", text)
    return text


def _lookup(codes: np.ndarray) -> np.ndarray:
    """Each code point's 1 + script index (0: not a letter), filling the table for pages not seen before."""
    if codes.size:
        used = np.bincount(codes >> _PAGE) > 0
        for page in np.flatnonzero(used & ~_FILLED[: used.size]):
            first = int(page) << _PAGE
            _TABLE[first : first + (1 << _PAGE)] = [
                _script_index(chr(c)) for c in range(first, first + (1 << _PAGE))
            ]
            _FILLED[page] = True
    return _TABLE[codes]


def _script_index(char: str) -> int:
    """1 + the index in SCRIPTS of a letter's script (read off its Unicode name), 0 for anything else."""
    if not unicodedata.category(char).startswith("L"):
        return 0
    name = unicodedata.name(char, "")
    for prefix in _WIDTH_PREFIXES:
        name = name.removeprefix(prefix)
    word = name.split(" ", 1)[0]
    if word in _IGNORED_NAMES:
        return 0
    script = _NAME_SCRIPT.get(word, word.lower())  # a letter without a name (Tangut, Khitan ...) is "other"
    return SCRIPTS.index(script if script in _SCRIPT_LANGUAGE else "other") + 1
