"""Each user's dominant script / language: detection, storage at ingest, the migration, and the CLI's mix."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_labeler import languages
from llm_labeler.cli import app
from llm_labeler.languages import (
    NO_LANGUAGE,
    detect_language,
    detect_user_languages,
    language_of,
    script_counts,
)
from llm_labeler.store import UNDETECTED, Store

ROOT = Path(__file__).resolve().parents[1]
TOUTIAO = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "toutiao_readers"
runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("华为发布新款手机，价格比上一代便宜。", "zh"),
        ("東京で新しいカフェがオープンしました。", "ja"),
        ("ポケモンの新作ゲーム", "ja"),  # kana alone
        ("서울의 날씨가 맑습니다", "ko"),
        ("วันนี้อากาศดีมาก", "th"),
        ("Новости спорта: сборная выиграла матч", "cyrillic"),
        ("أخبار الرياضة اليوم", "arabic"),
        ("The latest football news from London", "latin"),
        ("Καλημέρα κόσμε", "el"),
        ("שלום עולם", "he"),
        ("नमस्ते दुनिया", "devanagari"),
        ("ＡＢＣニュース速報", "ja"),  # full-width Latin is Latin; the kana make it Japanese
        ("", NO_LANGUAGE),
        ("2024-05-01 12:30 !!! 100%", NO_LANGUAGE),
        ("https://example.com/path <br/> &amp; bob@example.com", NO_LANGUAGE),
    ],
)
def test_detects_the_script_of_each_language(text: str, expected: str) -> None:
    assert detect_language(text) == expected


def test_the_dominant_script_wins_in_mixed_text() -> None:
    assert detect_language("今天的新闻很多，大家都在讨论 and a few words") == "zh"
    assert detect_language("A long English sentence about the weather with one word 天气") == "latin"
    # A Chinese headline naming a Latin-script product stays Chinese (a Han character weighs a syllable).
    assert detect_language("华为发布iPhone 15 Pro Max竞品") == "zh"
    # One Japanese title among Chinese ones: kana stay under KANA_SHARE of the Han + kana letters.
    chinese = "国家队在世界杯预选赛中取得胜利，球迷们欢呼雀跃。" * 3
    assert detect_language(chinese + "ポケモン") == "zh"
    assert detect_language("日本の首相が記者会見で新しい経済対策を発表した") == "ja"


def test_counts_letters_not_bytes_digits_punctuation_urls_or_markup() -> None:
    assert script_counts("中文") == {"han": 2}  # six bytes in UTF-8, two letters
    assert script_counts("abc 123, déjà-vu!") == {"latin": 9}
    assert script_counts('<a href="http://x.org/a">新闻</a> see www.example.com 或 a@b.cn &nbsp;') == {
        "han": 3,
        "latin": 3,
    }
    assert script_counts("详见https://t.cn/A6x今天") == {"han": 4}  # a URL glued to the text
    assert script_counts("") == {}


def test_language_of_counts() -> None:
    assert language_of({}) == NO_LANGUAGE
    assert language_of({"han": 10, "kana": 2}) == "ja"
    assert language_of({"han": 100, "kana": 1}) == "zh"
    assert language_of({"latin": 5, "cyrillic": 5}) == "latin"  # a tie: the first script in SCRIPTS
    assert language_of({"other": 3}) == "other"


def test_user_languages_stream_across_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(languages, "_BATCH", 2)  # a user's rows straddle batch boundaries
    rows = [
        ("a", "中文新闻"),
        ("a", "short"),
        ("a", "更多的中文新闻"),
        ("b", None),
        ("b", "English text only"),
        ("c", "123"),
    ]
    assert list(detect_user_languages(rows)) == [("a", "zh"), ("b", "latin"), ("c", NO_LANGUAGE)]
    assert list(detect_user_languages([])) == []


MIXED = {
    "zh_user": ["华为发布新款手机", "国家队赢得比赛", "A short English note"],
    "ja_user": ["東京で新しいカフェがオープンしました"],
    "ko_user": ["서울의 날씨가 맑습니다"],
    "th_user": ["ข่าววันนี้"],
    "ru_user": ["Новости спорта"],
    "ar_user": ["أخبار الرياضة"],
    "en_user": ["The latest football news", "Transfer rumours"],
    "digits_user": ["12345 https://example.com/123"],
}
EXPECTED = {
    "zh_user": "zh",
    "ja_user": "ja",
    "ko_user": "ko",
    "th_user": "th",
    "ru_user": "cyrillic",
    "ar_user": "arabic",
    "en_user": "latin",
    "digits_user": NO_LANGUAGE,
}


def _write_events(path: Path, users: dict[str, list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "item_title"])
        for user, titles in users.items():
            for i, title in enumerate(titles):
                writer.writerow([user, f"{user}-{i}", title])
    return path


def test_ingest_stores_each_users_language(tmp_path: Path) -> None:
    events = _write_events(tmp_path / "mixed.csv", MIXED)
    with Store(tmp_path / "s.duckdb") as store:
        result = store.ingest(events)
        assert store.languages(list(MIXED)) == EXPECTED
        mix = {lang: list(EXPECTED.values()).count(lang) for lang in set(EXPECTED.values())}
        assert result.languages == mix == store.language_mix()
        assert store.language_mix(["zh_user", "ja_user", "ghost"]) == {"ja": 1, "zh": 1}
        # More of the user's history, in another script: the language follows the history.
        more = _write_events(tmp_path / "more.csv", {"en_user": ["最新的足球新闻和转会传闻"] * 3})
        assert store.ingest(more).languages == {"zh": 1}
        assert store.languages(["en_user"]) == {"en_user": "zh"}


def test_ingest_of_the_chinese_gold_set_finds_chinese_readers(tmp_path: Path) -> None:
    events = TOUTIAO / "events.csv"
    if not events.is_file():
        pytest.skip(f"{TOUTIAO} is absent")
    with Store(tmp_path / "zh.duckdb") as store:
        assert store.ingest(events).languages == {"zh": 400}


def test_the_migration_fills_in_an_existing_stores_users(tmp_path: Path) -> None:
    db = tmp_path / "old.duckdb"
    with Store(db) as store:  # made into a store from before schema 6
        store.ingest(_write_events(tmp_path / "mixed.csv", MIXED))
        store.con.execute("ALTER TABLE users DROP COLUMN language")
        store.con.execute("DELETE FROM schema_migrations WHERE version = 6")
    with Store(db, read_only=True) as old:  # read-only never migrates: the language is unknown, not an error
        assert old.language_mix() == {UNDETECTED: len(MIXED)}
        assert old.languages(["zh_user"]) == {"zh_user": UNDETECTED}
    with Store(db) as store:
        versions = {r[0] for r in store.con.execute("SELECT version FROM schema_migrations").fetchall()}
        assert 6 in versions
        assert store.languages(list(MIXED)) == EXPECTED
        assert store.con.execute("SELECT count(*) FROM users WHERE language IS NULL").fetchone() == (0,)


def test_cli_ingest_shows_the_language_mix(tmp_path: Path) -> None:
    db = str(tmp_path / "cli.duckdb")
    events = _write_events(tmp_path / "mixed.csv", MIXED)
    table = runner.invoke(app, ["ingest", str(events), "--db", db])
    assert table.exit_code == 0, table.output
    assert "languages" in table.stdout and "zh 1" in table.stdout and "latin 1" in table.stdout
    as_json = runner.invoke(app, ["ingest", str(events), "--db", db, "--json"])
    assert as_json.exit_code == 0, as_json.output
    row = json.loads(as_json.stdout)[0]
    assert row["languages"]["zh"] == 1 and sum(row["languages"].values()) == len(MIXED)


def _labeled(tmp_path: Path, *extra: str) -> str:
    db = str(tmp_path / "cli.duckdb")
    ingested = runner.invoke(app, ["ingest", str(_write_events(tmp_path / "m.csv", MIXED)), "--db", db])
    assert ingested.exit_code == 0, ingested.output
    tax = str(ROOT / "taxonomies" / "20ng_coarse.yaml")
    args = ["label", "--db", db, "--taxonomy", tax, "--backend", "fake:echo", "--scorers", "llm=1"]
    result = runner.invoke(app, [*args, "--users", "zh_user,ja_user,en_user", *extra])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_cli_label_json_gives_each_users_language(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in _labeled(tmp_path, "--json").splitlines() if line.strip()]
    assert {r["user_id"]: r["language"] for r in rows} == {
        "zh_user": "zh",
        "ja_user": "ja",
        "en_user": "latin",
    }


def test_cli_label_summary_shows_the_language_mix(tmp_path: Path) -> None:
    # The mix comes from the run's stats ("languages": store.language_mix(user_ids) in labeling/run.py).
    text = _labeled(tmp_path)
    assert "languages ja 1, latin 1, zh 1" in text
