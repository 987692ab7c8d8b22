"""The student on Spark (local[2]): the same scores as the in-process path, empty partitions, null documents,
a model for another taxonomy refused on the driver, and `score --engine spark` writing Parquet."""

from __future__ import annotations

import os
import random
import shutil
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_distill import write_run
from typer.testing import CliRunner

from llm_labeler.cli import app
from llm_labeler.errors import InputError
from llm_labeler.schemas import Taxonomy
from llm_labeler.store import Store
from llm_labeler.student.distill import DistillConfig, distill
from llm_labeler.student.engine import score_batches
from llm_labeler.student.shards import score_files

pyspark = pytest.importorskip("pyspark", reason="pyspark is not installed (the [spark] extra)")
if not (shutil.which("java") or os.environ.get("JAVA_HOME")):
    pytest.skip(
        "no Java runtime for Spark (apt-get install openjdk-17-jre-headless)", allow_module_level=True
    )

N_USERS = 2_000


@pytest.fixture(scope="session")
def spark() -> Iterator[Any]:
    """One local[2] session for the whole run (it takes ~40 s to start on 2 cores)."""
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # workers run this very Python (and this llm_labeler)
    session = (
        SparkSession.builder.master("local[2]")
        .appName("llm-labeler tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.sql.session.timeZone", "Europe/Berlin")  # naive times must not move with the zone
        .getOrCreate()
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def model(
    tmp_path_factory: pytest.TempPathFactory,
    events_path: Path,
    coarse_taxonomy: Taxonomy,
    gold_coarse: dict[str, str],
) -> Path:
    folder = tmp_path_factory.mktemp("spark_model")
    with Store(folder / "s.duckdb") as store:
        store.ingest(events_path)
        run = write_run(store, coarse_taxonomy, gold_coarse, noise_every=7)
        distill(store, run, folder / "student.skops", DistillConfig(folds=3))
    return folder / "student.skops"


@pytest.fixture(scope="module")
def event_dir(tmp_path_factory: pytest.TempPathFactory, events_path: Path) -> Path:
    """2,000 users made of the fixture's real posts: times with ties and gaps, markup, a repeated row."""
    import json

    posts = [json.loads(line) for line in events_path.read_text(encoding="utf-8").splitlines()]
    rng = random.Random(0)
    start = datetime(2024, 3, 1, 12, 0, 0)
    rows: list[dict[str, Any]] = []
    for u in range(N_USERS):
        for k in range(rng.randint(1, 4)):
            post = rng.choice(posts)
            rows.append(
                {
                    "user_id": f" user{u:05d}" if k == 0 else f"user{u:05d}",  # ingest trims ids
                    "ts": None
                    if rng.random() < 0.2
                    else start + timedelta(seconds=rng.randint(0, 3), microseconds=rng.choice([0, 250])),
                    "event_type": rng.choice(["post", "View ", None]),
                    "item_id": post["item_id"],
                    "item_title": rng.choice([post["item_title"], f"<i>{post['item_title']}</i> &amp; more"]),
                    "item_category": rng.choice([None, "comp sys"]),
                    "text": post["text"],
                    "rating": rng.choice([None, 1.0, 4.5]),
                }
            )
    rows.append(dict(rows[3]))
    rows.append({"user_id": "user00001", "item_title": " \u3000", "text": None})  # no content: dropped
    folder = tmp_path_factory.mktemp("spark_events")
    users = sorted({r["user_id"].strip() for r in rows})
    which = {u: i % 3 for i, u in enumerate(users)}
    for f in range(3):
        part = [r for r in rows if which[r["user_id"].strip()] == f]
        pq.write_table(pa.Table.from_pylist(part), folder / f"events-{f}.parquet")
    return folder


def test_spark_scores_equal_the_in_process_scores(
    spark: Any, model: Path, event_dir: Path, tmp_path: Path
) -> None:
    local = score_files(str(event_dir), model, tmp_path / "duckdb")
    assert local.users == N_USERS
    expected = pq.read_table(local.out)
    args = [
        "score",
        "--engine",
        "spark",
        "--input",
        str(event_dir),
        "--model",
        str(model),
        "--out",
        str(tmp_path / "spark"),
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{N_USERS} users" in result.output
    got = pq.read_table(tmp_path / "spark").sort_by("user_id")
    assert got.schema.names == expected.schema.names
    assert got.cast(expected.schema.remove_metadata()).equals(expected)  # every column, every row, exactly


def test_empty_partitions_and_null_documents(spark: Any, model: Path) -> None:
    from llm_labeler.spark import score_dataframe

    rows = [
        ("a", "hockey playoffs tonight", "type:post"),
        ("b", None, None),
        ("c", "", None),
        ("d", "god and faith", None),
    ]
    df = spark.createDataFrame(rows, "user_id string, doc string, meta string").repartition(6)  # mostly empty
    got = pa.Table.from_pylist([r.asDict() for r in score_dataframe(df, model).collect()]).sort_by("user_id")
    batch = pa.RecordBatch.from_pylist([dict(zip(("user_id", "doc", "meta"), r, strict=True)) for r in rows])
    (want,) = score_batches([batch], model)
    assert got.cast(want.schema).equals(pa.Table.from_batches([want]))
    assert (
        got.column("confidence").to_pylist()[1] == got.column("confidence").to_pylist()[2]
    )  # null doc == empty
    empty = score_dataframe(df.limit(0), model)
    assert empty.count() == 0 and empty.columns == want.schema.names


def test_refusals_on_the_driver(spark: Any, model: Path, coarse_taxonomy: Taxonomy) -> None:
    from llm_labeler.spark import build_docs, score_dataframe

    df = spark.createDataFrame([("a", "x")], "user_id string, doc string")
    other = coarse_taxonomy.model_copy(update={"name": "another"})
    with pytest.raises(InputError, match="distilled for taxonomy '20ng_coarse'"):
        score_dataframe(df, model, other)
    with pytest.raises(InputError, match="missing \\['doc'\\]"):
        score_dataframe(df.select("user_id"), model)
    events = spark.createDataFrame([("a", "2024-01-01", "t")], "user_id string, ts string, text string")
    with pytest.raises(InputError, match="ts must be a timestamp"):
        build_docs(events)
