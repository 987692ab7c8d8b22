"""Commands for hosted backends: plan, logs; and the hosted flags `label` shares with `plan`."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from ..settings import DEFAULT_BACKEND
from . import DbOpt, JsonOpt, _emit, _errors, _open, app, console, out
from .hosted_opts import ConcurrencyOpt, MaxCostOpt, RedactOpt, SamplesOpt


@app.command()
def plan(
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
    """What `label` would do with the same arguments: users, cache hits, tokens, cost, time, a sample prompt."""
    from ..labeling import plan as plan_run
    from ..schemas import load_taxonomy
    from .core import _label_config

    with _errors():
        tax = load_taxonomy(taxonomy)
        config = _label_config(
            backend, profile, threshold, scorers, budget,
            concurrency=concurrency, max_cost=max_cost, redact=redact, samples=samples,
        )  # fmt: skip
        user_list = [u.strip() for u in users.split(",") if u.strip()] if users else None
        with _open(db) as store:
            result = plan_run(store, tax, config, user_list, limit)
    if as_json:
        data = asdict(result) | {"totals": result.totals}
        out.print_json(json.dumps(data, default=str))
        return
    _plan_tables(result, max_cost)


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


@app.command()
def logs(
    db: DbOpt = "",
    run: Annotated[str | None, typer.Option("--run", help="Only this run id.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user id.")] = None,
    errors: Annotated[bool, typer.Option("--errors", help="Only failed calls.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Newest N calls.")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Every call: model, prompt hash, tokens, latency, attempts, cost, cache hit, error."""
    from ..store.hosted import call_log

    with _errors(), _open(db) as store:
        rows = call_log(store, run, user, errors, limit)
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    _emit([_log_row(r) for r in rows], False, f"Calls ({len(rows)}, newest first)")


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
