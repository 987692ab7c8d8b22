"""PII redaction before text leaves the machine: e-mails, phone numbers, card numbers, secret-bearing URLs.

Each match becomes a placeholder such as `[EMAIL]`; `redact` returns the new text and how many of each kind it
replaced, so a run can report what it removed without storing what it was.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import ConfigError
from .settings import redact_patterns_path

__all__ = ["KINDS", "Redacted", "Redactor", "load_patterns", "luhn_ok"]

# URLs carrying a secret: user:password@host, or a query parameter that names a token, key, signature or password.
_URL_CREDS = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s/@:]+:[^\s/@]+@[^\s]+", re.IGNORECASE)
_URL_TOKEN = re.compile(
    r"\b(?:https?|ftp)://[^\s?#]+\?[^\s#]*?\b"
    r"(?:access_token|api[_-]?key|apikey|auth|key|password|passwd|pwd|secret|sig|signature|token|session|sid)"
    r"=[^\s&#]+[^\s]*",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+!-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b")
# 13-19 digits, optionally grouped by single spaces or dashes; kept only when the Luhn checksum holds.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# North American numbers with separators or parentheses, and +CC international numbers; bare digit runs
# (ids, years, prices) are left alone.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+?1[\s.-])?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-])"
    r"|(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?![\w-])"
)
KINDS = ("url_secret", "email", "card", "phone")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_ok(match: str) -> bool:
    digits = re.sub(r"\D", "", match)
    return 13 <= len(digits) <= 19 and luhn_ok(digits)


def _phone_ok(match: str) -> bool:
    return 8 <= len(re.sub(r"\D", "", match)) <= 15


@dataclass
class Redacted:
    """Redacted text and the number of replacements of each kind."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        """Replacements of every kind."""
        return sum(self.counts.values())


@dataclass(frozen=True)
class _Rule:
    kind: str
    pattern: re.Pattern[str]
    keep: Callable[[str], bool] | None = None


class Redactor:
    """Replaces PII with `[KIND]` placeholders; extra patterns (name -> regex) run before the built-in ones."""

    def __init__(self, extra: Mapping[str, str] | None = None, kinds: tuple[str, ...] = KINDS) -> None:
        rules = [_Rule(name, _compile(name, rx)) for name, rx in (extra or {}).items()]
        builtin = {
            "url_secret": [_Rule("url_secret", _URL_CREDS), _Rule("url_secret", _URL_TOKEN)],
            "email": [_Rule("email", _EMAIL)],
            "card": [_Rule("card", _CARD, _card_ok)],
            "phone": [_Rule("phone", _PHONE, _phone_ok)],
        }
        unknown = set(kinds) - set(builtin)
        if unknown:
            raise ConfigError(f"unknown redaction kind(s) {sorted(unknown)}; kinds: {', '.join(KINDS)}")
        # Order matters: a URL's user:pass@host looks like an e-mail, a card number contains phone-like runs.
        for kind in KINDS:
            if kind in kinds:
                rules += builtin[kind]
        self.rules = rules

    def redact(self, text: str) -> Redacted:
        """The text with every match replaced, and counts per kind."""
        counts: Counter[str] = Counter()
        for rule in self.rules:
            text = rule.pattern.sub(lambda m, r=rule: _replace(m, r, counts), text)  # type: ignore[misc]
        return Redacted(text, dict(counts))


def _replace(match: re.Match[str], rule: _Rule, counts: Counter[str]) -> str:
    if rule.keep is not None and not rule.keep(match.group(0)):
        return match.group(0)
    counts[rule.kind] += 1
    return f"[{rule.kind.upper()}]"


def _compile(name: str, rx: str) -> re.Pattern[str]:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ConfigError(f"redaction pattern name {name!r}: use lowercase letters, digits and _")
    try:
        return re.compile(rx)
    except re.error as exc:
        raise ConfigError(f"redaction pattern {name!r} is not a valid regular expression: {exc}") from exc


def load_patterns(path: str | Path | None = None) -> dict[str, str]:
    """Extra patterns from a YAML mapping name -> regex (`path`, else $LLM_LABELER_REDACT_PATTERNS, else none)."""
    source = path or redact_patterns_path()
    if not source:
        return {}
    p = Path(source)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{p}: cannot read redaction patterns: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"{p}: redaction patterns must be a mapping of name -> regular expression")
    return {str(k): v for k, v in data.items()}
