"""Confidence for generated answers: token logprobs normalised over the allowed segments, or sample votes.

A schema-constrained answer names one segment; the model's self-reported "confidence" number is a poor signal.
Where the backend returns token logprobs, the alternatives at the position where the segment id starts tell how
much probability each allowed segment had. Where it does not, k samples at a temperature above zero give a vote
distribution (self-consistency).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["SegmentDistribution", "logprob_distribution", "token_logprobs", "vote_distribution"]

# Segments that no listed alternative token could start get this much less than the least likely listed token:
# an unlisted token is at most as likely as the last one listed, and usually far less.
UNSEEN_MARGIN = 1.0


@dataclass
class SegmentDistribution:
    """Normalised log-probabilities over the segment ids, and how many segments the evidence covered."""

    logprobs: list[float]
    covered: int


def token_logprobs(raw: Any) -> list[dict[str, Any]] | None:
    """OpenAI-format token logprobs from a Completion's `raw` (ours, or a full chat-completion response)."""
    if not isinstance(raw, dict):
        return None
    if raw.get("logprobs"):
        return list(raw["logprobs"])
    choices = raw.get("choices") or [{}]
    content = (choices[0].get("logprobs") or {}).get("content") if isinstance(choices[0], dict) else None
    return list(content) if content else None


def logprob_distribution(
    text: str, tokens: Sequence[dict[str, Any]], ids: Sequence[str], key: str = "primary"
) -> SegmentDistribution | None:
    """The distribution over `ids` at the token where the value of `key` starts; None when it cannot be read."""
    found = re.search(rf'"{re.escape(key)}"\s*:\s*"', text)
    if not found or not tokens:
        return None
    start, pos = found.end(), 0
    for tok in tokens:
        piece = str(tok.get("token", ""))
        if text[pos : pos + len(piece)] != piece:
            return None  # tokens do not spell the text: no position to read
        if pos + len(piece) > start:
            return _at_position(text[pos:start], tok, ids)
        pos += len(piece)
    return None


def _at_position(prefix: str, tok: dict[str, Any], ids: Sequence[str]) -> SegmentDistribution | None:
    alternatives = {str(a["token"]): float(a["logprob"]) for a in tok.get("top_logprobs") or []}
    alternatives.setdefault(str(tok["token"]), float(tok["logprob"]))
    mass: dict[str, list[float]] = {sid: [] for sid in ids}
    for piece, logprob in alternatives.items():
        if not piece.startswith(prefix) or len(piece) == len(prefix):
            continue
        rest = piece[len(prefix) :]
        hits = [sid for sid in ids if sid.startswith(rest) or _whole(rest, sid)]
        for sid in hits:  # a token shared by several ids (e.g. "re") is split between them
            mass[sid].append(logprob - math.log(len(hits)))
    covered = sum(1 for v in mass.values() if v)
    if covered == 0:
        return None
    floor = min(alternatives.values()) - UNSEEN_MARGIN
    scores = [_logsumexp(mass[sid]) if mass[sid] else floor for sid in ids]
    norm = _logsumexp(scores)
    return SegmentDistribution([s - norm for s in scores], covered)


def _whole(rest: str, sid: str) -> bool:
    """A token that holds the whole id and then the closing quote (or more JSON)."""
    return rest.startswith(sid) and not rest[len(sid) : len(sid) + 1].isalnum()


def _logsumexp(values: Sequence[float]) -> float:
    top = max(values)
    return top + math.log(sum(math.exp(v - top) for v in values))


def vote_distribution(votes: Sequence[str], ids: Sequence[str], alpha: float = 0.5) -> list[float]:
    """Log of the smoothed vote shares of each id (self-consistency over k samples)."""
    counts = Counter(votes)
    total = len(votes) + alpha * len(ids)
    return [math.log((counts[sid] + alpha) / total) for sid in ids]
