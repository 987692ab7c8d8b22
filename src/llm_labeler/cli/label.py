"""Commands around the label run: ingest, label (--dry-run) / plan, show, runs, logs, demo."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from ..errors import InputError, LabelerError
from ..settings import DEFAULT_BACKEND
from .common import DbOpt, JsonOpt, app, console, emit, errors, open_store, out, progress

ConcurrencyOpt = Annotated[
    int,
    typer.Option("--concurrency", min=1, help="Parallel calls for hosted backends (paced by ?rpm=/?tpm=)."),
]
MaxCostOpt = Annotated[
    float | None,
    typer.Option("--max-cost", help="USD budget: stop cleanly before a call could cross it (price table)."),
]
RedactOpt = Annotated[
    bool | None,
    typer.Option(
        "--redact/--no-redact",
        help="PII redaction before text leaves the machine (default: on for non-local backends).",
    ),
]
SamplesOpt = Annotated[
    int, typer.Option("--samples", min=1, help="K-sample self-consistency for the json scorer's confidence.")
]


@app.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="CSV, JSONL or Parquet files of user events.")],
    db: DbOpt = "",
    fmt: Annotated[
        str | None, typer.Option("--format", help="csv | jsonl | parquet (default: by extension)")
    ] = None,
    mapping: Annotated[list[str] | None, typer.Option("--map", help="source_col=field (repeatable)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load user events into the store (one transaction per file; re-ingesting adds no duplicates)."""
    with errors():
        maps = _parse_map(mapping or [])
        results = []
        with open_store(db) as store:
            for f in files:
                results.append(store.ingest(f, fmt, maps))
    rows = [
        {
            "file": r.path,
            "format": r.format,
            "rows": r.rows_read,
            "added": r.rows_added,
            "duplicates": r.duplicates,
            "users": r.users_touched,
        }
        for r in results
    ]
    emit(rows, as_json, "Ingested")


def _parse_map(items: list[str]) -> dict[str, str]:
    out_map = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise InputError(f"--map expects source_col=field, got {item!r}")
        out_map[src.strip()] = dst.strip()
    return out_map


def _scorer_specs(scorers: str | None) -> Any:
    from ..segments import ScorerSpec

    if not scorers:
        return None
    specs = []
    for part in scorers.split(","):
        name, _, weight = part.partition("=")
        specs.append(
            ScorerSpec(name.strip(), float(weight or 1.0), "none" if name.strip() == "json" else "batch")
        )
    return specs


def label(
    ctx: typer.Context,
    taxonomy: Annotated[Path, typer.Option("--taxonomy", help="Taxonomy YAML file.")],
    db: DbOpt = "",
    backend: Annotated[
        str, typer.Option("--backend", help="Backend id, e.g. llamacpp:default.")
    ] = DEFAULT_BACKEND,
    users: Annotated[str | None, typer.Option("--users", help="Comma-separated user ids.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Label the first N users.")] = None,
    profile: Annotated[
        bool, typer.Option("--profile/--no-profile", help="Also write interest profiles.")
    ] = False,
    threshold: Annotated[float, typer.Option("--threshold", help="Abstain below this confidence.")] = 0.0,
    scorers: Annotated[
        str | None, typer.Option("--scorers", help="e.g. 'llm=0.3,embedding=1' (default: auto)")
    ] = None,
    budget: Annotated[int, typer.Option("--budget-tokens", help="History tokens per prompt.")] = 400,
    concurrency: ConcurrencyOpt = 1,
    max_cost: MaxCostOpt = None,
    redact: RedactOpt = None,
    samples: SamplesOpt = 1,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Call no model: show users, cache hits, tokens, cost, time and a sample prompt."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Label users into the taxonomy's segments; cached answers are reused, so a rerun resumes."""
    from ..labeling import LabelConfig, label_users, plan_run
    from ..schemas import load_taxonomy

    with errors():
        tax = load_taxonomy(taxonomy)
        config = LabelConfig(
            backend=backend, profile=profile, threshold=threshold, scorers=_scorer_specs(scorers),
            budget_tokens=budget, concurrency=concurrency, max_cost=max_cost, redact=redact, samples=samples,
        )  # fmt: skip
        user_list = [u.strip() for u in users.split(",") if u.strip()] if users else None
        if dry_run or ctx.info_name == "plan":
            with open_store(db) as store:
                planned = plan_run(store, tax, config, user_list, limit)
            _print_plan(planned, max_cost, as_json)
            return
        with open_store(db) as store, progress("labeling", as_json) as update:
            result = label_users(store, tax, config, user_list, limit, progress=update)
    for note in result.warnings:
        console.print(f"[yellow]warning:[/] {note}")
    if as_json:
        for lab in result.labels:
            out.print_json(json.dumps(_label_json(lab)), indent=None)
        return
    _segment_table(tax, result.labels, f"Run {result.run_id}")
    _stats_line(result.stats)
    hosted_line(result.stats)


app.command("label")(label)
# `plan` is the same command as `label --dry-run`: one function, one option set, registered under both names.
app.command(
    "plan",
    help="What `label` would do with the same arguments (= label --dry-run): users, cache hits, tokens, cost, "
    "time, a sample prompt.",
)(label)


def _print_plan(planned: Any, max_cost: float | None, as_json: bool) -> None:
    if as_json:
        data = asdict(planned) | {"totals": planned.totals}
        out.print_json(json.dumps(data, default=str))
        return
    _plan_tables(planned, max_cost)


def _plan_tables(result: Any, max_cost: float | None) -> None:
    for note in result.notes:
        console.print(f"[yellow]warning:[/] {note}")
    table = Table(title=f"Plan: {result.users} users ({result.empty_history} with no history)")
    cols = (
        "scorer",
        "model",
        "calls",
        "cache hits",
        "prompt tokens",
        "answer tokens",
        "cost USD",
        "time s",
        "basis",
    )
    for col in cols:
        table.add_column(col, justify="right" if col not in ("scorer", "model", "basis") else "left")
    for s in result.scorers:
        table.add_row(
            s.scorer, s.model_id, str(s.calls), str(s.cache_hits), str(s.prompt_tokens), str(s.completion_tokens),
            _money(s.cost_usd), _secs(s.seconds), s.basis,
        )  # fmt: skip
    t = result.totals
    table.add_row(
        "total", "", str(t["calls"]), str(t["cache_hits"]), str(t["prompt_tokens"]), str(t["completion_tokens"]),
        _money(t["cost_usd"]), _secs(t["seconds"]), f"concurrency {result.concurrency}",
    )  # fmt: skip
    out.print(table)
    red = ", ".join(f"{k} {v}" for k, v in sorted(result.redactions.items())) or "none found"
    out.print(f"redaction {'on' if result.redaction else 'off'}: {red}")
    if max_cost is not None:
        fits = "unknown (price unknown)" if result.users_within_budget is None else result.users_within_budget
        out.print(f"--max-cost ${max_cost:g}: about {fits} of {result.users} users fit (expected cost)")
    if result.sample_prompt:
        out.print(Panel(result.sample_prompt, title="sample prompt, as it would be sent", expand=False))


def _money(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.6f}"


def _secs(v: float | None) -> str:
    return "unknown" if v is None else f"{v:.1f}"


def _label_json(lab: Any) -> dict[str, Any]:
    return {
        "user_id": lab.user_id,
        "primary": lab.primary_segment,
        "confidence": lab.confidence,
        "segments": lab.probabilities,
        "labels": lab.segments,
        "abstained": lab.abstained,
        "abstain_reason": lab.abstain_reason,
        "evidence": lab.evidence,
        "run_id": lab.run_id,
        "model_id": lab.model_id,
        "prompt_hash": lab.prompt_hash,
        "taxonomy_hash": lab.taxonomy_hash,
    }


def _segment_table(tax: Any, labels: list[Any], title: str) -> None:
    counts = Counter(lab.primary_segment for lab in labels)
    table = Table(title=title)
    for col in ("segment", "name", "users", "share", "mean confidence"):
        table.add_column(col, justify="right" if col in ("users", "share", "mean confidence") else "left")
    n = max(len(labels), 1)
    names = {s.id: s.name for s in tax.segments}
    for sid in [*tax.ids, None]:
        confs = [lab.confidence for lab in labels if lab.primary_segment == sid]
        table.add_row(
            sid or "(abstain)",
            names.get(sid, "—") if sid else tax.abstain.name,
            str(counts.get(sid, 0)),
            f"{counts.get(sid, 0) / n:.1%}",
            f"{sum(confs) / len(confs):.2f}" if confs else "—",
        )
    out.print(table)


def _stats_line(stats: dict[str, Any]) -> None:
    out.print(
        f"users {stats['users']} · LLM/scorer calls {stats['calls']} · cache hits {stats['cache_hits']} · "
        f"failed {stats['failed_calls']} · prompt tokens/user {stats['prompt_tokens_per_user']} · "
        f"{stats['s_per_user']} s/user · wall {stats['wall_s']} s"
    )


def hosted_line(stats: dict[str, Any]) -> None:
    """Transport, cost and privacy figures of a finished run, on one line."""
    cost = stats.get("cost_usd")
    cost_text = (
        f"${cost:.6f}" if cost is not None else f"unknown ({stats.get('unpriced_calls')} unpriced calls)"
    )
    red = stats.get("redactions") or {}
    red_text = ", ".join(f"{k} {v}" for k, v in sorted(red.items())) or "none"
    out.print(
        f"concurrency {stats.get('concurrency', 1)} · HTTP attempts {stats.get('transport_attempts', 0)} "
        f"(failed {stats.get('failed_attempts', 0)}, retry wait {stats.get('retry_wait_s', 0)} s) · "
        f"re-asks {stats.get('reasks', 0)} · cost {cost_text} · "
        f"redaction {'on' if stats.get('redaction') else 'off'}: {red_text}"
    )


@app.command()
def show(
    user_id: Annotated[str, typer.Argument(help="User id.")],
    db: DbOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """A user's latest segments, confidence, evidence and profile."""

    with errors(), open_store(db) as store:
        store.user_ids([user_id])
        lab = store.latest_label(user_id)
        if lab is None:
            raise LabelerError(f"user {user_id} has no label yet; run label")
    if as_json:
        out.print_json(json.dumps(lab, default=str))
        return
    table = Table(title=f"User {user_id} (run {lab['run_id']})", show_header=False)
    table.add_row("primary", str(lab["primary_segment"] or "(abstain: " + str(lab["abstain_reason"]) + ")"))
    table.add_row("confidence", f"{lab['confidence']:.3f}")
    table.add_row("segments", ", ".join(lab["segments"] or []))
    probs = sorted((lab["probabilities"] or {}).items(), key=lambda kv: -kv[1])
    table.add_row("probabilities", "  ".join(f"{k} {v:.2f}" for k, v in probs))
    table.add_row("rationale", lab["rationale"] or "")
    table.add_row("evidence", "\n".join(lab["evidence"] or []))
    prof = lab.get("profile")
    if prof:
        table.add_row("profile", prof.get("summary", ""))
        for it in prof.get("interests", []):
            table.add_row("", f"{it['topic']} ({it['weight']:.2f}) ← {', '.join(it.get('evidence', []))}")
    table.add_row("model", lab["model_id"])
    table.add_row("prompt", f"{lab['prompt_name']}@{lab['prompt_version']} {lab['prompt_hash'][:12]}")
    table.add_row("taxonomy", f"{lab['taxonomy_name']} {lab['taxonomy_hash'][:12]}")
    out.print(table)


@app.command()
def runs(db: DbOpt = "", as_json: JsonOpt = False, limit: int = 20) -> None:
    """Recent runs with their status and statistics."""
    with errors(), open_store(db) as store:
        rows = store.recent_runs(limit)
    for r in rows:
        stats = r.pop("stats") or {}
        r.update({k: stats.get(k) for k in ("users", "calls", "cache_hits", "s_per_user")})
    emit(rows, as_json, "Runs")


@app.command()
def demo(
    db: Annotated[str, typer.Option("--db", help="DuckDB file for the demo.")] = "llm_labeler_demo.duckdb",
    n: Annotated[int, typer.Option("--n", help="Users to label.")] = 60,
    backend: Annotated[str, typer.Option("--backend")] = DEFAULT_BACKEND,
    as_json: JsonOpt = False,
) -> None:
    """Ingest real 20 Newsgroups users, label them on the embedded model, print segments and accuracy vs gold."""
    from ..evals.demo import run_demo

    with errors(), progress("demo: labeling", as_json) as update:
        result = run_demo(db, n, backend, progress=update, log=lambda m: console.print(f"[dim]{m}[/]"))
    if as_json:
        out.print_json(json.dumps(result.summary, default=str))
        return
    _segment_table(
        result.taxonomy, result.run.labels, f"Demo: {n} users of 20 Newsgroups, run {result.run.run_id}"
    )
    _stats_line(result.run.stats)
    s = result.summary
    out.print(
        f"[bold]accuracy vs gold {s['accuracy']:.3f} · macro-F1 {s['macro_f1']:.3f}[/] on {s['n_gold']} users "
        f"(source: {s['source']})"
    )


@app.command()
def logs(
    db: DbOpt = "",
    run: Annotated[str | None, typer.Option("--run", help="Only this run id.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user id.")] = None,
    errors_only: Annotated[bool, typer.Option("--errors", help="Only failed calls.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Newest N calls.")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Every call: model, prompt hash, tokens, latency, attempts, cost, cache hit, error."""
    from ..store.calls import call_log

    with errors(), open_store(db) as store:
        rows = call_log(store, run, user, errors_only, limit)
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    emit([_log_row(r) for r in rows], False, f"Calls ({len(rows)}, newest first)")


def _log_row(r: dict[str, Any]) -> dict[str, Any]:
    red = sum((r.get("redactions") or {}).values())
    return {
        "time": str(r["created_at"])[11:19],
        "user": r["user_id"],
        "stage": r["stage"],
        "model": r["model_id"],
        "prompt": (r["prompt_hash"] or "")[:8],
        "tokens": f"{r['prompt_tokens'] or 0}/{r['completion_tokens'] or 0}",
        "ms": round(r["latency_ms"] or 0),
        "http/reask": f"{r.get('transport_attempts') or 0}/{r.get('reasks') or 0}",
        "USD": r.get("cost_usd"),
        "cache": "hit" if r["cache_hit"] else "",
        "pii": red or "",
        "error": (r["error"] or "")[:60],
    }
