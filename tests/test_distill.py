"""The student: hashing features, the scikit-learn contract, skops persistence, distill, export, review, explain."""

from __future__ import annotations

import csv
import json
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline

from llm_labeler.errors import InputError, StoreError, UnknownUserError
from llm_labeler.schemas import Taxonomy
from llm_labeler.store import LabelRecord, Store
from llm_labeler.store import student as sq
from llm_labeler.student import HashedTfidf, StudentClassifier, load_student, save_student
from llm_labeler.student.distill import DistillConfig, distill
from llm_labeler.student.hashing import HashSpec, count_matrix, ngram_texts
from llm_labeler.student.review import explain_user, export_labels, review_export, review_import

SEGMENTS = ["computers", "recreation", "science", "politics", "religion", "marketplace"]


def fixture_xy(events_path: Path, gold: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    docs: dict[str, list[str]] = {}
    for line in events_path.read_text(encoding="utf-8").splitlines():
        e = json.loads(line)
        docs.setdefault(e["user_id"], []).append(f"{e.get('item_title') or ''} {e.get('text') or ''}")
    users = sorted(docs)
    X = np.array([[" \n ".join(docs[u]), "type:post"] for u in users], dtype=object)
    return X, np.array([gold[u] for u in users])


def write_run(store: Store, tax: Taxonomy, gold: dict[str, str], noise_every: int = 0) -> str:
    """A label run whose labels are the gold ones (every `noise_every`-th shifted), one abstain, one failure."""
    h = tax.content_hash()
    store.remember_taxonomy(h, tax.name, tax.model_dump(mode="json"))
    run = store.start_run("label", "fake:echo", "fake-echo", tax.name, h, {})
    labels = []
    for i, (uid, seg) in enumerate(sorted(gold.items())):
        if noise_every and i % noise_every == 0:
            seg = SEGMENTS[(SEGMENTS.index(seg) + 1) % len(SEGMENTS)]
        conf = 0.5 + (i % 5) / 10
        labels.append(
            LabelRecord(
                run,
                uid,
                seg,
                [seg],
                {seg: conf},
                conf,
                False,
                "fake-echo",
                "segment",
                "v1",
                "ph1",
                tax.name,
                h,
            )
        )
    labels[0].primary_segment, labels[0].abstained, labels[0].abstain_reason = None, True, "below threshold"
    labels[1].primary_segment, labels[1].error = None, "every scorer failed"
    store.write_labels(labels)
    store.finish_run(run, "done", {})
    return run


@pytest.fixture
def labeled(loaded_store: Store, coarse_taxonomy: Taxonomy, gold_coarse: dict[str, str]) -> tuple[Store, str]:
    loaded_store.set_gold(coarse_taxonomy.name, {u: [g] for u, g in gold_coarse.items()}, "20ng fixture")
    return loaded_store, write_run(loaded_store, coarse_taxonomy, gold_coarse, noise_every=7)


def test_vectorised_hashing_matches_the_python_twin() -> None:
    docs = [
        "Hello World, hello café! a b xx",
        "",
        "second doc\nwith WORDS words",
        "x",
        None,
        "naïve—façade 42 42",
    ]
    metas = ["type:post cat:a", "", "type:view type:view", None, "", "cat:b"]
    spec = HashSpec()
    X = count_matrix(docs, metas, spec)
    assert X.shape == (6, spec.n_columns)
    for i, doc in enumerate(docs):
        expected = Counter(col for col, _ in ngram_texts(doc or "", metas[i] or "", spec))
        row = X.getrow(i)
        assert dict(zip(row.indices.tolist(), row.data.tolist())) == dict(expected), i
    # documents never share a token across their boundary
    assert X.getrow(3).nnz == 0 and X.getrow(4).nnz == 0


def test_char_ngrams_add_a_block() -> None:
    spec = HashSpec(char_ngrams=(3, 4))
    X = count_matrix(["abcde", "ab"], None, spec)
    char_cols = X.indices[(X.indices >= spec.char_offset) & (X.indices < spec.meta_offset)]
    assert len(char_cols) == 3 + 2  # "abc","bcd","cde" + "abcd","bcde"; "ab" has none


def test_student_follows_the_sklearn_contract(events_path: Path, gold_coarse: dict[str, str]) -> None:
    X, y = fixture_xy(events_path, gold_coarse)
    est = StudentClassifier(C=5.0, word_bits=16)
    with pytest.raises(NotFittedError):
        est.predict(X)
    assert est.get_params()["C"] == 5.0 and clone(est).get_params() == est.get_params()
    assert est.fit(X, y) is est and est.coef_.shape[1] == len(set(y))
    scores = cross_val_score(StudentClassifier(word_bits=16), X, y, cv=3)
    assert scores.mean() > 0.5  # six balanced classes: chance is 0.17
    pipe = Pipeline(
        [("features", HashedTfidf(word_bits=16)), ("clf", LogisticRegression(solver="newton-cg"))]
    )
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.4
    proba = est.predict_proba(X)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)
    assert (est.predict(X) == y).mean() > 0.9  # it fits its training data


def test_skops_roundtrip_and_refusals(tmp_path: Path, events_path: Path, gold_coarse: dict[str, str]) -> None:
    X, y = fixture_xy(events_path, gold_coarse)
    est = StudentClassifier(word_bits=16).fit(X, y)
    path = tmp_path / "m.skops"
    version = save_student(est, {"taxonomy_hash": "abc", "nested": {"x": [1, 2.5, None]}}, path)
    loaded, meta = load_student(path)
    assert meta["model_version"] == version and meta["nested"] == {"x": [1, 2.5, None]}
    assert np.allclose(loaded.predict_proba(X), est.predict_proba(X))
    with pytest.raises(InputError, match="not a skops"):
        load_student(events_path)
    # a file that asks for a type a student never has (here: os.system) is refused before anything is built
    bad = tmp_path / "bad.skops"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "schema.json":
                data = data.replace(b'"__module__": "builtins"', b'"__module__": "os"', 1)
                data = data.replace(b'"__class__": "dict"', b'"__class__": "system"', 1)
            dst.writestr(item, data)
    with pytest.raises(InputError, match="refusing"):
        load_student(bad)


def test_distill_reports_agreement_gold_and_metadata(labeled: tuple[Store, str], tmp_path: Path) -> None:
    store, run = labeled
    report = distill(store, run, tmp_path / "student.skops", DistillConfig(folds=3))
    assert report.excluded == {"abstained": 1, "failed": 1}
    assert report.n_train == 58
    assert report.cv["n"] == 58 and 0.0 <= report.cv["kappa"] <= 1.0
    g = report.gold
    assert g["n"] == 58 and set(g["per_segment"]) == set(SEGMENTS)
    assert g["llm"]["accuracy"] < 1.0  # the noise we injected shows up as LLM errors vs gold
    _, meta = load_student(tmp_path / "student.skops")
    for key in (
        "taxonomy_hash",
        "source_run",
        "label_model_id",
        "prompt_hash",
        "feature_config",
        "library_versions",
    ):
        assert meta[key], key
    assert (
        meta["source_run"] == run and meta["label_model_id"] == "fake-echo" and meta["prompt_hash"] == "ph1"
    )
    assert sq.get_model(store, report.model_version)["source_run"] == run


def test_distill_min_confidence_and_self_training(labeled: tuple[Store, str], tmp_path: Path) -> None:
    store, run = labeled
    report = distill(
        store, run, tmp_path / "s.skops", DistillConfig(min_confidence=0.75, folds=3, self_train=True)
    )
    assert report.excluded["below min confidence"] > 10
    assert report.n_train + report.self_train_dropped + sum(report.excluded.values()) == 60


def test_distill_refuses_bad_runs(store: Store, coarse_taxonomy: Taxonomy, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no run"):
        distill(store, "nope", tmp_path / "x.skops")
    store.ingest(Path(__file__).parent / "fixtures" / "20ng_sample" / "events.jsonl")
    users = store.user_ids(limit=5)
    run = write_run(store, coarse_taxonomy, dict.fromkeys(users, "science"))
    with pytest.raises(InputError, match="two classes"):
        distill(store, run, tmp_path / "x.skops")


def test_export_formats(labeled: tuple[Store, str], tmp_path: Path) -> None:
    store, run = labeled
    n = export_labels(store, run, tmp_path / "l.parquet", min_confidence=0.0)
    assert n == 58
    table = pq.read_table(tmp_path / "l.parquet")
    assert {"user_id", "segment", "segments", "confidence", "source_model", "prompt_hash"} <= set(
        table.column_names
    )
    assert export_labels(store, run, tmp_path / "l.csv", min_confidence=0.8) < n
    with (tmp_path / "l.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert all(float(r["confidence"]) >= 0.8 for r in rows)
    export_labels(store, run, tmp_path / "l.jsonl")
    first = json.loads((tmp_path / "l.jsonl").read_text().splitlines()[0])
    assert first["label_source"] == "llm" and isinstance(first["segments"], list)
    with pytest.raises(InputError, match=r"\.parquet, \.csv or \.jsonl"):
        export_labels(store, run, tmp_path / "l.xlsx")


def test_review_loop_feeds_distill(labeled: tuple[Store, str], tmp_path: Path) -> None:
    store, run = labeled
    sheet = tmp_path / "review.csv"
    assert review_export(store, run, sheet, n=5) == 5
    with sheet.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0]["llm_segment"] == ""  # abstains come first: they are the least confident
    rows[0]["correct_segment"], rows[1]["correct_segment"] = "religion", "not-a-segment"
    _write(sheet, rows)
    with pytest.raises(InputError, match="line 3: segment 'not-a-segment'"):
        review_import(store, sheet)
    assert sq.review_gold(store, "20ng_coarse") == {}  # nothing stored from a bad file
    rows[1]["correct_segment"] = "science"
    _write(sheet, rows)
    assert review_import(store, sheet)["imported"] == 2
    report = distill(store, run, tmp_path / "r.skops", DistillConfig(folds=3))
    assert report.reviewed == 2 and report.excluded == {"failed": 1}  # the abstain now carries a human label
    exported = tmp_path / "e.jsonl"
    export_labels(store, run, exported)
    sources = Counter(json.loads(line)["label_source"] for line in exported.read_text().splitlines())
    assert sources["review:review.csv"] == 2
    rows[2]["user_id"], rows[2]["correct_segment"] = "u_nobody", "science"
    _write(sheet, rows)
    with pytest.raises(UnknownUserError):
        review_import(store, sheet)


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_explain_names_ngrams_from_the_history(labeled: tuple[Store, str], tmp_path: Path) -> None:
    store, run = labeled
    distill(store, run, tmp_path / "s.skops", DistillConfig(folds=3))
    uid = store.user_ids(limit=3)[2]
    e = explain_user(store, uid)  # the newest registered model
    assert e.top_features and all(w > 0 for _, w in e.top_features)
    doc = sq.docs_for(store, [uid])[uid][0].lower()
    assert all(text.split()[0] in doc for text, _ in e.top_features if not text.startswith("type:"))
    assert e.llm is not None and e.llm["run_id"] == run


def test_an_eval_run_id_resolves_to_its_primary_labeling_run(
    labeled: tuple[Store, str], tmp_path: Path
) -> None:
    store, run = labeled
    store.con.execute(
        "INSERT INTO eval_cells (eval_id, cell, position, run_id, is_baseline, is_primary) "
        "VALUES ('eval_x', 'a', 0, 'label_other', false, false), ('eval_x', 'b', 1, ?, false, true)",
        [run],
    )
    assert sq.labeling_run(store, "eval_x") == run
    assert export_labels(store, "eval_x", tmp_path / "l.jsonl") == 58
    with pytest.raises(StoreError, match="neither a label run nor an eval run"):
        sq.labeling_run(store, "eval_missing")


def test_compiled_path_matches_numpy(events_path: Path, gold_coarse: dict[str, str]) -> None:
    from llm_labeler.student import fastpath

    assert fastpath.AVAILABLE
    X, y = fixture_xy(events_path, gold_coarse)
    spec = HashSpec()
    docs, metas = [*X[:, 0], "", "x y", None], [*X[:, 1], "", None, "cat:z"]
    a, b = count_matrix(docs, metas, spec), fastpath.count_matrix_fast(docs, metas, spec)
    assert (a != b).nnz == 0 and np.array_equal(a.indptr, b.indptr)
    est = StudentClassifier(word_bits=16).fit(X, y)
    ref = np.asarray(est.features_.transform(X) @ est.coef_) + est.intercept_
    assert np.allclose(
        fastpath.decision_scores(est.features_._counts(X), est.features_, est.coef_, est.intercept_),
        ref,
        atol=1e-5,
    )


def test_compiled_path_matches_numpy_on_cjk_text(events_path: Path, gold_coarse: dict[str, str]) -> None:
    from llm_labeler.student import fastpath

    X, y = fixture_xy(events_path, gold_coarse)
    # the same users with made-up Chinese / Japanese / Thai lines mixed into their histories
    extra = ["苹果发布新款手机，售价五千元。", "東京の天気は晴れです。", "ภาษาไทย", "《快讯》２０２４年 足球"]
    X = X.copy()
    X[:, 0] = [f"{doc}\n{extra[i % 4]}{extra[(i + 1) % 4]}" for i, doc in enumerate(X[:, 0])]
    spec = HashSpec(cjk_ngrams=(1, 2))
    docs, metas = [*X[:, 0], "", "中", None], [*X[:, 1], "cat:科技", None, "cat:z"]
    a, b = count_matrix(docs, metas, spec), fastpath.count_matrix_fast(docs, metas, spec)
    assert (a != b).nnz == 0 and np.array_equal(a.indptr, b.indptr)
    est = StudentClassifier(word_bits=16).fit(X, y)
    assert est.features_.spec_.cjk_ngrams == (1, 2)
    ref = np.asarray(est.features_.transform(X) @ est.coef_) + est.intercept_
    assert np.allclose(
        fastpath.decision_scores(est.features_._counts(X), est.features_, est.coef_, est.intercept_),
        ref,
        atol=1e-5,
    )


def test_english_students_are_unchanged_by_cjk_ngrams(events_path: Path, gold_coarse: dict[str, str]) -> None:
    X, y = fixture_xy(events_path, gold_coarse)
    new, old = StudentClassifier(word_bits=16), StudentClassifier(word_bits=16, cjk_ngrams=(0, 0))
    assert (new.fit(X, y).transform_features(X) != old.fit(X, y).transform_features(X)).nnz == 0
    assert np.array_equal(new.predict_proba(X), old.predict_proba(X))
