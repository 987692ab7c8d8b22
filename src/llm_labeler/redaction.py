"""PII redaction before text leaves the machine: e-mails, phone numbers, card numbers, secret-bearing URLs, and the
Chinese kinds (resident ID numbers, mainland mobile and landline numbers, street addresses).

Each match becomes a placeholder such as `[EMAIL]`; `redact` returns the new text and how many of each kind it
replaced, so a run can report what it removed without storing what it was. Patterns match a half-width shadow of the
text (full-width `１３８` and `＠` read as `138` and `@`), and the replacement is made in the original text, so the
characters around a match, full-width punctuation included, come back unchanged. A pattern with a `(?P<pii>...)`
group replaces only that group (the context before it stays).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import yaml

from .errors import ConfigError
from .settings import redact_patterns_path

__all__ = ["KINDS", "Redacted", "Redactor", "cn_id_ok", "load_patterns", "luhn_ok"]

# URLs carrying a secret: user:password@host, or a query parameter that names a token, key, signature or password.
# ASCII word boundaries and no CJK in the URL: `代理ftp://u:p@host/pub谢谢` is a URL between two Chinese words.
_NO_URL = r"\s\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff"
_URL_CREDS = re.compile(
    rf"\b[a-z][a-z0-9+.-]*://[^{_NO_URL}/@:]+:[^{_NO_URL}/@]+@[^{_NO_URL}]+", re.IGNORECASE | re.ASCII
)
_URL_TOKEN = re.compile(
    rf"\b(?:https?|ftp)://[^{_NO_URL}?#]+\?[^{_NO_URL}#]*?\b"
    r"(?:access_token|api[_-]?key|apikey|auth|key|password|passwd|pwd|secret|sig|signature|token|session|sid)"
    rf"=[^{_NO_URL}&#]+[^{_NO_URL}]*",
    re.IGNORECASE | re.ASCII,
)
# re.ASCII: a Chinese character is not a word character here, so `发邮件到a@b.com谢谢` yields `a@b.com`.
_EMAIL = re.compile(r"\b[A-Za-z0-9._%+!-]+@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}\b", re.ASCII)
# 13-19 digits, optionally grouped by single spaces or dashes; kept only when the Luhn checksum holds.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
# North American numbers with separators or parentheses, and +CC international numbers; bare digit runs
# (ids, years, prices) are left alone.
_PHONE = re.compile(
    r"(?<![\w+])(?:\+?1[\s.-])?(?:\(\d{3}\)\s?|\d{3}[\s.-])\d{3}[\s.-]\d{4}(?![\w-])"
    r"|(?<![\w+])\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}(?![\w-])",
    re.ASCII,
)
# Resident ID (GB 11643): 6-digit region, birth date YYYYMMDD, 3-digit sequence, MOD 11-2 check digit (0-9 or X),
# optionally grouped 6-8-4. The 15-digit numbers issued before 1999 carry no check digit: a bare 15-digit run is as
# likely an order number, so they are taken only right after 身份证/证件(号码).
_DATE8 = r"(?:18|19|20)[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])"
_CN_ID = re.compile(rf"(?<![0-9])[1-9][0-9]{{5}} ?{_DATE8} ?[0-9]{{3}}[0-9Xx](?![0-9])")
_CN_ID15 = re.compile(
    r"(?:身份证|证件)(?:号码|号)?\s*(?:是|为|:)?\s*"
    r"(?P<pii>[1-9][0-9]{5}[0-9]{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12][0-9]|3[01])[0-9]{3})(?![0-9Xx])"
)
# Mainland mobile numbers 1[3-9]X XXXX XXXX, with an optional +86 / 0086 / 86 prefix. A bare 11-digit run followed by
# a unit (营收13500000000元) is an amount, not a number to call.
_CN_UNIT = r"(?!\s*(?:元|万|亿|美元|港元|人|次|吨|股|辆|台|件|个|平|米|%))"
_CN_MOBILE = re.compile(
    rf"(?<![0-9+])(?:(?:\+|00)?86[ -]?|\(\+?86\)[ -]?)?1[3-9][0-9](?:[ -]?[0-9]{{4}}){{2}}(?![0-9]){_CN_UNIT}"
)
# Landlines: area code 010, 02X or 0XXX (+86 drops the 0), then a 7-8 digit local number that does not start with 0.
# The area code must be set off (dash, space, parentheses): a bare 11-12 digit run is left alone.
_AREA = r"(?:10|2[0-9]|[3-9][0-9]{2})"
_CN_LANDLINE = re.compile(
    rf"(?<![0-9+])(?:\(0{_AREA}\)[ -]?|0{_AREA}[ -]|(?:\+|00)86[ -]?(?:\(0?{_AREA}\)[ -]?|0?{_AREA}[ -]))"
    r"[1-9][0-9]{2,3}[ -]?[0-9]{4}(?![0-9])"
)
# Street addresses down to the door: a road name, a number and 号 (弄 / building / unit / room may follow), or a
# building and a room (3栋2单元501室). Province, city and district stay: a road name never runs across 省/市/区/县 or
# a few common verbs, so `寄到深圳市南山区科苑路15号` loses only `科苑路15号`. 号线 (a metro line) is not a door.
_NAME = r"(?:(?![省市区县镇乡村在住于到至从往的是和与及或我你他她家送寄址])[\u4e00-\u9fff])"
_ROOM = r"(?:[0-9A-Za-z]{1,3}(?:栋|幢|号楼|座))?(?:[0-9]{1,2}单元)?(?:[0-9]{3,4}(?:室|房))?"
_CN_ADDRESS = re.compile(
    rf"{_NAME}{{1,8}}(?:路|街|大道|巷|胡同)[0-9]{{1,5}}(?:-[0-9]{{1,5}})?(?:弄[0-9]{{1,4}})?号(?!线){_ROOM}"
    rf"|{_NAME}{{0,8}}[0-9A-Za-z]{{1,3}}(?:栋|幢|号楼|座)(?:[0-9]{{1,2}}单元)?[0-9]{{3,4}}(?:室|房)"
)
# Full-width ASCII (U+FF01-U+FF5E) and the ideographic space, mapped one to one so that offsets stay.
_HALF_WIDTH = {0xFF01 + i: 0x21 + i for i in range(94)} | {0x3000: 0x20}
# Order matters: a URL's user:pass@host looks like an e-mail; an ID number may pass Luhn; +86 138 1234 5678 is 13
# digits in groups, like a card; a card number contains phone-like runs.
KINDS = ("url_secret", "email", "cn_id", "cn_phone", "card", "phone", "cn_address")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum every payment card number satisfies."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def cn_id_ok(number: str) -> bool:
    """True for an 18-character Chinese resident ID whose birth date exists and whose ISO 7064 MOD 11-2 check holds."""
    n = number.replace(" ", "").upper()
    if not re.fullmatch(r"[0-9]{17}[0-9X]", n) or not _date_ok(n[6:14]):
        return False
    total = sum(int(d) * w for d, w in zip(n[:17], _ID_WEIGHTS))
    return "10X98765432"[total % 11] == n[17]


def _date_ok(yyyymmdd: str) -> bool:
    try:
        date(int(yyyymmdd[:4]), int(yyyymmdd[4:6]), int(yyyymmdd[6:8]))
    except ValueError:
        return False
    return True


def _id15_ok(match: str) -> bool:
    return _date_ok("19" + match[6:12])


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
            "cn_id": [_Rule("cn_id", _CN_ID, cn_id_ok), _Rule("cn_id", _CN_ID15, _id15_ok)],
            "cn_phone": [_Rule("cn_phone", _CN_MOBILE), _Rule("cn_phone", _CN_LANDLINE)],
            "cn_address": [_Rule("cn_address", _CN_ADDRESS)],
        }
        unknown = set(kinds) - set(builtin)
        if unknown:
            raise ConfigError(f"unknown redaction kind(s) {sorted(unknown)}; kinds: {', '.join(KINDS)}")
        for kind in KINDS:
            if kind in kinds:
                rules += builtin[kind]
        self.rules = rules

    def redact(self, text: str) -> Redacted:
        """The text with every match replaced, and counts per kind."""
        counts: Counter[str] = Counter()
        shadow = text.translate(_HALF_WIDTH)
        for rule in self.rules:
            text, shadow = _apply(rule, text, shadow, counts)
        return Redacted(text, dict(counts))


def _apply(rule: _Rule, text: str, shadow: str, counts: Counter[str]) -> tuple[str, str]:
    """Replace the rule's matches in the shadow at the same offsets in the text; both come back in step."""
    group = "pii" if "pii" in rule.pattern.groupindex else 0
    out, out_shadow, pos = [], [], 0
    for match in rule.pattern.finditer(shadow):
        start, end = match.span(group)
        if start < 0 or (rule.keep is not None and not rule.keep(match.group(group))):
            continue
        counts[rule.kind] += 1
        placeholder = f"[{rule.kind.upper()}]"
        out += [text[pos:start], placeholder]
        out_shadow += [shadow[pos:start], placeholder]
        pos = end
    if not out:
        return text, shadow
    return "".join(out) + text[pos:], "".join(out_shadow) + shadow[pos:]


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
