"""PII redaction: each kind, its counts, false positives left alone, extra patterns, real 20 Newsgroups posts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llm_labeler.errors import ConfigError
from llm_labeler.redaction import Redactor, load_patterns, luhn_ok


def test_each_kind_is_replaced_and_counted() -> None:
    text = (
        "Mail john.doe@cs.cmu.edu or call (415) 555-1234, +44 20 7946 0958 or 1-800-555-0199.\n"
        "Card 4111 1111 1111 1111. Proxy ftp://user:s3cret@ftp.example.com/pub and "
        "https://api.example.com/v1/x?a=1&access_token=abc123 today."
    )
    out = Redactor().redact(text)
    assert out.counts == {"email": 1, "phone": 3, "card": 1, "url_secret": 2}
    assert out.total == 7
    for secret in ("john.doe", "555-1234", "7946", "4111", "s3cret", "abc123", "0199"):
        assert secret not in out.text
    assert "[EMAIL]" in out.text and "[URL_SECRET]" in out.text and "[CARD]" in out.text


def test_look_alikes_are_left_alone() -> None:
    text = (
        "Released 1993-04-05, price $1200, part 1234567890, IP 128.2.13.21, version 3.1.4, "
        "bad card 4111-1111-1111-1112, plain https://example.com/page?id=5, 3.5 inch disk 1.44MB."
    )
    out = Redactor().redact(text)
    assert out.text == text and out.counts == {}


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112")


def test_extra_patterns_run_first_and_are_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = Redactor({"ticket": r"TICKET-\d+"}).redact("see TICKET-42 and TICKET-7")
    assert out.text == "see [TICKET] and [TICKET]" and out.counts == {"ticket": 2}
    with pytest.raises(ConfigError, match="not a valid regular expression"):
        Redactor({"bad": "("})
    with pytest.raises(ConfigError, match="lowercase"):
        Redactor({"Bad Name": "x"})
    with pytest.raises(ConfigError, match="unknown redaction kind"):
        Redactor(kinds=("email", "ssn"))
    path = tmp_path / "patterns.yaml"
    path.write_text("employee_id: 'EMP\\d{5}'\n", encoding="utf-8")
    monkeypatch.setenv("LLM_LABELER_REDACT_PATTERNS", str(path))
    assert load_patterns() == {"employee_id": r"EMP\d{5}"}
    path.write_text("- not a mapping\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="mapping"):
        load_patterns()


def test_real_newsgroup_posts_lose_every_address(events_path: Path) -> None:
    redactor = Redactor()
    email = re.compile(r"\b[\w.%+-]+@[\w-]+(\.[\w-]+)+\b")
    totals: dict[str, int] = {}
    with events_path.open(encoding="utf-8") as fh:
        for line in fh:
            text = json.loads(line).get("text") or ""
            out = redactor.redact(text)
            for kind, n in out.counts.items():
                totals[kind] = totals.get(kind, 0) + n
            assert not email.search(out.text), out.text[:200]
    assert totals["email"] >= 50 and totals.get("phone", 0) >= 5  # 1993 posts sign with addresses and numbers
