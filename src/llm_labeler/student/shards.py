"""Scoring event files without an engine: shard I of N reads its share of the Parquet files and writes one file.

Any job runner scales this out (Kubernetes indexed jobs, Airflow, a shell loop): shard i of n takes the sorted
input files i, i+n, i+2n, ... (`split="files"`, for inputs where each user's events sit in one file, as a
partitioned export writes them), or reads every file and keeps the users whose id hashes to i (`split="users"`,
for any layout). Its output is `part-IIIII-of-NNNNN.parquet` in the output folder, written under a temporary
name and renamed when complete; a rerun over the same inputs and model finds it and skips the work, and a killed
shard leaves nothing under the final name, so rerunning it gives the same file.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..labeling import LabelProgress
from ..schemas import Taxonomy
from ..store.event_files import EventFile, event_docs, list_event_files
from .engine import Scorer, load_scorer

__all__ = ["SPLITS", "ShardReport", "output_schema", "parse_shard", "score_files", "shard_name"]

SPLITS = ("files", "users")
_META_KEY = b"llm_labeler.shard"


@dataclass
class ShardReport:
    """One shard's run (or the finding that its output is already there)."""

    shard: int
    shards: int
    split: str
    files: int
    users: int
    out: str
    skipped: bool
    model_version: str
    wall_s: float
    users_per_s: float
    segments: dict[str, int] = field(default_factory=dict)


def parse_shard(text: str | None) -> tuple[int, int]:
    """'I/N' (I counted from 0) -> (I, N); None is the one shard 0/1."""
    if not text:
        return 0, 1
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise InputError(f"--shard must be I/N, e.g. 0/4 (I from 0 to N-1), not {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"--shard {text}: I must be from 0 to N-1 and N at least 1")
    return i, n


def shard_name(i: int, n: int) -> str:
    """The output file name of shard i of n."""
    return f"part-{i:05d}-of-{n:05d}.parquet"


def output_schema(scorer: Scorer) -> pa.Schema:
    """The engine's score schema plus the history hash and event count of each user."""
    return scorer.schema.append(pa.field("history_hash", pa.string())).append(
        pa.field("n_events", pa.int64())
    )


def score_files(
    pattern: str,
    model: str | Path,
    out_dir: str | Path,
    shard: tuple[int, int] = (0, 1),
    split: str = "files",
    taxonomy: Taxonomy | None = None,
    batch_size: int = 20_000,
    progress: Callable[[LabelProgress], None] | None = None,
) -> ShardReport:
    """Score shard `shard` of the users in the Parquet event files `pattern` into `out_dir`."""
    if split not in SPLITS:
        raise InputError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    scorer = load_scorer(model, taxonomy)
    i, n = shard
    files = list_event_files(pattern)
    mine = files[i::n] if split == "files" else files
    out = Path(out_dir) / shard_name(i, n)
    stamp = _stamp(scorer, mine, split, shard)
    started = time.perf_counter()
    if _already_done(out, stamp):
        rows = pq.ParquetFile(out).metadata.num_rows
        return ShardReport(i, n, split, len(mine), rows, str(out), True, scorer.version, 0.0, 0.0)
    counts = _write(scorer, mine, out, stamp, batch_size, (i, n) if split == "users" else None, progress)
    wall = time.perf_counter() - started
    users = sum(counts.values())
    return ShardReport(
        i, n, split, len(mine), users, str(out), False, scorer.version, round(wall, 3),
        round(users / wall, 1) if wall else 0.0, dict(counts),
    )  # fmt: skip


def _stamp(scorer: Scorer, files: list[EventFile], split: str, shard: tuple[int, int]) -> bytes:
    """What the output depends on: the model, the shard, and each input file's path and size."""
    digest = hashlib.sha256(json.dumps([[f.path, f.size] for f in files]).encode()).hexdigest()
    body = {"model_version": scorer.version, "split": split, "shard": list(shard), "inputs_sha256": digest}
    return json.dumps(body, sort_keys=True).encode()


def _already_done(out: Path, stamp: bytes) -> bool:
    if not out.is_file():
        return False
    try:
        meta = pq.read_schema(out).metadata or {}
    except (OSError, pa.ArrowInvalid):
        return False  # not a complete Parquet file: redo it
    return meta.get(_META_KEY) == stamp


def _write(
    scorer: Scorer,
    files: list[EventFile],
    out: Path,
    stamp: bytes,
    batch_size: int,
    user_shard: tuple[int, int] | None,
    progress: Callable[[LabelProgress], None] | None,
) -> Counter[str]:
    """Score into a temporary file beside `out`, then rename it: `out` is complete or absent."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    schema = output_schema(scorer).with_metadata({_META_KEY: stamp})
    counts: Counter[str] = Counter()
    try:
        with pq.ParquetWriter(tmp, schema) as writer:
            if files:
                with event_docs(files, batch_size, user_shard) as reader:
                    for batch in reader:
                        scored = _with_history(scorer.score(batch), batch, schema)
                        writer.write_batch(scored)
                        counts.update(scored.column("segment").to_pylist())
                        if progress:
                            done = sum(counts.values())
                            progress(LabelProgress("score", done, done))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return counts


def _with_history(scored: pa.RecordBatch, batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    columns = [*scored.columns, batch.column("history_hash"), batch.column("n_events")]
    return pa.RecordBatch.from_arrays(columns, schema=schema)
