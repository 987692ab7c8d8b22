"""Bulk scoring: scores table and Parquet, incremental rescoring, taxonomy guard, filters, LLM fallback, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_distill import write_run
from typer.testing import CliRunner

from llm_labeler.cli import app
from llm_labeler.errors import InputError
from llm_labeler.labeling import LabelConfig
from llm_labeler.schemas import Taxonomy, load_taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.store import Store
from llm_labeler.store import student as sq
from llm_labeler.student.distill import DistillConfig, distill
from llm_labeler.student.scoring import _pipeline, load_model, predict_batch, score_users

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def model(
    loaded_store: Store, coarse_taxonomy: Taxonomy, gold_coarse: dict[str, str], tmp_path: Path
) -> tuple[Store, Path]:
    loaded_store.set_gold(coarse_taxonomy.name, {u: [g] for u, g in gold_coarse.items()}, "20ng fixture")
    run = write_run(loaded_store, coarse_taxonomy, gold_coarse, noise_every=7)
    path = tmp_path / "student.skops"
    distill(loaded_store, run, path, DistillConfig(folds=3))
    return loaded_store, path


def test_score_writes_table_and_parquet_then_rescoring_only_changed(
    model: tuple[Store, Path], tmp_path: Path
) -> None:
    store, path = model
    out = tmp_path / "scores.parquet"
    r = score_users(store, path, out=out, batch_size=16, workers=2)
    assert r.scored == r.users_in_filter == 60 and r.rows_out == 60
    assert sum(r.segments.values()) == 60
    assert r.gold["student"]["n"] == 60 and r.gold["student"]["accuracy"] > 0.8
    assert r.agreement["student"]["n"] == 58
    table = pq.read_table(out)
    probs = np.column_stack([table.column(f"p_{s}").to_numpy() for s in load_model(path)[1]["segments"]])
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    assert set(table.column("model_version").to_pylist()) == {r.model_version}
    again = score_users(store, path)
    assert again.scored == 0 and again.unchanged == 60
    uid = store.user_ids(limit=1)[0]
    extra = tmp_path / "new.jsonl"
    extra.write_text(
        json.dumps({"user_id": uid, "item_title": "new hockey season", "text": "go leafs"}) + "\n"
    )
    store.ingest(extra)
    changed = score_users(store, path)
    assert changed.scored == 1 and changed.docs_rebuilt == 1
    assert store.query("SELECT count(*) AS n FROM scores")[0]["n"] == 60  # replaced, not duplicated
    assert score_users(store, path, full=True).scored == 60


def test_threads_give_the_same_answers(model: tuple[Store, Path]) -> None:
    store, path = model
    est, meta, _ = load_model(path)
    _, reader = sq.docs_reader(store, "none", "TRUE", 7)
    batches = list(reader)
    single = np.vstack([predict_batch(est, meta["segments"], b) for b in batches])
    threaded = np.vstack([p for _, p in _pipeline(est, meta["segments"], iter(batches), 3)])
    assert np.array_equal(single, threaded)
    forked = np.vstack([p for _, p in _pipeline(est, meta["segments"], iter(batches), 2, processes=True)])
    assert np.array_equal(single, forked)


def test_taxonomy_mismatch_and_bad_filters_are_refused(model: tuple[Store, Path]) -> None:
    store, path = model
    with pytest.raises(InputError, match="distilled for taxonomy '20ng_coarse'"):
        score_users(store, path, taxonomy=load_taxonomy(ROOT / "taxonomies" / "ecommerce.yaml"))
    with pytest.raises(InputError, match="--users filter"):
        score_users(store, path, sql_filter="no_such_column > 3")
    assert store.query("SELECT count(*) AS n FROM scores")[0]["n"] == 0
    r = score_users(
        store,
        path,
        taxonomy=load_taxonomy(ROOT / "taxonomies" / "20ng_coarse.yaml"),
        sql_filter="n_events >= 8",
    )
    assert 0 < r.scored == r.users_in_filter < 60


def test_fallback_sends_only_uncertain_users_and_never_pays_twice(model: tuple[Store, Path]) -> None:
    store, path = model
    quick = LabelConfig(backend="fake:echo", scorers=[ScorerSpec("llm", 1.0)])
    r = score_users(store, path, fallback="fake:echo", margin=0.3, fallback_config=quick)
    margins = [row["margin"] for row in store.query("SELECT margin FROM scores WHERE source = 'student'")]
    f = r.fallback
    assert f is not None and 0 < f.sent < r.users_in_filter
    assert f.calls > 0 and f.replaced <= f.sent
    assert all(m >= 0.3 for m in margins)
    assert "cascade" in r.gold and r.gold["cascade"]["n"] == 60
    rerun = score_users(store, path, fallback="fake:echo", margin=0.3, full=True, fallback_config=quick)
    assert rerun.fallback is not None and rerun.fallback.calls == 0 and rerun.fallback.cache_hits > 0


def test_fallback_through_the_embedded_model(model: tuple[Store, Path], embedded_backend: object) -> None:
    store, path = model
    users = store.user_ids(limit=2)
    quoted = ", ".join(f"'{u}'" for u in users)
    r = score_users(
        store, path, sql_filter=f"user_id IN ({quoted})", fallback="llamacpp:default", margin=1.01
    )
    assert r.fallback is not None and r.fallback.sent == 2 and r.fallback.calls > 0
    rows = store.query("SELECT source FROM scores WHERE source LIKE 'llm:%'")
    assert len(rows) == r.fallback.replaced > 0


def test_cli_commands(model: tuple[Store, Path], tmp_path: Path) -> None:
    store, path = model
    db = store.path
    run = sq.get_model(store, load_model(path)[1]["model_version"])["source_run"]
    store.close()
    cli = CliRunner()
    for args in (
        ["distill", "--help"],
        ["score", "--help"],
        ["export", "--help"],
        ["review", "export", "--help"],
        ["review", "import", "--help"],
        ["explain", "--help"],
    ):
        res = cli.invoke(app, args)
        assert res.exit_code == 0, args
    res = cli.invoke(app, ["distill", "--db", db, "--run", run, "--out", str(tmp_path / "m2.skops")])
    assert res.exit_code == 0, res.output
    assert "student vs LLM labels" in res.output and "student overall" in res.output
    res = cli.invoke(
        app,
        ["score", "--db", db, "--model", str(tmp_path / "m2.skops"), "--out", str(tmp_path / "s.parquet")],
    )
    assert res.exit_code == 0, res.output
    assert "scored" in res.output and "student vs gold" in res.output
    res = cli.invoke(
        app,
        [
            "score",
            "--db",
            db,
            "--model",
            str(tmp_path / "m2.skops"),
            "--taxonomy",
            str(ROOT / "taxonomies" / "ecommerce.yaml"),
        ],
    )
    assert res.exit_code == 2 and "distilled for taxonomy" in res.output
    res = cli.invoke(app, ["export", "--db", db, "--run", run, "--out", str(tmp_path / "l.csv")])
    assert res.exit_code == 0 and "wrote 58 labels" in res.output
    res = cli.invoke(
        app, ["review", "export", "--db", db, "--run", run, "--out", str(tmp_path / "r.csv"), "--n", "3"]
    )
    assert res.exit_code == 0 and (tmp_path / "r.csv").exists()
    res = cli.invoke(app, ["review", "import", "--db", db, str(tmp_path / "r.csv")])
    assert res.exit_code == 0 and "imported 0 corrections" in res.output
    with Store(db) as s:
        uid = s.user_ids(limit=1)[0]
    res = cli.invoke(app, ["explain", uid, "--db", db, "--json"])
    assert res.exit_code == 0 and json.loads(res.output)["top_features"]
