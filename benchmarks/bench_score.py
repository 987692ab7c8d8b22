"""Bulk scoring throughput and memory: `score` (the product's path) vs a naive per-user Python loop.

For each size (default 100,000 and 1,000,000 synthetic users) a DuckDB file is built once under --dir (not in the
repo): users with geometric history lengths (mean ~9 events, capped at 60), event types, item categories, titles and
review/post texts drawn from a Zipf-like vocabulary with a per-user latent segment; ~900 characters of history a
user. A student is trained on 20,000 users of the 100k store (latent segments as labels) and saved like `distill`
saves one. Then, each in a fresh subprocess so peak memory is per run:

1. docs     building `user_docs` (each user's whole history as one text; done once, then only for changed users)
2. score    `score_users(..., full=True)`: read from DuckDB + featurize + predict + write the `scores` table,
            then the same again writing Parquet too; workers=1 and workers=2 (threads over Arrow batches)
3. incr     1% of users get a new event; `score_users` rescoring only them (+ rebuilding their docs)
4. naive    a Python loop over users: fetch the user's history, featurize + predict it alone with the same model,
            append a row; rows written with one executemany at the end. Measured on --naive-sample users and
            extrapolated linearly to the full size (said so in the output).

Chinese (--zh-sizes, default 100,000): the same runs (docs, score with 1 and 2 threads, naive) on a store whose
titles and texts are real Chinese news headlines and their keywords (shared/datasets/toutiao_readers' raw file,
read at build time and never copied into the repo), ~9 events a user, 70% from the user's segment's categories.

    .venv/bin/python benchmarks/bench_score.py          (or `make bench-score`; takes /tmp/llm_labeler_cpu.lock)
    .venv/bin/python benchmarks/bench_score.py --sizes 100000 --zh-sizes 100000

Engines (--engines N): the store of N synthetic users exported once as Parquet events (8 files, each user's
events in one file), then scored from those files by every engine of `score --input`, one after the other, each in
fresh processes: in-process (one `score --input` process), shards (--shards processes at once, `--shard I/N`) and
Spark (`spark-submit --master local[2] .../llm_labeler/__main__.py score --engine spark`). Wall time includes
process start, model load and, for Spark, the JVM and session start; CPU-seconds are every process of the run
(getrusage of the waited-for children: Spark's JVM, and its Python workers as far as it reaped them).

    .venv/bin/python benchmarks/bench_score.py --engines 1000000 --sizes '' --zh-sizes ''
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from llm_labeler.schemas import Taxonomy
from llm_labeler.store import Store
from llm_labeler.store import student as sq
from llm_labeler.student import StudentClassifier, save_student
from llm_labeler.student.scoring import score_users

LOCK = "/tmp/llm_labeler_cpu.lock"
SEGMENTS = ["tech", "home", "sports", "fashion", "books", "travel"]
ZH_SOURCE = (
    Path(__file__).resolve().parents[2]
    / "shared"
    / "datasets"
    / "toutiao_readers"
    / "toutiao_cat_data.dev.txt"
)
# The README's six segments over the corpus's categories; the other categories are only ever noise.
ZH_SEGMENTS = {
    "news_tech": 0,
    "news_finance": 1,
    "stock": 1,
    "news_house": 1,
    "news_sports": 2,
    "news_entertainment": 3,
    "news_culture": 4,
    "news_edu": 4,
    "news_world": 5,
    "news_military": 5,
}


def taxonomy() -> Taxonomy:
    """Six synthetic segments."""
    return Taxonomy.model_validate(
        {
            "name": "bench",
            "segments": [{"id": s, "name": s, "description": f"{s} shoppers"} for s in SEGMENTS],
        }
    )


_GEN_SQL = """
CREATE TEMP TABLE _vocab AS
SELECT list(substr(md5(i::VARCHAR), 1 + i % 7, 3 + i % 7) ORDER BY i) AS words FROM range(44000) t(i);
CREATE TABLE bench_truth AS
SELECT 'u' || lpad(i::VARCHAR, 8, '0') AS user_id, (hash(i) % 6)::INT AS seg,
       least(60, 1 + floor(-ln(random()) * 8))::INT AS n
FROM range({n}) t(i);
CREATE TEMP TABLE _e AS SELECT user_id, seg, unnest(range(n)) AS j FROM bench_truth;
INSERT INTO events (row_hash, user_id, ts, event_type, item_id, item_title, item_category, text, rating, source)
SELECT md5(user_id || ':' || j), user_id, TIMESTAMP '2024-01-01' + to_hours(j * 7 + (hash(user_id) % 500)::INT),
       ['view', 'view', 'view', 'click', 'purchase', 'review'][1 + floor(random() * 6)::INT],
       'i' || (hash(user_id || j) % 500000)::VARCHAR,
       array_to_string(list_transform(range(6), lambda x: {word}), ' '),
       'cat' || CASE WHEN random() < 0.7 THEN seg * 8 + floor(random() * 8)::INT ELSE floor(random() * 48)::INT END,
       CASE WHEN random() < 0.4 THEN array_to_string(list_transform(range(22), lambda x: {word}), ' ') END,
       NULL, 'synthetic'
FROM _e, _vocab;
INSERT INTO users (user_id, n_events, first_ts, last_ts, history_hash, updated_at)
SELECT user_id, count(*), min(ts), max(ts), md5(string_agg(row_hash, ',' ORDER BY row_hash)),
       current_timestamp FROM events GROUP BY user_id;
"""
# A word: 30% from the user's segment's 4,000 topical words, else from 20,000 shared ones, Zipf-like within each.
_WORD = (
    "CASE WHEN random() < 0.3 THEN words[1 + seg * 4000 + floor(pow(4000, random()))::INT - 1] "
    "ELSE words[24001 + floor(pow(20000, random()))::INT - 1] END"
)


def build_store(path: Path, n: int) -> dict[str, Any]:
    """A synthetic store of n users (built once, reused)."""
    if path.exists():
        return {"built": False}
    started = time.perf_counter()
    with Store(path) as store:
        store.con.execute(_GEN_SQL.format(n=n, word=_WORD))
        stats = store.query("SELECT count(*) AS users, avg(n_events) AS events_per_user FROM users")[0]
        chars = store.query(
            "SELECT avg(length(item_title) + coalesce(length(text), 0)) * count(*) / "
            "count(DISTINCT user_id) AS c FROM events"
        )[0]["c"]
    return {
        "built": True,
        "build_s": round(time.perf_counter() - started, 1),
        **stats,
        "chars_per_user": chars,
    }


_ZH_SQL = """
CREATE TEMP TABLE _pool AS SELECT seg, list(title ORDER BY id) AS titles, list(kw ORDER BY id) AS kws, count(*) AS n
FROM zh_src WHERE seg >= 0 GROUP BY seg;
CREATE TEMP TABLE _all AS SELECT list(title ORDER BY id) AS titles, list(kw ORDER BY id) AS kws, count(*) AS n
FROM zh_src;
CREATE TABLE bench_truth AS
SELECT 'u' || lpad(i::VARCHAR, 8, '0') AS user_id, (hash(i) % 6)::INT AS seg,
       least(60, 1 + floor(-ln(random()) * 8))::INT AS n
FROM range({n}) t(i);
CREATE TEMP TABLE _e AS
SELECT user_id, seg, j, random() < 0.7 AS own, random() AS r, random() < 0.4 AS with_kw
FROM (SELECT user_id, seg, unnest(range(n)) AS j FROM bench_truth);
INSERT INTO events (row_hash, user_id, ts, event_type, item_id, item_title, item_category, text, rating, source)
SELECT md5(user_id || ':' || j), user_id, TIMESTAMP '2024-01-01' + to_hours(j * 7 + (hash(user_id) % 500)::INT),
       ['view', 'view', 'view', 'click', 'purchase', 'review'][1 + floor(random() * 6)::INT],
       'i' || (hash(user_id || j) % 500000)::VARCHAR,
       CASE WHEN own THEN p.titles[1 + floor(r * p.n)::INT] ELSE a.titles[1 + floor(r * a.n)::INT] END,
       'cat' || CASE WHEN random() < 0.7 THEN e.seg * 8 + floor(random() * 8)::INT ELSE floor(random() * 48)::INT END,
       CASE WHEN with_kw THEN CASE WHEN own THEN p.kws[1 + floor(r * p.n)::INT] ELSE a.kws[1 + floor(r * a.n)::INT] END
       END,
       NULL, 'synthetic-zh'
FROM _e e JOIN _pool p USING (seg), _all a;
INSERT INTO users (user_id, n_events, first_ts, last_ts, history_hash, updated_at)
SELECT user_id, count(*), min(ts), max(ts), md5(string_agg(row_hash, ',' ORDER BY row_hash)),
       current_timestamp FROM events GROUP BY user_id;
"""


def zh_headlines(source: Path) -> Any:
    """(id, seg, title, kw) of every headline in the raw corpus file (seg -1: a noise-only category)."""
    import pyarrow as pa

    rows = [line.split("_!_") for line in source.read_text(encoding="utf-8").splitlines()]
    rows = [r for r in rows if len(r) == 5 and len(r[3]) >= 5]
    return pa.table(
        {
            "id": list(range(len(rows))),
            "seg": [ZH_SEGMENTS.get(r[2], -1) for r in rows],
            "title": [r[3] for r in rows],
            "kw": [r[4] or None for r in rows],
        }
    )


def build_zh_store(path: Path, n: int, source: Path) -> dict[str, Any]:
    """A synthetic store of n users reading real Chinese headlines (built once, reused)."""
    if path.exists():
        return {"built": False}
    started = time.perf_counter()
    with Store(path) as store:
        cur = store.con.cursor()  # its own connection: the store's may hold an unfinished result
        cur.register("zh_src", zh_headlines(source))
        cur.execute(_ZH_SQL.format(n=n))
        cur.close()
        stats = store.query("SELECT count(*) AS users, avg(n_events) AS events_per_user FROM users")[0]
        size = store.query(
            "SELECT sum(length(item_title) + coalesce(length(text), 0)) / count(DISTINCT user_id) AS c, "
            "sum(strlen(item_title) + coalesce(strlen(text), 0)) / count(DISTINCT user_id) AS b FROM events"
        )[0]
    return {
        "built": True,
        "build_s": round(time.perf_counter() - started, 1),
        **stats,
        "chars_per_user": size["c"],
        "utf8_bytes_per_user": size["b"],
    }


def train_model(store_path: Path, model_path: Path, n_train: int = 20_000) -> None:
    """A student on n_train synthetic users' latent segments, saved with the metadata distill writes."""
    tax = taxonomy()
    with Store(store_path) as store:
        sq.refresh_docs(store)
        rows = store.query(
            "SELECT d.user_id, d.doc, d.meta FROM user_docs d ORDER BY user_id LIMIT ?", [n_train]
        )
        truth = dict(store.con.execute("SELECT user_id, seg FROM bench_truth").fetchall())
    X = np.array([[r["doc"], r["meta"]] for r in rows], dtype=object)
    y = np.array([SEGMENTS[truth[r["user_id"]]] for r in rows])
    est = StudentClassifier().fit(X, y)
    meta = {
        "taxonomy_name": tax.name,
        "taxonomy_hash": tax.content_hash(),
        "taxonomy": tax.model_dump(mode="json"),
        "segments": tax.ids,
        "source_run": None,
        "feature_config": est.get_params(),
    }
    save_student(est, meta, model_path)


def child_score(db: str, model: str, workers: int, parquet: str | None, mode: str) -> dict[str, Any]:
    """One measured run in this (fresh) process; the one-off imports (skops walks every sklearn estimator, which
    imports torch) happen before the clock starts and are reported as startup_s."""
    t0 = time.perf_counter()
    import skops.io  # noqa: F401

    startup = round(time.perf_counter() - t0, 2)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with Store(db) as store:
        if mode == "docs":
            store.con.execute("DELETE FROM user_docs")  # time a build from scratch
            t = time.perf_counter()
            n = sq.refresh_docs(store)
            wall = time.perf_counter() - t
            return {"users": n, "wall_s": round(wall, 2), "users_per_s": round(n / wall), **_rss(rss0)}
        if mode == "incr":
            _touch_one_percent(store)
        t = time.perf_counter()
        report = score_users(
            store, model, full=(mode != "incr"), out=parquet, workers=abs(workers), processes=workers < 0
        )
        wall = time.perf_counter() - t
    return {
        "users": report.scored,
        "docs_rebuilt": report.docs_rebuilt,
        "wall_s": round(wall, 2),
        "users_per_s": round(report.scored / wall),
        "startup_s": startup,
        **_rss(rss0),
    }


def _touch_one_percent(store: Store) -> None:
    """Give 1% of users one new event (and a new history_hash), as an ingest would."""
    store.con.execute("""
        CREATE OR REPLACE TEMP TABLE _touch AS SELECT user_id FROM users WHERE hash(user_id || now()::VARCHAR) % 100 = 0;
        INSERT INTO events (row_hash, user_id, ts, event_type, item_title, text, source)
        SELECT md5(user_id || now()::VARCHAR), user_id, now(), 'view', 'brand new item', 'fresh text', 'bench'
        FROM _touch;
        UPDATE users SET history_hash = md5(history_hash || now()::VARCHAR), updated_at = now()
        WHERE user_id IN (SELECT user_id FROM _touch);
    """)


def child_naive(db: str, model: str, sample: int) -> dict[str, Any]:
    """The per-user Python loop on `sample` users."""
    from llm_labeler.student.scoring import load_model

    est, _, _ = load_model(model)
    with Store(db) as store:
        cur = store.con.cursor()
        cur.execute(f"SELECT user_id, history_hash, doc, meta FROM user_docs LIMIT {int(sample)}")
        t = time.perf_counter()
        rows = []
        while (row := cur.fetchone()) is not None:
            p = est.predict_proba([[row[2], row[3]]])[0]
            top = np.sort(p)[::-1]
            rows.append(
                (
                    row[0],
                    "naive",
                    row[1],
                    str(est.classes_[p.argmax()]),
                    float(top[0]),
                    float(top[0] - top[1]),
                )
            )
        store.con.execute(
            "CREATE TEMP TABLE _naive (user_id VARCHAR, mv VARCHAR, hh VARCHAR, seg VARCHAR, c FLOAT, m FLOAT)"
        )
        store.con.executemany("INSERT INTO _naive VALUES (?, ?, ?, ?, ?, ?)", rows)
        wall = time.perf_counter() - t
    return {"users": len(rows), "wall_s": round(wall, 2), "users_per_s": round(len(rows) / wall, 1)}


def _rss(before_kb: int) -> dict[str, float]:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"peak_rss_mb": round(peak / 1024), "rss_before_mb": round(before_kb / 1024)}


def run_child(*args: str) -> dict[str, Any]:
    """Run one measurement in a fresh interpreter and parse its JSON line."""
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"child {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def hold_cpu_lock(skip: bool) -> Any:
    """Measure alone: take the shared CPU lock unless told not to or already holding it (run under flock)."""
    if skip or any(os.path.realpath(f"/proc/self/fd/{fd}") == LOCK for fd in os.listdir("/proc/self/fd")):
        return None
    fh = open(LOCK, "a")  # noqa: SIM115 - held for the whole run
    print(f"waiting for {LOCK} ...", file=sys.stderr, flush=True)
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def main() -> None:
    """Build, train, measure, print."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="100000,1000000")
    p.add_argument("--zh-sizes", default="100000", help="Chinese store sizes ('' for none)")
    p.add_argument("--zh-source", type=Path, default=ZH_SOURCE)
    p.add_argument("--dir", default="/tmp/llm_labeler_bench")
    p.add_argument("--naive-sample", type=int, default=2000)
    p.add_argument("--no-lock", action="store_true")
    p.add_argument("--all-variants", action="store_true", help="1 thread and processes at 1M users too")
    p.add_argument("--engines", type=int, default=0, help="users for the engine comparison (0: none)")
    p.add_argument(
        "--shards", type=int, default=2, help="shard processes run at once in the engine comparison"
    )
    p.add_argument("--spark-master", default="local[2]")
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        res = (
            child_naive(rest[0], rest[1], int(rest[2]))
            if kind == "naive"
            else child_score(rest[0], rest[1], int(rest[2]), rest[3] if rest[3] != "-" else None, kind)
        )
        print(json.dumps(res))
        return
    lock = hold_cpu_lock(args.no_lock)
    try:
        if args.engines:
            measure_engines(args)
        if args.sizes or args.zh_sizes:
            measure(args)
    finally:
        if lock is not None:
            lock.close()


def measure(args: Any) -> None:
    """Every size, every path; English, then Chinese."""
    base = Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    summary: dict[tuple[str, int], dict[str, Any]] = {}
    sizes = [int(s) for s in args.sizes.split(",") if s]
    dbs = {n: base / f"users_{n}.duckdb" for n in sizes}
    for n, db in dbs.items():
        print(f"store {db}: {json.dumps(build_store(db, n))}", flush=True)
    if dbs:
        # named after the featurizer: a model saved by an older llm-labeler would score with its own features
        model = base / "bench_student_cjk.skops"
        if not model.exists():
            train_model(dbs[sizes[0]], model)
        measure_language("en", dbs, model, args, summary)
    zh_sizes = [int(s) for s in args.zh_sizes.split(",") if s]
    if zh_sizes and not args.zh_source.exists():
        print(f"\nChinese runs skipped: {args.zh_source} is not here", flush=True)
    elif zh_sizes:
        zh_dbs = {n: base / f"zh_users_{n}.duckdb" for n in zh_sizes}
        for n, db in zh_dbs.items():
            print(f"store {db}: {json.dumps(build_zh_store(db, n, args.zh_source))}", flush=True)
        model = base / "bench_student_zh.skops"
        if not model.exists():
            train_model(zh_dbs[zh_sizes[0]], model)
        measure_language("zh", zh_dbs, model, args, summary)
    print_summary(summary)


def measure_language(
    lang: str, dbs: dict[int, Path], model: Path, args: Any, summary: dict[tuple[str, int], dict[str, Any]]
) -> None:
    """docs, score (threads, processes, Parquet), incremental and naive runs for each store of one language."""
    for n, db in dbs.items():
        print(f"\n== {lang}: {n:,} users ==", flush=True)
        docs = run_child("docs", str(db), str(model), "0", "-")
        print(
            f"docs   user_docs build from scratch (once; later only changed users): {json.dumps(docs)}",
            flush=True,
        )
        variants = ((1, "1 thread"), (2, "2 threads"), (-2, "2 forked processes"))
        for workers, how in variants if n < 1_000_000 or args.all_variants else variants[1:2]:
            r = run_child("full", str(db), str(model), str(workers), "-")
            print(f"score  {how} -> scores table: {json.dumps(r)}", flush=True)
            if workers == 2:
                summary[(lang, n)] = {"score": r}
        r = run_child("full", str(db), str(model), "2", str(db.parent / f"scores_{lang}_{n}.parquet"))
        print(f"score  workers=2 -> scores table + Parquet: {json.dumps(r)}", flush=True)
        r = run_child("incr", str(db), str(model), "2", "-")
        print(
            f"incr   1% of users changed, rescored alone: {json.dumps(r)} -> whole population kept current at "
            f"{n / r['wall_s']:,.0f} users/s",
            flush=True,
        )
        naive = run_child("naive", str(db), str(model), str(args.naive_sample))
        est_s = n / naive["users_per_s"]
        print(
            f"naive  per-user loop, measured on {naive['users']} users: {naive['users_per_s']} users/s -> "
            f"EXTRAPOLATED to {n:,} users: {est_s:,.0f} s ({json.dumps(naive)})",
            flush=True,
        )
        summary[(lang, n)]["naive"] = naive


def print_summary(summary: dict[tuple[str, int], dict[str, Any]]) -> None:
    """One line per language and size: product vs naive (same run), and memory growth from smallest to largest."""
    print(
        "\n== summary (score = read + featurize + predict + write, 2 threads; naive measured in this run) =="
    )
    for (lang, n), r in summary.items():
        s, nv = r["score"], r["naive"]
        print(
            f"{lang} {n:>9,} users: score {s['users_per_s']:>9,} users/s, naive {nv['users_per_s']:>7,} users/s "
            f"-> {s['users_per_s'] / nv['users_per_s']:,.0f}x; peak RSS {s['peak_rss_mb']:,} MB "
            f"({s['peak_rss_mb'] - s['rss_before_mb']:,} MB above the process after imports)"
        )
    for lang in sorted({lang for lang, _ in summary}):
        ns = [n for la, n in summary if la == lang]
        if len(ns) > 1:
            lo, hi = min(ns), max(ns)
            a, b = summary[(lang, lo)]["score"], summary[(lang, hi)]["score"]
            grow = (b["peak_rss_mb"] - b["rss_before_mb"]) / max(1, a["peak_rss_mb"] - a["rss_before_mb"])
            print(
                f"memory ({lang}): {hi // lo}x the users -> {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x the peak RSS "
                f"({grow:.2f}x above imports)"
            )


def export_events(db: Path, folder: Path, files: int = 8) -> int:
    """The store's events as Parquet in the ingest fields, each user in one of `files` files (written once)."""
    if folder.exists():
        return len(list(folder.glob("*.parquet")))
    tmp = folder.with_suffix(".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    with Store(db) as store:
        for i in range(files):
            store.con.execute(
                "COPY (SELECT user_id, ts, event_type, item_id, item_title, item_category, text, rating FROM events "
                f"WHERE hash(user_id) % {files} = {i} ORDER BY user_id) TO '{tmp}/events-{i}.parquet' (FORMAT parquet)"
            )
    tmp.rename(folder)
    return files


def timed(cmds: list[list[str]]) -> dict[str, Any]:
    """Run commands at once; wall seconds and CPU-seconds of all of them and their waited-for descendants."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    # spark-submit finds Spark and the Python to run through PATH and PYSPARK_*: this interpreter, its venv
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}",
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
    }
    procs = [
        subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for c in cmds
    ]
    outs = [p.communicate() for p in procs]
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for p, (_, err) in zip(procs, outs, strict=True):
        if p.returncode:
            raise SystemExit(f"{' '.join(p.args)} failed ({p.returncode}):\n{err[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu, "json": [_last_json(o) for o, _ in outs]}


def _last_json(stdout: str) -> Any:
    """The JSON document a `--json` command printed last (pretty-printed over several lines)."""
    return json.loads(stdout[stdout.rindex("\n{") + 1 :] if "\n{" in stdout else stdout)


def measure_engines(args: Any) -> None:
    """The same Parquet scored in-process, by shards and by Spark: users/s and CPU-seconds per 1M users."""
    import shutil

    n, base = args.engines, Path(args.dir)
    base.mkdir(parents=True, exist_ok=True)
    db, events = base / f"users_{n}.duckdb", base / f"events_{n}"
    print(f"store {db}: {json.dumps(build_store(db, n))}", flush=True)
    print(f"events {events}: {export_events(db, events)} Parquet files", flush=True)
    model = base / f"bench_student_engines_{n}.skops"
    if not model.exists():
        train_model(db, model)
    cli = [
        sys.executable,
        "-m",
        "llm_labeler",
        "--quiet",
        "score",
        "--model",
        str(model),
        "--input",
        str(events),
    ]
    main_py = str(Path(__import__("llm_labeler").__file__).with_name("__main__.py"))
    submit = shutil.which("spark-submit", path=str(Path(sys.executable).parent)) or "spark-submit"
    runs = {
        "in-process (1 process)": [[*cli, "--out", str(base / "eng_one"), "--json"]],
        f"shards ({args.shards} processes)": [
            [*cli, "--out", str(base / "eng_shards"), "--shard", f"{i}/{args.shards}", "--json"]
            for i in range(args.shards)
        ],
        f"spark {args.spark_master}": [
            [
                submit,
                "--master",
                args.spark_master,
                "--driver-memory",
                "2g",
                "--conf",
                "spark.ui.enabled=false",
                "--conf",
                f"spark.pyspark.python={sys.executable}",
                main_py,
                "--quiet",
                "score",
                "--engine",
                "spark",
                "--model",
                str(model),
                "--input",
                str(events),
                "--out",
                str(base / "eng_spark"),
                "--json",
            ]
        ],
    }
    rows = {}
    for name, cmds in runs.items():
        for out in ("eng_one", "eng_shards", "eng_spark"):
            shutil.rmtree(base / out, ignore_errors=True)
        r = timed(cmds)
        users = sum(j["users"] for j in r["json"])
        rows[name] = {**r, "users": users}
        print(
            f"{name}: {users:,} users, wall {r['wall_s']:.1f} s, CPU {r['cpu_s']:.1f} s {r['json']}",
            flush=True,
        )
    ref = rows["in-process (1 process)"]
    print(f"\n== engines: {n:,} users, same Parquet ({events}); wall includes process/JVM start ==")
    print(
        f"{'engine':<26}{'users':>11}{'wall s':>9}{'users/s':>10}{'CPU s / 1M users':>18}{'CPU vs in-process':>19}"
    )
    for name, r in rows.items():
        per_m = r["cpu_s"] / r["users"] * 1e6
        ratio = r["cpu_s"] / ref["cpu_s"]
        print(
            f"{name:<26}{r['users']:>11,}{r['wall_s']:>9.1f}{r['users'] / r['wall_s']:>10,.0f}{per_m:>18,.0f}{ratio:>18.2f}x"
        )


if __name__ == "__main__":
    main()
