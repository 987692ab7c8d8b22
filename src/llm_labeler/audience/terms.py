"""Distinctive terms of each segment: words (Han, kana and Hangul text: character bigrams) that its users use far
more often than everyone else, ranked by the z-score of the smoothed log-odds ratio of document frequencies."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping

__all__ = ["STOPWORDS", "distinctive_terms", "tokens"]

_WORD = re.compile(r"[^\W\d_]{3,}")
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]+")
_STOP = (
    "the and for are but not you all any can had her was one our out has have him his how its may new now old see "
    "two way who did get let put say she too use that with this from they will would there their what about which "
    "when make like time just know take into year your some could them than then look only come over think also "
    "back after work first well even want because these give most very been were more much such does here where "
    "should those through being both each other many same said while still yes don doesn isn didn can't writes "
    "article wrote anyone something thing things really going people good"
)
STOPWORDS = frozenset(_STOP.split())


def tokens(text: str) -> set[str]:
    """The distinct terms of one document (lower-cased words of 3+ letters, CJK character bigrams)."""
    found = {w for w in (m.lower() for m in _WORD.findall(_CJK.sub(" ", text))) if w not in STOPWORDS}
    for run in _CJK.findall(text):
        found.update(run[i : i + 2] for i in range(len(run) - 1))
    return found


def distinctive_terms(
    docs: Mapping[str, str], groups: Mapping[str, str], k: int = 10, min_users: int = 2
) -> dict[str, list[tuple[str, float]]]:
    """Each group's k most distinctive terms with their z-scores; users without a group count as "everyone else"."""
    df_all: Counter[str] = Counter()
    df: dict[str, Counter[str]] = {}
    sizes: Counter[str] = Counter()
    for user, doc in docs.items():
        terms = tokens(doc)
        df_all.update(terms)
        group = groups.get(user)
        if group is not None:
            df.setdefault(group, Counter()).update(terms)
            sizes[group] += 1
    total = len(docs)
    out = {}
    for group, counts in df.items():
        n_in, n_out = sizes[group], total - sizes[group]
        scored = [
            (term, _z(c, n_in, df_all[term] - c, n_out))
            for term, c in counts.items()
            if c >= max(min_users, 0.05 * n_in)
        ]
        out[group] = sorted((t for t in scored if t[1] > 0), key=lambda t: (-t[1], t[0]))[:k]
    return out


def _z(a: int, n_a: int, b: int, n_b: int) -> float:
    """z-score of the log-odds ratio of a term in a users of n_a against b users of n_b (add-half smoothing)."""
    a1, a0, b1, b0 = a + 0.5, n_a - a + 0.5, b + 0.5, n_b - b + 0.5
    return (math.log(a1 / a0) - math.log(b1 / b0)) / math.sqrt(1 / a1 + 1 / a0 + 1 / b1 + 1 / b0)
