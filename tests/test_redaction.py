"""PII redaction: each kind, its counts, false positives left alone, extra patterns, real 20 Newsgroups posts,
Chinese text (mobile and landline numbers, resident ID numbers, e-mail without spaces, street addresses).
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from llm_labeler.errors import ConfigError
from llm_labeler.redaction import Redactor, cn_id_ok, load_patterns, luhn_ok


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


# --- Chinese text (issue 12) ---------------------------------------------------------------------------------------

TOUTIAO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "toutiao_readers" / "events.csv"
ZH_KINDS = {"cn_id", "cn_phone", "cn_address"}


@pytest.mark.parametrize(
    "number",
    [
        "13812345678",
        "138 1234 5678",
        "138-1234-5678",
        "+86 138 1234 5678",
        "+86-13812345678",
        "+8613812345678",
        "0086 13812345678",
        "86-138-1234-5678",
        "(+86)13812345678",
        "１３８１２３４５６７８",  # full-width digits, as IMEs type them
        "＋８６ １３８ １２３４ ５６７８",
    ],
)
def test_mainland_mobile_numbers_in_chinese_sentences(number: str) -> None:
    out = Redactor().redact(f"我的手机号是{number}，有事请打给我。")
    assert out.text == "我的手机号是[CN_PHONE]，有事请打给我。"
    assert out.counts == {"cn_phone": 1}


@pytest.mark.parametrize(
    "number",
    [
        "010-12345678",
        "(021)1234-5678",
        "（021）12345678",
        "0755 8888 6666",
        "0571-8888888",
        "+86 10 12345678",
        "+86-755-8888-6666",
        "0086 (21) 6888 8888",
        "０１０－１２３４５６７８",
    ],
)
def test_landlines_with_area_codes(number: str) -> None:
    out = Redactor().redact(f"办公室电话{number}，工作日9:00-17:30有人接听")
    assert out.text == "办公室电话[CN_PHONE]，工作日9:00-17:30有人接听"
    assert out.counts == {"cn_phone": 1}


def test_resident_id_numbers_need_a_valid_check_digit() -> None:
    assert (
        cn_id_ok("11010519491231002X") and cn_id_ok("440524188001010014") and cn_id_ok("11010119900307803x")
    )
    assert not cn_id_ok("110105194912310021") and not cn_id_ok("110105194913310021")  # checksum; month 13
    # 440524188001010014 also passes Luhn: ID numbers are matched before card numbers.
    valid = "身份证号11010519491231002X，另一位是440524188001010014；旧证身份证号码：110105491231002。"
    out = Redactor().redact(valid)
    assert out.text == "身份证号[CN_ID]，另一位是[CN_ID]；旧证身份证号码：[CN_ID]。"
    assert out.counts == {"cn_id": 3}
    assert Redactor().redact("身份证号 110105 19491231 002X").text == "身份证号 [CN_ID]"
    assert Redactor().redact("证件：１１０１０５１９４９１２３１００２Ｘ").counts == {"cn_id": 1}
    # A wrong check digit, an impossible date, and a bare 15-digit number without 身份证 before it stay.
    wrong = "号码110105194912310021和110105194913310021，订单号110105491231002已发货"
    assert Redactor().redact(wrong).text == wrong


def test_email_inside_chinese_text_keeps_the_chinese() -> None:
    out = Redactor().redact("请发邮件到zhang.san@example.com谢谢，或者抄送ｌｉｓｉ＠ｅｘａｍｐｌｅ．ｃｎ。")
    assert out.text == "请发邮件到[EMAIL]谢谢，或者抄送[EMAIL]。"
    assert out.counts == {"email": 2}


def test_other_kinds_next_to_chinese_characters() -> None:
    text = "致电+44 20 7946 0958或代理ftp://user:s3cret@ftp.example.com/pub谢谢，卡号4111111111111111请保密"
    out = Redactor().redact(text)
    assert out.text == "致电[PHONE]或代理[URL_SECRET]谢谢，卡号[CARD]请保密"
    assert out.counts == {"phone": 1, "url_secret": 1, "card": 1}


def test_street_addresses_down_to_the_room() -> None:
    text = (
        "快递寄到广东省深圳市南山区科苑路15号3栋501室，"
        "或者上海市黄浦区南京东路123弄4号；老家在北京市朝阳区建国路88号院。"
        "朋友住阳光花园3栋2单元1201室"
    )
    out = Redactor().redact(text)
    assert out.text == (
        "快递寄到广东省深圳市南山区[CN_ADDRESS]，或者上海市黄浦区[CN_ADDRESS]；老家在北京市朝阳区[CN_ADDRESS]院。"
        "朋友住[CN_ADDRESS]"
    )
    assert out.counts == {"cn_address": 4}


def test_numbers_in_chinese_news_are_left_alone() -> None:
    text = (
        "2018年5月15日晚，国足3:1战胜对手，比分2-0领先时全场4.5万名观众起立。"
        "小米MIX2现在2899值得买吗？1999女足世界杯亚军。营收8.58亿元，净赚3499万元，同比增长30%。"
        "新地东方明珠14号栋274套112-150平住宅将推，5月8日起报名，招聘4200名教师，坐地铁1号线到人民路站。"
        "报名时间2018-05-08至2018-05-20，电话号码请见官网，美丽生态(000010)现涨6.19%，1940-1945年二战期间。"
        "新闻id 6553384546593669646，交管12123上面可以查驾驶分数，金融1401团支部，营收13500000000元。"
    )
    out = Redactor().redact(text)
    assert out.text == text and out.counts == {}


def test_toutiao_headlines_with_numbers_stay_untouched() -> None:
    if not TOUTIAO.exists():
        pytest.skip("toutiao_readers dataset not present")
    with TOUTIAO.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    redactor = Redactor()
    with_digits = [r for r in rows if re.search(r"\d{3,}", r["item_title"] + r["text"])]
    assert len(with_digits) > 300
    for row in with_digits:
        for value in (row["item_title"], row["text"]):
            out = redactor.redact(value)
            assert out.text == value, (row["item_id"], value, out.text)


def test_chinese_kinds_do_not_fire_on_english_posts(events_path: Path) -> None:
    redactor = Redactor(kinds=("cn_id", "cn_phone", "cn_address"))
    with events_path.open(encoding="utf-8") as fh:
        hits = [redactor.redact(json.loads(line).get("text") or "").counts for line in fh]
    assert sum(sum(c.values()) for c in hits) == 0


def test_a_pii_group_limits_what_an_extra_pattern_replaces() -> None:
    out = Redactor({"qq": r"QQ[:：]?\s*(?P<pii>[1-9][0-9]{4,10})"}).redact("加我QQ：12345678")
    assert out.text == "加我QQ：[QQ]" and out.counts == {"qq": 1}
