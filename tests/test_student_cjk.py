"""The student for any script: character n-grams where words are not separated by spaces, words elsewhere."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from llm_labeler.errors import ConfigError
from llm_labeler.student import StudentClassifier, fastpath, load_student, save_student
from llm_labeler.student.hashing import HashSpec, count_matrix, ngram_texts

ROOT = Path(__file__).resolve().parents[1]
ZH_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "toutiao_readers"

# Made-up sentences (not from any data set) in each script the featurizer n-grams, and mixed with English.
MIXED = [
    "苹果发布新款手机，售价五千元。",
    "国足今晚迎战日本队 球迷：必须赢！",
    "Apple 发布 iPhone 16：价格“很贵”…",
    "東京の天気は晴れです。カタカナ・テスト",
    "서울 날씨가 좋습니다 오늘",
    "ภาษาไทยไม่มีการเว้นวรรค ok",
    "𠀀𠀁x𠀂 rare ideographs outside the BMP",
    "《人民日报》【快讯】２０２４年 　全角空格",
    "plain English text, nothing else",
    "",
    "中",
]
# Text in no unspaced script: accents, general punctuation, Cyrillic, Greek, emoji, ligatures.
LATIN = [
    "naïve—façade “quoted” … ½ ™ ﬁ",
    "Привет, мир! Ελληνικά κείμενα",
    "emoji 😀✓ and ASCII words; x y z 42",
    "",
    "Ünïcödé wörds ärë wörds",
]


def _random_docs(n: int, seed: int = 0) -> list[str | None]:
    """Documents of random pieces of every kind, including empty ones and CJK at document boundaries."""
    rng = random.Random(seed)
    alphabet = [
        "中",
        "文",
        "字",
        "日",
        "本",
        "の",
        "カ",
        "한",
        "국",
        "ไ",
        "ท",
        "𠀀",
        "。",
        "，",
        "「",
        "、",
        "　",
    ]
    latin = ["word", "Mixed", "x", "naïve", "—", "“", "42", " ", "\n", ",", "é"]
    docs: list[str | None] = []
    for _ in range(n):
        pieces = rng.choices(alphabet + latin, k=rng.randint(0, 40))
        docs.append("".join(pieces) if rng.random() > 0.05 else None)
    return docs


def _rows(X) -> list[dict[int, float]]:
    return [dict(zip(X.getrow(i).indices.tolist(), X.getrow(i).data.tolist())) for i in range(X.shape[0])]


@pytest.mark.parametrize(
    "spec",
    [HashSpec(cjk_ngrams=(1, 2)), HashSpec(cjk_ngrams=(2, 2), word_ngrams=2), HashSpec(cjk_ngrams=(1, 8))],
    ids=["1-2", "2+word bigrams", "1-8"],
)
def test_numpy_compiled_and_python_twins_agree_on_every_script(spec: HashSpec) -> None:
    docs = [*MIXED, *LATIN, *_random_docs(300)]
    metas = [f"type:view cat:{'科技' if i % 2 else 'tech'}" if i % 3 else None for i in range(len(docs))]
    a = count_matrix(docs, metas, spec)
    b = fastpath.count_matrix_fast(docs, metas, spec)
    assert (a != b).nnz == 0 and np.array_equal(a.indptr, b.indptr)
    for i, (doc, meta) in enumerate(zip(docs, metas)):
        expected = Counter(col for col, _ in ngram_texts(doc or "", meta or "", spec))
        assert _rows(a[i])[0] == dict(expected), (i, doc)


def test_unspaced_runs_become_char_ngrams_and_latin_stays_words() -> None:
    spec = HashSpec(cjk_ngrams=(1, 2))
    grams = [t for _, t in ngram_texts(MIXED[2], "", spec)]
    assert {"apple", "iphone", "16"} <= set(grams)  # Latin words, as before
    assert {"发", "布", "发布", "价格", "很贵"} <= set(grams)  # Chinese characters and bigrams
    assert "布价" not in grams and "iphone发布" not in grams  # runs end at spaces, punctuation and Latin
    jp = {t for _, t in ngram_texts(MIXED[3], "", spec)}
    assert {"東京", "晴れ", "カタ"} <= jp and not any("・" in t or "。" in t for t in jp)
    assert {"ภา", "ไม"} <= {t for _, t in ngram_texts(MIXED[5], "", spec)}
    wide = {t for _, t in ngram_texts(MIXED[7], "", spec)}
    assert {"人民", "快讯", "全角"} <= wide and not any(c in t for t in wide for c in "《》【】　")
    # before: a clause with no spaces was one "word"
    assert [t for _, t in ngram_texts(MIXED[0], "", HashSpec())] == ["苹果发布新款手机，售价五千元。"]


def test_text_in_no_unspaced_script_gets_the_very_same_columns() -> None:
    for word_ngrams in (1, 2):
        off = HashSpec(word_ngrams=word_ngrams)
        on = HashSpec(word_ngrams=word_ngrams, cjk_ngrams=(1, 3))
        for fn in (count_matrix, fastpath.count_matrix_fast):
            assert (fn(LATIN, None, off) != fn(LATIN, None, on)).nnz == 0
    # and a mixed document keeps exactly the Latin words it had
    words = {t for _, t in ngram_texts("hello world 你好", "", HashSpec(cjk_ngrams=(1, 2)))}
    assert {"hello", "world"} <= words


def test_bad_cjk_ngrams_are_refused() -> None:
    for bad in ((0, 2), (2, 1), (1, 9)):
        with pytest.raises(ConfigError, match="cjk_ngrams"):
            HashSpec(cjk_ngrams=bad)
    with pytest.raises(ConfigError):
        StudentClassifier(cjk_ngrams=(3, 2)).fit(["a b", "c d"], ["x", "y"])


def _chinese_xy() -> tuple[np.ndarray, np.ndarray]:
    """Two made-up topics in Chinese, with some English, 40 users each."""
    rng = random.Random(1)
    topics = {
        "sports": ["足球", "比赛", "球队", "进球", "冠军", "联赛", "球迷", "教练"],
        "finance": ["股市", "银行", "投资", "经济", "利率", "基金", "房价", "企业"],
    }
    shared = ["今天", "新闻", "发布", "记者", "我们", "网友", "the", "news"]
    X, y = [], []
    for label, words in topics.items():
        for _ in range(40):
            lines = ["".join(rng.choices(words * 2 + shared, k=6)) + "。" for _ in range(5)]
            X.append(["\n".join(lines), "type:view"])
            y.append(label)
    return np.array(X, dtype=object), np.array(y)


def test_student_learns_chinese_and_compiled_scores_match() -> None:
    X, y = _chinese_xy()
    before = StudentClassifier(cjk_ngrams=(0, 0)).fit(X[::2], y[::2])
    est = StudentClassifier().fit(X[::2], y[::2])
    assert est.get_params()["cjk_ngrams"] == (1, 2)
    assert (est.predict(X[1::2]) == y[1::2]).mean() > 0.9
    assert (before.predict(X[1::2]) == y[1::2]).mean() < 0.75  # whole clauses as words hardly generalise
    f = est.features_
    ref = np.asarray(f.transform(X) @ est.coef_) + est.intercept_
    fast = fastpath.decision_scores(f._counts(X), f, est.coef_, est.intercept_)
    assert np.allclose(fast, ref, atol=1e-5)
    top = est.top_features(X[0][0], X[0][1], str(y[0]), k=5)
    assert top and all(any("\u4e00" <= c <= "\u9fff" for c in text) for text, _ in top)


def test_a_model_saved_before_cjk_ngrams_existed_loads_with_its_own_features(tmp_path: Path) -> None:
    X, y = _chinese_xy()
    est = StudentClassifier(word_bits=16, cjk_ngrams=(0, 0)).fit(X, y)
    expected = est.predict_proba(X)
    # what such a file holds: no cjk_ngrams anywhere (StudentClassifier, HashedTfidf, HashSpec)
    del (
        est.__dict__["cjk_ngrams"],
        est.features_.__dict__["cjk_ngrams"],
        est.features_.spec_.__dict__["cjk_ngrams"],
    )
    path = tmp_path / "old.skops"
    save_student(est, {"feature_config": {"word_bits": 16}}, path)
    with zipfile.ZipFile(path) as z:
        assert b"cjk_ngrams" not in z.read("schema.json")
    loaded, _ = load_student(path)
    assert loaded.get_params()["cjk_ngrams"] == (0, 0) and loaded.features_.spec_.cjk_ngrams == (0, 0)
    assert np.array_equal(loaded.predict_proba(X), expected)
    # a new file records its featurizer and loads it back
    new = StudentClassifier(word_bits=16, cjk_ngrams=(2, 3)).fit(X, y)
    save_student(new, {}, tmp_path / "new.skops")
    again, _ = load_student(tmp_path / "new.skops")
    assert again.features_.spec_.cjk_ngrams == (2, 3)
    assert np.allclose(again.predict_proba(X), new.predict_proba(X))


@pytest.mark.skipif(not ZH_DIR.is_dir(), reason="shared/datasets/toutiao_readers is not here")
def test_quality_table_on_the_chinese_gold(tmp_path: Path) -> None:
    out = tmp_path / "zh.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "quality_distill.py"),
            "--zh",
            "--folds",
            "3",
            "--zh-configs",
            "before,default",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "macro-F1" in proc.stdout
    rows = {r["name"]: r for r in json.loads(out.read_text(encoding="utf-8"))}
    assert rows["before"]["macro_f1"] < 0.5  # the Chinese text did not get through
    assert rows["default"]["macro_f1"] > 0.8  # near the README's char-bigram baseline (0.912)
