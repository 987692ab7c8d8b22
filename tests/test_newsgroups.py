"""Tests of the 20 Newsgroups loader: parsing and hygiene on synthetic text, the fixture, the real tarball."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from llm_labeler.datasets import newsgroups as ng

FIXTURE = Path(__file__).parent / "fixtures" / "20ng_sample"
EVENT_KEYS = ("user_id", "ts", "event_type", "item_id", "item_title", "item_category", "text", "rating")

ARTICLE = """From: jdoe@cs.example.edu (John Doe)
Subject: Re: Which SCSI card for a IIsi? (was: comp.sys.mac.hardware FAQ)
Organization: Example University
Lines: 20
Date: Mon, 5 Apr 1993 16:17:37 -0400

In article <1993Apr5.123@foo.example.com> someone@foo.example.com (Some One) writes:
>Has anyone tried the new controller?
> > nested quote
|> another quote style

I tried it on my IIsi, see the thread in comp.sys.mac and sci.space.shuttle.
Mail me at jdoe@cs.example.edu.



Bye.
--
John Doe   jdoe@cs.example.edu
"""


def test_parse_article_headers_and_body() -> None:
    headers, body = ng.parse_article(ARTICLE)
    assert headers["from"] == "jdoe@cs.example.edu (John Doe)"
    assert headers["subject"].startswith("Re: Which SCSI card")
    assert headers["lines"] == "20"
    assert body.startswith("In article <1993Apr5.123@")
    assert "Organization:" not in body


def test_parse_article_drops_orphan_folded_lines() -> None:
    raw = " uunet!host!user\nFrom: a@b.edu (A)\n <1993Apr1.1@x.com> <2@y.com>\nSubject: hi\n\nbody"
    headers, body = ng.parse_article(raw)
    assert headers["from"] == "a@b.edu (A)"
    assert headers["subject"] == "hi"
    assert body == "body"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("jdoe@cs.example.edu (John Doe)", "jdoe@cs.example.edu"),
        ("John Doe <JDoe@CS.Example.EDU>", "jdoe@cs.example.edu"),
        ("<KEVXU@CUNYVM.BITNET>", "kevxu@cunyvm.bitnet"),
        ("Charles P. Cox, Jr. <cox@snowhite.example.edu>", "cox@snowhite.example.edu"),
        ("host.example.edu!user (Some Body)", "host.example.edu!user"),
        ("()", None),
        ("", None),
    ],
)
def test_normalise_address(value: str, expected: str | None) -> None:
    assert ng.normalise_address(value) == expected


def test_user_id_is_hashed_address() -> None:
    uid = ng.user_id_for("jdoe@cs.example.edu")
    assert uid == "u_" + hashlib.sha256(b"jdoe@cs.example.edu").hexdigest()[:16]
    assert re.fullmatch(r"u_[0-9a-f]{16}", uid)
    assert "jdoe" not in uid


def test_parse_date() -> None:
    assert ng.parse_date("Mon, 5 Apr 1993 16:17:37 -0400") == "1993-04-05T20:17:37"
    assert ng.parse_date("5 Apr 93 16:17:37 GMT") == "1993-04-05T16:17:37"
    assert ng.parse_date("not a date") is None
    assert ng.parse_date(None) is None


def test_strip_quoted_removes_quotes_and_attributions() -> None:
    body = (
        "In article <abc@x.com> a@x.com (A) writes:\n>quoted\n  > indented quote\n |> bar quote\nmine\n"
        "In article <def@y.com>\nb@y.com (B) writes:\nalso mine\nc@z.org (C) wrote:\nthird"
    )
    assert ng.strip_quoted(body).split("\n") == ["mine", "also mine", "third"]


def test_strip_signature() -> None:
    assert ng.strip_signature("text\n-- \nsig line") == "text"
    assert ng.strip_signature("text\n--\nsig line") == "text"
    assert ng.strip_signature("a -- b\n---\nkeep") == "a -- b\n---\nkeep"


def test_mask_newsgroups() -> None:
    text = (
        "Post to comp.sys.mac.hardware or comp.sys.mac, see rec.autos and Alt.Atheism; "
        "also sci.space.shuttle, talk.origins and comp.sys.mac.apps."
    )
    masked = ng.mask_newsgroups(text)
    assert masked == (
        "Post to [group] or [group], see [group] and [group]; also [group], [group] and [group]."
    )
    # e-mail addresses and host names stay intact
    keep = "mail jdoe@comp.example.edu or misc.txt on ftp.sci.example.org"
    assert ng.mask_newsgroups(keep) == keep


def test_clean_body_pipeline() -> None:
    _, body = ng.parse_article(ARTICLE)
    text = ng.clean_body(body)
    assert "controller" not in text and "nested" not in text and "another quote" not in text
    assert "writes:" not in text
    assert "[group] and [group]" in text
    assert "comp.sys" not in text and "sci.space" not in text
    assert "jdoe@cs.example.edu" in text  # addresses are kept for PII-redaction tests
    assert "\n\n\n" not in text
    assert text.endswith("Bye.")


def test_parse_post_event_has_no_group() -> None:
    post = ng.parse_post(ARTICLE.encode(), "12345", "comp.sys.mac.hardware", "train")
    assert post is not None
    event = post.event()
    assert tuple(event) == EVENT_KEYS
    assert event["user_id"] == ng.user_id_for("jdoe@cs.example.edu")
    assert event["ts"] == "1993-04-05T20:17:37"
    assert event["event_type"] == "post"
    assert event["item_id"].startswith("20ng-12345-")
    assert event["item_title"].startswith("Re: Which SCSI card") and "[group]" in event["item_title"]
    assert event["item_category"] is None and event["rating"] is None
    assert "mac.hardware" not in json.dumps(event)


def test_taxonomy_ids() -> None:
    assert len(ng.NEWSGROUPS) == 20
    assert set(ng.COARSE_GROUPS.values()) == set(ng.COARSE_IDS)
    assert ng.COARSE_GROUPS["talk.religion.misc"] == "religion"
    assert ng.COARSE_GROUPS["talk.politics.misc"] == "politics"
    assert ng.COARSE_GROUPS["misc.forsale"] == "marketplace"
    assert ng.fine_segment_id("comp.os.ms-windows.misc") == "comp_os_ms-windows_misc"


def _user(uid: str) -> ng.NewsUser:
    return ng.NewsUser(uid, [], "science", "sci.med", ["science"])


def test_split_and_sample_are_deterministic_and_by_user() -> None:
    users = [_user(ng.user_id_for(f"user{i}@example.org")) for i in range(200)]
    train, test = ng.split_users(users, test_fraction=0.25, seed=7)
    assert len(test) == 50 and len(train) == 150
    assert not {u.user_id for u in train} & {u.user_id for u in test}
    assert ng.split_users(users, 0.25, 7) == (train, test)
    assert ng.split_users(users, 0.25, 8)[1] != test
    sample = ng.sample_users(users, 20, seed=3, exclude={u.user_id for u in test})
    assert len(sample) == 20 and not {u.user_id for u in sample} & {u.user_id for u in test}
    assert sample == ng.sample_users(users, 20, seed=3, exclude={u.user_id for u in test})
    with pytest.raises(ValueError):
        ng.sample_users(users, 201, seed=3)


def test_find_tarball_error_names_paths(tmp_path: Path) -> None:
    missing = tmp_path / "nope.tar.gz"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        ng.find_tarball(missing)


def test_find_tarball_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "20newsgroups" / ng.TARBALL_NAME
    target.parent.mkdir()
    target.write_bytes(b"")
    monkeypatch.setenv(ng.ENV_VAR, str(tmp_path))
    assert ng.find_tarball() == target.resolve()


def test_fixture_is_consistent() -> None:
    with (FIXTURE / "gold.csv").open(encoding="utf-8", newline="") as fh:
        gold = list(csv.DictReader(fh))
    assert len(gold) == 60
    events: dict[str, list[dict[str, object]]] = defaultdict(list)
    with (FIXTURE / "events.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            event = json.loads(line)
            assert tuple(event) == EVENT_KEYS
            assert event["item_category"] is None
            assert len(event["text"]) <= 1500
            events[event["user_id"]].append(event)
    assert set(events) == {row["user_id"] for row in gold}
    per_family: dict[str, int] = defaultdict(int)
    for row in gold:
        assert row["gold_coarse"] in ng.COARSE_IDS
        assert row["gold_fine"] in ng.NEWSGROUPS
        assert ng.COARSE_GROUPS[row["gold_fine"]] == row["gold_coarse"]
        multi = row["gold_multi"].split("|")
        assert row["gold_coarse"] in multi and set(multi) <= set(ng.COARSE_IDS)
        assert 1 <= len(events[row["user_id"]]) <= 8
        per_family[row["gold_coarse"]] += 1
    assert per_family == dict.fromkeys(ng.COARSE_IDS, 10)


def _tarball_or_skip() -> Path:
    try:
        return ng.find_tarball()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))


def test_real_corpus_counts_and_hygiene() -> None:
    tarball = _tarball_or_skip()
    users3 = ng.load_users(tarball, min_posts=3)
    users5 = ng.load_users(tarball, min_posts=5)
    # README: 1,559 authors with >= 3 posts, 748 with >= 5
    assert 1500 <= len(users3) <= 1620
    assert 700 <= len(users5) <= 800
    assert [u.user_id for u in users3] == sorted(u.user_id for u in users3)
    assert ng.load_users(tarball, min_posts=3) == users3  # cached and deterministic
    names = re.compile("|".join(re.escape(g) for g in ng.NEWSGROUPS), re.IGNORECASE)
    item_ids: set[str] = set()
    for user in users3:
        assert user.gold_coarse == ng.COARSE_GROUPS[user.gold_fine]
        assert user.gold_coarse in user.gold_multi
        for event in user.events:
            assert event["user_id"] == user.user_id
            assert event["item_category"] is None
            assert not names.search(event["text"]), event["item_id"]
            assert not names.search(event["item_title"]), event["item_id"]
            item_ids.add(event["item_id"])
    assert len(item_ids) == sum(len(u.events) for u in users3)
    capped = ng.load_users(tarball, min_posts=3, max_posts_per_user=2)
    assert max(len(u.events) for u in capped) == 2


def test_taxonomies_match_gold_ids() -> None:
    from llm_labeler.schemas import load_taxonomy

    root = Path(__file__).resolve().parents[1] / "taxonomies"
    coarse = load_taxonomy(root / "20ng_coarse.yaml")
    fine = load_taxonomy(root / "20ng_fine.yaml")
    assert coarse.ids == list(ng.COARSE_IDS) and not coarse.multi_label
    assert sorted(fine.ids) == sorted(ng.fine_segment_id(g) for g in ng.NEWSGROUPS)
    for tax in (coarse, fine):
        for seg in tax.segments:
            text = " ".join([seg.name, seg.description, *seg.include, *seg.exclude, *seg.examples])
            assert ng.mask_newsgroups(text) == text, seg.id  # no literal group names in the texts
