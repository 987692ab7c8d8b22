"""Labeling throughput on the embedded model: naive generation vs the product's path vs llama.cpp's bound.

Labels the same real 20 Newsgroups users three ways in one process and prints, for each, s/user, prompt tokens/user,
generated tokens/user and users/min (plus macro-F1 against gold, so that no path wins by being worse):

1. naive    free-form JSON generation per user (the segment_json prompt through create_chat_completion), the full
            prompt every time: the generation context is reset before each user, so nothing is reused;
            no grammar unless --naive-grammar (without one naive is faster, so the ratio is the conservative one).
2. product  `label_users` as shipped on a fresh store (no cache hits): the default LabelConfig (llm + sentence
            embeddings), the llm scorer alone, and the embedding scorer alone (its share of the default).
3. bound    llama_decode alone over exactly the user-specific tokens path 2 processed, from the cached prefix.

--sweep N / --sweep-embedding N also time llama.cpp's n_threads x n_batch x flash_attn, and the embedding scorer's
precision x batch size, on N users (the shipped choices came from these sweeps).

Then the peak resident memory of a `label` run as shipped (llm + embedding scorers) at --memory-sizes users, each in a fresh subprocess.

    flock /tmp/llm_labeler_cpu.lock .venv/bin/python benchmarks/bench_label.py      (or `make bench`)

The script takes /tmp/llm_labeler_cpu.lock itself unless it already holds it (run under flock) or --no-lock.
"""

from __future__ import annotations

import argparse
import csv
import fcntl
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_labeler.backends import get_backend
from llm_labeler.backends.embedding import DEFAULT_BATCH as DEFAULT_EMBED_BATCH
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.metrics import classification_metrics
from llm_labeler.schemas import Taxonomy, load_taxonomy
from llm_labeler.segments import JsonScorer, NextTokenScorer, ScorerSpec
from llm_labeler.store import Store

ROOT = Path(__file__).resolve().parents[1]
LOCK = "/tmp/llm_labeler_cpu.lock"
FIXTURE = ROOT / "tests" / "fixtures" / "20ng_sample"


@dataclass
class PathResult:
    """One way of labeling the same users, and what it cost."""

    name: str
    users: int
    seconds: float
    prompt_tokens: float
    generated_tokens: float
    macro_f1: float | None = None
    note: str = ""

    @property
    def s_per_user(self) -> float:
        return self.seconds / max(self.users, 1)

    def row(self) -> str:
        per = max(self.users, 1)
        f1 = "" if self.macro_f1 is None else f"{self.macro_f1:.3f}"
        return (
            f"{self.name:<34} {self.s_per_user:>8.4f} {self.prompt_tokens / per:>10.1f} "
            f"{self.generated_tokens / per:>8.1f} {60 / max(self.s_per_user, 1e-9):>10.1f} {f1:>8}  {self.note}"
        )


# ------------------------------------------------------------------------------------------------- data
def write_sample(args: argparse.Namespace, workdir: Path) -> tuple[Path, dict[str, str], list[str]]:
    """Events JSONL for the largest size needed, coarse gold, and the user ids in the order to label them."""
    if args.fixture:
        gold = _read_gold(FIXTURE / "gold.csv")
        ids = sorted(gold)[: max([args.n, *args.memory_sizes])]
        return FIXTURE / "events.jsonl", {u: gold[u] for u in ids}, ids
    from llm_labeler.datasets import newsgroups

    users = newsgroups.load_users()
    size = max([args.n, *args.memory_sizes])
    sample = newsgroups.sample_users(users, size, seed=args.seed)
    # The first n of the sampled ids are the benchmark's users; the memory runs take prefixes of the same list.
    first = set(u.user_id for u in newsgroups.sample_users(users, args.n, seed=args.seed))
    ordered = [u.user_id for u in sample if u.user_id in first] + [
        u.user_id for u in sample if u.user_id not in first
    ]
    events = workdir / "events.jsonl"
    newsgroups.write_events_jsonl(sample, events)
    return events, {u.user_id: u.gold_coarse for u in sample}, ordered


def _read_gold(path: Path) -> dict[str, str]:
    with path.open(encoding="utf-8") as fh:
        return {row["user_id"]: row["gold_coarse"] for row in csv.DictReader(fh)}


def fresh_store(path: Path, events: Path) -> Store:
    """A new DuckDB file with the events ingested (ingest time is not part of any path)."""
    store = Store(path)
    store.ingest(events)
    return store


def f1(taxonomy: Taxonomy, gold: dict[str, str], pred: dict[str, str | None]) -> float:
    """Macro-F1 of predictions against gold over the gold users."""
    ids = list(gold)
    return float(
        classification_metrics([gold[u] for u in ids], [pred.get(u) for u in ids], taxonomy.ids)["macro_f1"]
    )


# ------------------------------------------------------------------------------------------------- path 2
def run_product(
    name: str, config: LabelConfig, taxonomy: Taxonomy, ctx: dict[str, Any], note: str = ""
) -> tuple[PathResult, str, Path]:
    """`label_users` on a fresh store; the backend's cached prefix is dropped first so the run pays for it."""
    backend = get_backend(config.backend)
    backend.reset_prefix()
    path = ctx["workdir"] / f"product_{len(list(ctx['workdir'].glob('product_*')))}.duckdb"
    with fresh_store(path, ctx["events"]) as store:
        start = time.perf_counter()
        run = label_users(store, taxonomy, config, users=ctx["ids"])
        seconds = time.perf_counter() - start
        prefix = _prefix_tokens_paid(store, run.run_id, backend, taxonomy, config)
    pred = {lab.user_id: lab.primary_segment for lab in run.labels}
    result = PathResult(
        name,
        len(ctx["ids"]),
        seconds,
        run.stats["prompt_tokens"] + prefix,
        run.stats["completion_tokens"],
        f1(taxonomy, ctx["gold"], pred),
        note,
    )
    return result, run.run_id, path


def _prefix_tokens_paid(
    store: Store, run_id: str, backend: Any, taxonomy: Taxonomy, config: LabelConfig
) -> int:
    """The shared prefix is processed once per run: count it (amortised) in prompt tokens/user."""
    names = [s.name for s in config.scorers or []] or ["llm"]
    if "llm" not in names:
        return 0
    return backend.count_tokens(NextTokenScorer(backend, taxonomy).prefix) + 1


def llm_token_lists(store_path: Path, run_id: str, backend: Any, taxonomy: Taxonomy) -> list[list[int]]:
    """The exact user-specific tokens the llm scorer processed in a run (from the requests it stored)."""
    scorer = NextTokenScorer(backend, taxonomy)
    with Store(store_path) as store:
        rows = store.query(
            "SELECT request FROM calls WHERE run_id = ? AND stage = ? AND NOT cache_hit ORDER BY created_at",
            [run_id, scorer.stage],
        )
    return [backend.user_tokens(scorer.prefix, r["request"], scorer.choices) for r in rows]


# ------------------------------------------------------------------------------------------------- path 3
def run_bound(backend: Any, taxonomy: Taxonomy, lists: list[list[int]], users: int) -> PathResult:
    """llama_decode alone over the same token lists, from the cached-prefix state."""
    prefix = NextTokenScorer(backend, taxonomy).prefix
    seconds = sum(backend.prefill_seconds(prefix, lists))
    tokens = sum(len(t) for t in lists)
    return PathResult("3 bound: llama_decode only", users, seconds, tokens, 0, None, "user tokens only")


def mean_bound(first: PathResult, second: PathResult) -> PathResult:
    """The bound measured twice (after each product run), averaged: background load shows as a gap."""
    seconds = (first.seconds + second.seconds) / 2
    note = f"user tokens only; passes {first.s_per_user:.4f} / {second.s_per_user:.4f} s/user"
    return PathResult(first.name, first.users, seconds, first.prompt_tokens, 0, None, note)


def run_embedding_sweep(taxonomy: Taxonomy, ctx: dict[str, Any], users: int) -> list[dict[str, Any]]:
    """The embedding scorer's encode() under each precision x batch size, on the first N users' event texts.

    Agreement is the lowest cosine between a text's vector and its fp32 batch-64 vector (same weights).
    """
    from llm_labeler.backends.embedding import EmbeddingModel
    from llm_labeler.segments import EmbeddingScorer

    shipped = get_backend("embedding:default")
    scorer = EmbeddingScorer(shipped, taxonomy)
    with Store(ctx["workdir"] / "product_0.duckdb") as store:
        events = store.events_for(ctx["ids"][:users])
    texts = [text for evs in events.values() for _, text in scorer._texts(evs)]
    reference = None
    out = []
    for dtype in ("float32", "bfloat16"):
        model = EmbeddingModel(shipped.path, dtype=dtype)
        model._model = shipped.model  # same weights, precision applied per call
        for batch in (64, 32, 16, 8):
            model.encode(texts[:batch], batch_size=batch)  # warm-up
            start = time.perf_counter()
            vectors = model.encode(texts, batch_size=batch)
            seconds = time.perf_counter() - start
            if reference is None:
                reference = vectors
            out.append(
                {
                    "dtype": dtype,
                    "batch": batch,
                    "s_per_user": seconds / max(len(events), 1),
                    "min_cosine": float((vectors * reference).sum(axis=1).min()),
                    "shipped": dtype == shipped.dtype and batch == DEFAULT_EMBED_BATCH,
                }
            )
    return out


def run_sweep(taxonomy: Taxonomy, lists: list[list[int]]) -> list[tuple[int, int, bool, float]]:
    """The bound (s/user) under each n_threads x n_batch x flash_attn choice, on the same token lists."""
    from llm_labeler.backends.llamacpp import LlamaCppBackend, default_model_path

    out = []
    for threads in (1, 2):
        for batch in (64, 128, 256, 512):
            for flash in (False, True):
                backend = LlamaCppBackend(
                    default_model_path(), n_threads=threads, n_batch=batch, flash_attn=flash
                )
                prefix = NextTokenScorer(backend, taxonomy).prefix
                backend.prefill_seconds(prefix, lists[:1])  # warm-up: first decode allocates buffers
                seconds = sum(backend.prefill_seconds(prefix, lists))
                out.append((threads, batch, flash, seconds / len(lists)))
                del backend
    return out


# ------------------------------------------------------------------------------------------------- path 1
_JSON = re.compile(r"\{.*\}", re.DOTALL)


def run_naive(taxonomy: Taxonomy, ctx: dict[str, Any], grammar: bool, max_tokens: int) -> PathResult:
    """Free-form JSON generation per user with the full prompt; the context is reset so nothing is reused."""
    backend = get_backend("llamacpp:default")
    config = LabelConfig()
    scorer = JsonScorer(backend, taxonomy, budget_tokens=config.budget_tokens, max_tokens=max_tokens)
    kwargs: dict[str, Any] = {"max_tokens": max_tokens, "temperature": 0.0, "seed": 0}
    if grammar:
        kwargs["response_format"] = {"type": "json_object", "schema": scorer.schema}
    with fresh_store(ctx["workdir"] / "naive.duckdb", ctx["events"]) as store:
        start = time.perf_counter()
        prompt_tokens = generated = parsed = 0
        pred: dict[str, str | None] = {}
        for start_i in range(0, len(ctx["ids"]), 32):
            for uid, events in store.events_for(ctx["ids"][start_i : start_i + 32]).items():
                backend.generator.reset()  # no prefix reuse between users: the full prompt every time
                out = backend.generator.create_chat_completion(
                    messages=[{"role": "user", "content": scorer.request_text(events)}], **kwargs
                )
                prompt_tokens += out["usage"]["prompt_tokens"]
                generated += out["usage"]["completion_tokens"]
                pred[uid] = _parse_primary(out["choices"][0]["message"].get("content") or "", taxonomy)
                parsed += pred[uid] is not None
        seconds = time.perf_counter() - start
    how = "grammar" if grammar else "no grammar"
    note = f"{how}, max_tokens={max_tokens}, valid answers {parsed}/{len(ctx['ids'])}"
    return PathResult(
        "1 naive: JSON generation",
        len(ctx["ids"]),
        seconds,
        prompt_tokens,
        generated,
        f1(taxonomy, ctx["gold"], pred),
        note,
    )


def _parse_primary(text: str, taxonomy: Taxonomy) -> str | None:
    match = _JSON.search(text)
    try:
        primary = json.loads(match.group(0)).get("primary") if match else None
    except (ValueError, AttributeError):
        return None
    return primary if primary in taxonomy.ids else None


# ------------------------------------------------------------------------------------------------- memory
def rss_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS now, VmHWM peak)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def child_memory(args: argparse.Namespace) -> int:
    """One `label` run as shipped (default LabelConfig) on the first N users in this fresh process; prints JSON."""
    taxonomy = load_taxonomy(ROOT / "taxonomies" / f"{args.taxonomy}.yaml")
    ids = json.loads(Path(args.ids_file).read_text())[: args.child_memory]
    backend = get_backend("llamacpp:default")
    backend.scorer  # noqa: B018 - load the models before the baseline reading
    get_backend("embedding:default").encode(["warm up"])
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "mem.duckdb") as store:
        store.ingest(args.events)
        loaded = rss_kib("VmHWM")
        samples: list[int] = []
        start = time.perf_counter()
        label_users(
            store,
            taxonomy,
            LabelConfig(),
            users=ids,
            progress=lambda p: samples.append(rss_kib("VmRSS")),
        )
        seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "users": len(ids),
                "loaded_kib": loaded,
                "peak_kib": rss_kib("VmHWM"),
                "rss_kib": samples,
                "seconds": seconds,
            }
        )
    )
    return 0


def run_memory(args: argparse.Namespace, ctx: dict[str, Any]) -> list[dict[str, Any]]:
    """Peak RSS of a label run at each size, each in a fresh subprocess (the parent's lock covers them)."""
    ids_file = ctx["workdir"] / "ids.json"
    ids_file.write_text(json.dumps(ctx["ids"]))
    out = []
    for size in args.memory_sizes:
        cmd = [
            sys.executable,
            __file__,
            "--child-memory",
            str(size),
            "--ids-file",
            str(ids_file),
            "--events",
            str(ctx["events"]),
            "--taxonomy",
            args.taxonomy,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return out


# ------------------------------------------------------------------------------------------------- main
def hold_cpu_lock(skip: bool) -> Any:
    """Measure alone: take the shared CPU lock unless told not to or already holding it (run under flock)."""
    if skip or any(os.path.realpath(f"/proc/self/fd/{fd}") == LOCK for fd in os.listdir("/proc/self/fd")):
        return None
    fh = open(LOCK, "a")  # noqa: SIM115 - held for the whole run
    print(f"waiting for {LOCK} ...", file=sys.stderr, flush=True)
    fcntl.flock(fh, fcntl.LOCK_EX)
    return fh


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=100, help="users labeled by every path")
    p.add_argument("--seed", type=int, default=6, help="sample_users seed")
    p.add_argument("--taxonomy", default="20ng_coarse")
    p.add_argument(
        "--fixture", action="store_true", help="use tests/fixtures/20ng_sample instead of the tarball"
    )
    p.add_argument("--memory-sizes", type=lambda s: [int(x) for x in s.split(",") if x], default=[100, 1000])
    p.add_argument(
        "--naive-grammar", action="store_true", help="constrain naive generation with the JSON schema"
    )
    p.add_argument("--naive-max-tokens", type=int, default=120)
    p.add_argument("--no-lock", action="store_true", help="do not take the CPU lock (smoke tests only)")
    p.add_argument("--sweep", type=int, default=0, help="also sweep n_threads/n_batch/flash_attn on N users")
    p.add_argument(
        "--sweep-embedding",
        type=int,
        default=0,
        help="also time the embedding scorer's precision x batch size on N users",
    )
    p.add_argument(
        "--candidates",
        type=lambda v: [x for x in v.split(",") if x],
        default=[],
        help=f"also time these embedded candidates alone: {', '.join(CANDIDATES)}",
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    p.add_argument("--ids-file", help=argparse.SUPPRESS)
    p.add_argument("--events", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child_memory:
        return child_memory(args)
    lock = hold_cpu_lock(args.no_lock)
    try:
        return _bench(args)
    finally:
        if lock is not None:
            lock.close()


def _bench(args: argparse.Namespace) -> int:
    taxonomy = load_taxonomy(ROOT / "taxonomies" / f"{args.taxonomy}.yaml")
    with tempfile.TemporaryDirectory(prefix="bench_label_") as tmp:
        workdir = Path(tmp)
        events, gold, ordered = write_sample(args, workdir)
        ids = ordered[: args.n]
        ctx = {"workdir": workdir, "events": events, "gold": {u: gold[u] for u in ids}, "ids": ids}
        ctx_all = {**ctx, "ids": ordered}
        report = _header(args, taxonomy, len(ids))
        report["loads"] = _warm_up()
        results, lists = _paths(args, taxonomy, ctx)
        report["sweep"] = run_sweep(taxonomy, lists[: args.sweep]) if args.sweep else []
        report["embedding_sweep"] = (
            run_embedding_sweep(taxonomy, ctx, args.sweep_embedding) if args.sweep_embedding else []
        )
        report["memory"] = run_memory(args, ctx_all) if args.memory_sizes else []
    _print(report, results, lists)
    if args.json:
        args.json.write_text(json.dumps({**report, "paths": [r.__dict__ for r in results]}, indent=2))
    return 0


def _header(args: argparse.Namespace, taxonomy: Taxonomy, n: int) -> dict[str, Any]:
    backend = get_backend("llamacpp:default")
    embedder = get_backend("embedding:default")
    from llm_labeler.backends.llamacpp import cpu_features

    return {
        "llama_cpu": cpu_features(),
        "embedding": f"{embedder.model_id}, {embedder.dtype}, batch {DEFAULT_EMBED_BATCH}",
        "users": n,
        "source": "fixture" if args.fixture else f"20news-bydate sample_users(seed={args.seed})",
        "taxonomy": taxonomy.name,
        "model": backend.model_id,
        "n_threads": backend.n_threads,
        "n_batch": backend.n_batch,
        "cpus": os.cpu_count(),
    }


def _warm_up() -> dict[str, float]:
    """Load both models once (the registry keeps them for the run): load time is not a per-user cost."""
    out = {}
    start = time.perf_counter()
    get_backend("llamacpp:default").scorer  # noqa: B018
    get_backend("llamacpp:default").generator  # noqa: B018 - the naive path's context
    out["llm_load_s"] = time.perf_counter() - start
    start = time.perf_counter()
    get_backend("embedding:default").encode(["warm up"])
    out["embedding_load_s"] = time.perf_counter() - start
    return out


def _paths(
    args: argparse.Namespace, taxonomy: Taxonomy, ctx: dict[str, Any]
) -> tuple[list[PathResult], list[list[int]]]:
    backend = get_backend("llamacpp:default")
    llm_only, llm_run, llm_db = run_product(
        "2 product: llm scorer only", LabelConfig(scorers=[ScorerSpec("llm", 1.0)]), taxonomy, ctx
    )
    lists = llm_token_lists(llm_db, llm_run, backend, taxonomy)
    first = run_bound(backend, taxonomy, lists, len(ctx["ids"]))
    default, _, _ = run_product(
        "2 product: default (llm+embedding)", LabelConfig(), taxonomy, ctx, "label as shipped"
    )
    bound = mean_bound(first, run_bound(backend, taxonomy, lists, len(ctx["ids"])))
    emb, _, _ = run_product(
        "  embedding scorer alone", LabelConfig(scorers=[ScorerSpec("embedding", 1.0)]), taxonomy, ctx
    )
    naive = run_naive(taxonomy, ctx, args.naive_grammar, args.naive_max_tokens)
    emb.note = f"{emb.seconds / default.seconds:.0%} of the default path's time"
    extra = []
    for name in args.candidates:
        config = CANDIDATES[name]
        get_backend(config.backend).scorer  # noqa: B018 - load (and hash) the models first, as _warm_up does
        get_backend(config.embedding_backend).encode(["warm up"])
        extra.append(run_product(f"  candidate: {name}", config, taxonomy, ctx)[0])
    for r in extra:
        r.note = f"{r.seconds / default.seconds:.2f}x the default path's time"
    return [naive, default, llm_only, emb, *extra, bound], lists


# Embedded models that are not the default (issue: the LLM must earn its place), timed beside it with --candidates.
CANDIDATES = {
    "qwen1.5": LabelConfig(
        backend="llamacpp:qwen1.5", scorers=[ScorerSpec("llm", 1.0)], prompt_segment="segment_score_letters@1"
    ),
    "nomic": LabelConfig(scorers=[ScorerSpec("embedding", 1.0, "none")], embedding_backend="nomic:default"),
}


def _print(report: dict[str, Any], results: list[PathResult], lists: list[list[int]]) -> None:
    print(f"bench_label: {report['users']} users of {report['source']}, taxonomy {report['taxonomy']}")
    print(
        f"model {report['model']}, n_threads={report['n_threads']}, n_batch={report['n_batch']}, cpus={report['cpus']}"
    )
    print(f"llama.cpp CPU kernels: {report['llama_cpu']}")
    print(f"embedding model {report['embedding']}")
    loads = report["loads"]
    print(
        f"model load (once per run, not per user): llm {loads['llm_load_s']:.2f} s, embeddings {loads['embedding_load_s']:.2f} s"
    )
    print()
    print(f"{'path':<34} {'s/user':>8} {'prompt/u':>10} {'gen/u':>8} {'users/min':>10} {'macroF1':>8}")
    for r in results:
        print(r.row())
    naive, default, llm_only, bound = results[0], results[1], results[2], results[-1]
    print()
    print(
        f"naive/product:  default {naive.seconds / default.seconds:.2f}x   llm-only {naive.seconds / llm_only.seconds:.2f}x   (target >= 3)"
    )
    print(
        f"product/bound:  default {default.seconds / bound.seconds:.2f}x   llm-only {llm_only.seconds / bound.seconds:.2f}x   (target <= 1.25)"
    )
    print(
        f"llm-only overhead over the bound: {(llm_only.seconds - bound.seconds) / bound.users * 1000:.1f} ms/user"
    )
    for threads, batch, flash, spu in report["sweep"]:
        print(
            f"sweep: n_threads={threads} n_batch={batch:>3} flash_attn={flash!s:<5}  bound {spu:.4f} s/user"
        )
    for e in report.get("embedding_sweep", []):
        mark = "  <- shipped" if e["shipped"] else ""
        print(
            f"sweep: embedding {e['dtype']:<8} batch {e['batch']:>2}  {e['s_per_user']:.4f} s/user  "
            f"min cosine vs float32 batch 64 {e['min_cosine']:.5f}{mark}"
        )
    for m in report["memory"]:
        grow = (m["peak_kib"] - m["loaded_kib"]) / 1024
        rss = m["rss_kib"] or [0]
        quarters = " / ".join(
            f"{rss[min(len(rss) - 1, max(0, round(len(rss) * q) - 1))] / 1024:.0f}"
            for q in (0.25, 0.5, 0.75, 1.0)
        )
        print(
            f"memory: label (llm+embedding) {m['users']:>5} users: peak RSS {m['peak_kib'] / 1024:.1f} MiB "
            f"(after model load + ingest {m['loaded_kib'] / 1024:.1f} MiB, +{grow:.1f} MiB while labeling; "
            f"RSS after the first chunk {rss[0] / 1024:.1f} MiB, after 25/50/75/100% of users {quarters} MiB), "
            f"{m['seconds'] / m['users']:.3f} s/user"
        )
    if len(report["memory"]) > 1:
        small, large = report["memory"][0], report["memory"][-1]
        per = (large["peak_kib"] - small["peak_kib"]) / max(large["users"] - small["users"], 1)
        print(
            f"memory: peak RSS grows {per:.1f} KiB per extra user from {small['users']} to {large['users']} users"
        )
    if report["memory"] and len(report["memory"][-1]["rss_kib"]) >= 4:
        # The slope once warm: allocator pools and kernel caches fill in the first chunks, then RSS should stay put.
        large = report["memory"][-1]
        rss, half = large["rss_kib"], len(large["rss_kib"]) // 2
        per = (rss[-1] - rss[half - 1]) / max(large["users"] - large["users"] * half / len(rss), 1)
        print(
            f"memory: RSS grows {per:.1f} KiB per user over the second half of the {large['users']}-user run"
        )


if __name__ == "__main__":
    sys.exit(main())
