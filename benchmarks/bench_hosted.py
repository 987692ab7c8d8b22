"""Hosted backends end to end on a real local server, their throughput, and recovery behind a fault proxy.

Starts llama-cpp-python's OpenAI-compatible server on 127.0.0.1 with the embedded model, then prints:

A. backends  the same N gold users (the bundled 20 Newsgroups fixture) labeled end to end, on a fresh store each,
             by `openai-compatible:` (official openai client), `langchain:openai:` (LangChain's ChatOpenAI) and
             `openai:` (OPENAI_BASE_URL pointed at the local server; its strict json_schema request is rejected
             and the backend degrades with a warning): labels, failed rows, accuracy of the combined label and of
             the LLM's own answer against gold, wall time, users/min.
B. throughput users/min of the openai-compatible path at --concurrency 4, next to its --concurrency 1 run from
             part A (same users, same default scorers, fresh store each); llama-cpp-python's server decodes one
             request at a time, so concurrency can only overlap client-side work and HTTP with decoding.
C. faults    --fault-users users through a fault-injecting proxy (429 + Retry-After, 500, 503, slow past the
             timeout, truncated body, invalid JSON body, connection reset, junk answers; two users whose answers
             are always junk and one whose every attempt gets a 500), at --concurrency 2: faults injected, rows
             recovered, rows failed, duplicate rows, lost users; then a rerun without faults (only failed rows
             are asked again).

    flock /tmp/llm_labeler_cpu.lock .venv/bin/python benchmarks/bench_hosted.py [--n 50] [--parts abc]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from faultproxy import FaultProxy, Rule  # noqa: E402
from hosted_server import LlamaServer  # noqa: E402

from llm_labeler.backends import get_backend  # noqa: E402
from llm_labeler.labeling import LabelConfig, label_users  # noqa: E402
from llm_labeler.labeling.prepare import prepare_jobs  # noqa: E402
from llm_labeler.metrics import classification_metrics  # noqa: E402
from llm_labeler.redaction import Redactor  # noqa: E402
from llm_labeler.schemas import Taxonomy, load_taxonomy  # noqa: E402
from llm_labeler.segments import JsonScorer, ScorerSpec  # noqa: E402
from llm_labeler.store import Store  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "20ng_sample"
JSON_ONLY = [ScorerSpec("json", 1.0, "none")]
FAULT_CYCLE = ["429", None, "500", None, "truncate", None, "badjson", "reset", None, "503", "junk", None]


def gold_users(n: int) -> dict[str, str]:
    """The first n fixture users (by id) and their coarse gold segment."""
    with (FIXTURE / "gold.csv").open(encoding="utf-8") as fh:
        gold = {row["user_id"]: row["gold_coarse"] for row in csv.DictReader(fh)}
    return {u: gold[u] for u in sorted(gold)[:n]}


def fresh_store(workdir: Path, name: str) -> Store:
    """A new DuckDB file with the fixture's events."""
    store = Store(workdir / f"{name}.duckdb")
    store.ingest(FIXTURE / "events.jsonl")
    return store


def llm_answers(store: Store, run_id: str, taxonomy: Taxonomy) -> dict[str, str | None]:
    """The json scorer's own pick per user (argmax of its stored scores)."""
    rows = store.query(
        "SELECT user_id, parsed FROM calls WHERE run_id = ? AND stage = 'segment_json'", [run_id]
    )
    out: dict[str, str | None] = {}
    for r in rows:
        scores = (json.loads(r["parsed"]) or {}).get("scores") if r["parsed"] else None
        out[r["user_id"]] = taxonomy.ids[max(range(len(scores)), key=scores.__getitem__)] if scores else None
    return out


def run_backend(
    workdir: Path, name: str, backend: str, gold: dict[str, str], taxonomy: Taxonomy, **config: Any
) -> dict[str, Any]:
    """Label the gold users on a fresh store; accuracy of the label and of the LLM's answer."""
    with fresh_store(workdir, name) as store:
        start = time.perf_counter()
        result = label_users(store, taxonomy, LabelConfig(backend=backend, **config), users=list(gold))
        wall = time.perf_counter() - start
        answers = llm_answers(store, result.run_id, taxonomy)
    ids = list(gold)
    by_user = {lab.user_id: lab.primary_segment for lab in result.labels}
    label_m = classification_metrics([gold[u] for u in ids], [by_user.get(u) for u in ids], taxonomy.ids)
    llm_m = classification_metrics([gold[u] for u in ids], [answers.get(u) for u in ids], taxonomy.ids)
    s = result.stats
    return {
        "path": name,
        "backend": backend,
        "users": len(ids),
        "labeled": sum(1 for lab in result.labels if lab.primary_segment),
        "failed_rows": s["failed_calls"],
        "label_acc": round(label_m["accuracy"], 3),
        "llm_acc": round(llm_m["accuracy"], 3),
        "wall_s": round(wall, 1),
        "users_per_min": round(len(ids) / wall * 60, 2),
        "http_attempts": s["transport_attempts"],
        "reasks": s["reasks"],
        "redactions": s["redactions"],
        "warnings": result.warnings,
    }


def part_a(
    server: LlamaServer, workdir: Path, gold: dict[str, str], taxonomy: Taxonomy
) -> list[dict[str, Any]]:
    """Each backend over the same gold users, default scorers (json + embedding)."""
    os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"] = server.url, "sk-local-bench"
    backends = {
        "openai-compatible": server.backend_id(),
        "langchain": f"langchain:openai:{server.alias}?base_url={server.url}&schema=json_object",
        "openai (OPENAI_BASE_URL)": f"openai:{server.alias}",
    }
    return [
        run_backend(workdir, f"a_{i}", b, gold, taxonomy, timeout=300.0)
        for i, b in enumerate(backends.values())
    ]


def part_b(
    server: LlamaServer, workdir: Path, gold: dict[str, str], taxonomy: Taxonomy, c1: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """users/min of the openai-compatible path at concurrency 4 (and 1, from part A or run here)."""
    rows = [] if c1 is None else [c1 | {"concurrency": 1}]
    for c in (1, 4) if c1 is None else (4,):
        row = run_backend(
            workdir, f"b_c{c}", server.backend_id(), gold, taxonomy, concurrency=c, timeout=300.0
        )
        rows.append(row | {"concurrency": c})
    return rows


def _snippet(store: Store, taxonomy: Taxonomy, backend: str, uid: str) -> str:
    import re

    scorer = JsonScorer(get_backend(backend), taxonomy)
    jobs, _ = prepare_jobs(scorer, store.events_for([uid]), taxonomy.content_hash(), Redactor())
    history = jobs[uid].text.split("User activity:", 1)[1]
    return max(re.findall(r"[A-Za-z][A-Za-z ]{12,40}[A-Za-z]", history), key=len)


def part_c(server: LlamaServer, workdir: Path, n: int, taxonomy: Taxonomy) -> dict[str, Any]:
    """Faults injected, rows recovered / failed, duplicates, lost; then a fault-free rerun."""
    users = list(gold_users(n))
    schedule = ["slow"] + FAULT_CYCLE * (1 + 3 * n // len(FAULT_CYCLE))
    with (
        fresh_store(workdir, "c_faults") as store,
        FaultProxy(f"http://127.0.0.1:{server.port}", schedule, slow_s=155.0) as proxy,
    ):
        backend = server.backend_id(proxy.url())
        proxy.rules += [Rule("junk", _snippet(store, taxonomy, backend, u)) for u in users[1:3]]
        proxy.rules.append(Rule("500", _snippet(store, taxonomy, backend, users[3])))
        config = LabelConfig(backend=backend, scorers=JSON_ONLY, concurrency=2, timeout=150.0)
        start = time.perf_counter()
        result = label_users(store, taxonomy, config, users=users)
        wall = time.perf_counter() - start
        calls = store.query(
            "SELECT * FROM calls WHERE run_id = ? AND stage = 'segment_json'", [result.run_id]
        )
        labels = store.labels(result.run_id)
        rerun = label_users(
            store,
            taxonomy,
            LabelConfig(backend=server.backend_id(), scorers=JSON_ONLY, timeout=300.0),
            users=users,
        )
    per_user: dict[str, int] = {}
    for c in calls:
        per_user[c["user_id"]] = per_user.get(c["user_id"], 0) + 1
    recovered = [
        c for c in calls if c["error"] is None and (c["transport_attempts"] > 1 or c["attempts"] > 1)
    ]
    return {
        "users": n,
        "requests_seen": proxy.stats.requests,
        "faults_injected": proxy.stats.faults,
        "faults_by_kind": dict(proxy.stats.injected),
        "rows_ok": sum(1 for c in calls if c["error"] is None),
        "rows_recovered": len(recovered),
        "rows_failed": sum(1 for c in calls if c["error"] is not None),
        "failed_errors": sorted({str(c["error"]).split(":")[0] for c in calls if c["error"]}),
        "duplicate_calls": sum(v - 1 for v in per_user.values() if v > 1),
        "duplicate_labels": len(labels) - len({lab["user_id"] for lab in labels}),
        "lost_users": len(set(users) - {lab["user_id"] for lab in labels}),
        "http_attempts": result.stats["transport_attempts"],
        "failed_attempts": result.stats["failed_attempts"],
        "reasks": result.stats["reasks"],
        "retry_wait_s": result.stats["retry_wait_s"],
        "wall_s": round(wall, 1),
        "rerun_calls": rerun.stats["calls"],
        "rerun_cache_hits": rerun.stats["cache_hits"],
        "rerun_failed": rerun.stats["failed_calls"],
    }


def main(argv: list[str] | None = None) -> None:
    """Run the parts asked for and print their figures (and write them as JSON with --out)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=50, help="gold users for parts A and B")
    parser.add_argument("--fault-users", type=int, default=20)
    parser.add_argument("--parts", default="abc")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    taxonomy = load_taxonomy(ROOT / "taxonomies" / "20ng_coarse.yaml")
    gold = gold_users(args.n)
    report: dict[str, Any] = {"n": args.n, "cpus": os.cpu_count(), "server_threads": args.threads}
    with (
        tempfile.TemporaryDirectory(prefix="bench_hosted_") as tmp,
        LlamaServer(n_threads=args.threads) as server,
    ):
        workdir = Path(tmp)
        if "a" in args.parts:
            report["backends"] = part_a(server, workdir, gold, taxonomy)
            _print("A. backends, same gold users, default scorers (json + embedding)", report["backends"])
        if "b" in args.parts:
            c1 = report["backends"][0] if "backends" in report else None
            report["throughput"] = part_b(server, workdir, gold, taxonomy, c1)
            _print("B. openai-compatible path, users/min by --concurrency", report["throughput"])
        if "c" in args.parts:
            report["faults"] = part_c(server, workdir, args.fault_users, taxonomy)
            _print("C. fault proxy", [report["faults"]])
    if args.out:
        args.out.write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")


def _print(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {title}", flush=True)
    for row in rows:
        print(json.dumps(row, default=str), flush=True)


if __name__ == "__main__":
    main()
