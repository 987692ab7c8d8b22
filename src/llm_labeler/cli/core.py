"""Core commands: ingest, label, show, runs, demo."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import LabelerError
from ..settings import DEFAULT_BACKEND
from . import DbOpt, JsonOpt, _emit, _errors, _open, _progress, app, console, out
from .hosted_opts import ConcurrencyOpt, MaxCostOpt, RedactOpt, SamplesOpt, hosted_line


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
    with _errors():
        maps = _parse_map(mapping or [])
        results = []
        with _open(db) as store:
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
    _emit(rows, as_json, "Ingested")


def _parse_map(items: list[str]) -> dict[str, str]:
    from ..errors import InputError

    out_map = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise InputError(f"--map expects source_col=field, got {item!r}")
        out_map[src.strip()] = dst.strip()
    return out_map


def _label_config(
    backend: str,
    profile: bool,
    threshold: float,
    scorers: str | None,
    budget: int,
    **hosted: Any,
) -> Any:
    from ..labeling import LabelConfig
    from ..segments import ScorerSpec

    specs = None
    if scorers:
        specs = []
        for part in scorers.split(","):
            name, _, weight = part.partition("=")
            specs.append(
                ScorerSpec(name.strip(), float(weight or 1.0), "none" if name.strip() == "json" else "batch")
            )
    return LabelConfig(
        backend=backend, profile=profile, threshold=threshold, scorers=specs, budget_tokens=budget, **hosted
    )


@app.command()
def label(
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
    as_json: JsonOpt = False,
) -> None:
    """Label users into the taxonomy's segments; cached answers are reused, so a rerun resumes."""
    from ..labeling import label_users
    from ..schemas import load_taxonomy

    with _errors():
        tax = load_taxonomy(taxonomy)
        config = _label_config(
            backend, profile, threshold, scorers, budget,
            concurrency=concurrency, max_cost=max_cost, redact=redact, samples=samples,
        )  # fmt: skip
        user_list = [u.strip() for u in users.split(",") if u.strip()] if users else None
        with _open(db) as store, _progress("labeling", as_json) as update:
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


@app.command()
def show(
    user_id: Annotated[str, typer.Argument(help="User id.")],
    db: DbOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """A user's latest segments, confidence, evidence and profile."""

    with _errors(), _open(db) as store:
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
    with _errors(), _open(db) as store:
        rows = store.query(
            "SELECT run_id, kind, status, backend, taxonomy_name, stats, started_at FROM runs "
            "ORDER BY started_at DESC LIMIT ?",
            [limit],
        )
    for r in rows:
        stats = json.loads(r.pop("stats") or "{}")
        r.update({k: stats.get(k) for k in ("users", "calls", "cache_hits", "s_per_user")})
    _emit(rows, as_json, "Runs")


@app.command()
def demo(
    db: Annotated[str, typer.Option("--db", help="DuckDB file for the demo.")] = "llm_labeler_demo.duckdb",
    n: Annotated[int, typer.Option("--n", help="Users to label.")] = 60,
    backend: Annotated[str, typer.Option("--backend")] = DEFAULT_BACKEND,
    as_json: JsonOpt = False,
) -> None:
    """Ingest real 20 Newsgroups users, label them on the embedded model, print segments and accuracy vs gold."""
    from ..demo import run_demo

    with _errors(), _progress("demo: labeling", as_json) as update:
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
