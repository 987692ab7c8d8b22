"""The student on Spark: `score_dataframe` (one `mapInArrow`, nothing else) and `build_docs` (the tool's documents).

`score_dataframe` reads the model on the driver (taxonomy checked, output schema from its metadata), ships its
bytes in the function's closure and runs the engine-neutral scorer (student.engine) over each partition's Arrow
batches, the model loaded once per Python worker. No SparkContext, no broadcast: it runs on classic Spark and on
Spark Connect alike. Workers need the same Python and llm_labeler installed (not shipped as a zip: numba's on-disk
cache would be lost and every worker would compile again).

`build_docs` turns raw events (the `ingest` fields) into (user_id, history_hash, doc, meta, n_events) exactly as
the store builds `user_docs` after `ingest`: same normalisation, same duplicate rule, same order, same cleaning
(documents.CLEAN_STEPS rendered as Spark column expressions). Times must be Parquet/Spark timestamps (naive ones
are taken as UTC, as the store keeps them); text times are parsed by `ingest`, not here.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ..documents import (
    CLEAN_STEPS,
    EVENT_FIELDS_HASHED,
    EVENT_SEPARATOR,
    META_SEPARATOR,
    ROW_HASH_SEPARATOR,
    ROW_HASH_UNSET,
)
from ..errors import InputError
from ..schemas import EVENT_FIELDS, Taxonomy
from ..student.engine import load_scorer

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

__all__ = ["DOC_COLUMNS", "build_docs", "score_dataframe", "score_event_files", "spark_schema"]

DOC_COLUMNS = ("user_id", "history_hash", "doc", "meta", "n_events")
# ingest's "no content" test, `[\s\p{Z}]*` in RE2, spelt out: Java's \s also matches a vertical tab, RE2's does not.
_CONTENTLESS = "^[\t\n\f\r \\p{Z}]*$"


def spark_schema(schema: pa.Schema) -> Any:
    """A Spark StructType for an Arrow schema of strings, float32 and int64 columns."""
    from pyspark.sql import types as T

    kinds = {pa.string(): T.StringType(), pa.float32(): T.FloatType(), pa.int64(): T.LongType()}
    return T.StructType([T.StructField(f.name, kinds[f.type], True) for f in schema])


def score_dataframe(
    df: DataFrame,
    model: str | Path | bytes,
    taxonomy: Taxonomy | None = None,
    keep: Sequence[str] = (),
) -> DataFrame:
    """Scores (student.engine.score_schema, then the `keep` columns) of a DataFrame of users (user_id, doc, meta).

    The model is checked on the driver: a model made for another taxonomy is refused before any job runs.
    """
    from pyspark.sql import functions as F

    data = model if isinstance(model, bytes) else _model_bytes(model)
    scorer = load_scorer(data, taxonomy)
    missing = [c for c in ("user_id", "doc", *keep) if c not in df.columns]
    if missing:
        raise InputError(f"score_dataframe needs columns user_id and doc (meta optional); missing {missing}")
    meta = F.col("meta") if "meta" in df.columns else F.lit(None).cast("string")
    users = df.select(F.col("user_id").cast("string"), F.col("doc").cast("string"), meta.alias("meta"), *keep)
    out = scorer.schema
    for name in keep:
        out = out.append(pa.field(name, _arrow_type(users.schema[name].dataType)))
    with warnings.catch_warnings():
        # pyspark 4.3 warns about pandas >= 3 on every Arrow UDF, though mapInArrow never touches pandas
        warnings.filterwarnings(
            "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
        )
        return users.mapInArrow(_partition_scorer(data, list(keep), out), spark_schema(out))


def _model_bytes(model: str | Path) -> bytes:
    p = Path(model)
    if not p.is_file():
        raise InputError(f"model file not found: {p}")
    return p.read_bytes()


def _arrow_type(spark_type: Any) -> pa.DataType:
    name = spark_type.simpleString()
    types = {"string": pa.string(), "float": pa.float32(), "bigint": pa.int64()}
    if name not in types:
        raise InputError(f"a kept column must be a string, float or bigint column, not {name}")
    return types[name]


def _partition_scorer(data: bytes, keep: list[str], out: pa.Schema) -> Any:
    """The function mapInArrow runs on each partition: it holds the model bytes and nothing of the driver's."""

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from llm_labeler.student.engine import load_scorer

        scorer = load_scorer(data)
        for batch in batches:
            scored = scorer.score(batch)
            columns = [*scored.columns, *(batch.column(name).cast(out.field(name).type) for name in keep)]
            yield pa.RecordBatch.from_arrays(columns, schema=out)

    return score


def build_docs(events: DataFrame) -> DataFrame:
    """(user_id, history_hash, doc, meta, n_events) per user from events with the ingest fields."""
    from pyspark.sql import functions as F

    rows = _normalised(events)
    piece = F.concat_ws(" ", _cleaned(F.col("item_title")), _cleaned(F.col("text")))
    category = F.replace(F.col("item_category"), F.lit(" "), F.lit("_"))
    meta = F.concat_ws(" ", F.concat(F.lit("type:"), "event_type"), F.concat(F.lit("cat:"), category))
    ordered = F.struct(F.col("ts").isNull(), "ts", "row_hash", piece.alias("piece"), meta.alias("meta"))
    grouped = rows.groupBy("user_id").agg(
        F.sort_array(F.collect_list(ordered)).alias("events"),
        F.sort_array(F.collect_list("row_hash")).alias("hashes"),
    )
    return grouped.select(
        "user_id",
        F.md5(F.array_join("hashes", ",")).alias("history_hash"),
        F.array_join(F.transform("events", lambda e: e["piece"]), EVENT_SEPARATOR).alias("doc"),
        F.array_join(F.transform("events", lambda e: e["meta"]), META_SEPARATOR).alias("meta"),
        F.size("events").cast("bigint").alias("n_events"),
    )


def _cleaned(column: Column) -> Column:
    """documents.CLEAN_STEPS as Spark expressions (java.util.regex, every match replaced)."""
    from pyspark.sql import functions as F

    for step in CLEAN_STEPS:
        if step.kind == "regex":
            column = F.regexp_replace(column, step.pattern, step.repl)
        else:
            column = F.replace(column, F.lit(step.pattern), F.lit(step.repl))
    return F.nullif(F.trim(column), F.lit(""))


def _normalised(events: DataFrame) -> DataFrame:
    """ingest's cleaning: the events table's columns plus row_hash, contentless rows dropped, duplicates once."""
    from pyspark.sql import functions as F

    if "user_id" not in events.columns or not {"item_title", "text"} & set(events.columns):
        raise InputError(
            f"events need a user_id column and an item_title or text column (the ingest fields "
            f"{', '.join(EVENT_FIELDS)}); these have {sorted(events.columns)}"
        )

    def text(name: str) -> Column:
        return F.col(name).cast("string") if name in events.columns else F.lit(None).cast("string")

    def nonempty(column: Column) -> Column:
        return F.nullif(column, F.lit(""))

    fields = {
        "user_id": F.trim(text("user_id")),
        "ts": _utc_time(events),
        "event_type": nonempty(F.trim(F.lower(text("event_type")))),
        "item_id": nonempty(F.trim(text("item_id"))),
        "item_title": nonempty(text("item_title")),
        "item_category": nonempty(text("item_category")),
        "text": nonempty(text("text")),
        "rating": text("rating").cast("double"),
    }
    rows = events.select(*(c.alias(name) for name, c in fields.items()))
    blank = F.coalesce(F.col("item_title"), F.lit("")).rlike(_CONTENTLESS) & F.coalesce(
        F.col("text"), F.lit("")
    ).rlike(_CONTENTLESS)
    rows = rows.where(~blank & (F.col("user_id") != ""))
    hashed = [F.coalesce(F.col(f).cast("string"), F.lit(ROW_HASH_UNSET)) for f in EVENT_FIELDS_HASHED]
    return rows.withColumn("row_hash", F.md5(F.concat_ws(ROW_HASH_SEPARATOR, *hashed))).dropDuplicates(
        ["row_hash"]
    )


def _utc_time(events: DataFrame) -> Column:
    """The event time as a naive UTC timestamp (TIMESTAMP_NTZ)."""
    from pyspark.sql import functions as F

    if "ts" not in events.columns:
        return F.lit(None).cast("timestamp_ntz")
    kind = events.schema["ts"].dataType.simpleString()
    if kind == "timestamp_ntz":
        return F.col("ts")
    if kind == "timestamp":  # an instant: its UTC wall-clock time
        return F.to_utc_timestamp(F.col("ts"), F.current_timezone()).cast("timestamp_ntz")
    if kind in ("void", "null"):
        return F.lit(None).cast("timestamp_ntz")
    raise InputError(f"event column ts must be a timestamp, not {kind}: `ingest` parses text times")


def score_event_files(
    pattern: str, model: str | Path, out: str, taxonomy: Taxonomy | None = None
) -> dict[str, Any]:
    """`score --engine spark`: Parquet events at `pattern` -> Parquet scores (with history hash) in folder `out`."""
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.appName("llm-labeler score").getOrCreate()
    started = time.perf_counter()
    docs = build_docs(spark.read.parquet(pattern))
    scores = score_dataframe(docs, model, taxonomy, keep=("history_hash", "n_events"))
    scores.write.mode("overwrite").parquet(out)
    users = spark.read.parquet(out).count()
    wall = time.perf_counter() - started
    return {
        "master": spark.conf.get("spark.master", "spark connect"),
        "users": users,
        "wall_s": round(wall, 3),
        "users_per_s": round(users / wall, 1) if wall else 0.0,
        "model_version": load_scorer(_model_bytes(model)).version,
        "out": out,
    }
