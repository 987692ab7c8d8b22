"""Commands that read the store: show, runs, logs; and config (each setting's value and where it came from)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import LabelerError
from ..settings import CONFIG_FILE, PYPROJECT_TABLE, all_settings, config_file
from .common import (
    DbOpt,
    JsonOpt,
    app,
    clip,
    emit,
    errors,
    esc,
    open_store,
    out,
    plain,
    print_json,
    show_table,
)


@app.command()
def show(
    user_id: Annotated[str, typer.Argument(help="User id.")],
    db: DbOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """A user's latest segments, confidence, evidence and profile."""

    with errors(), open_store(db, read_only=True) as store:
        store.user_ids([user_id])
        lab = store.latest_label(user_id)
        if lab is None:
            raise LabelerError(f"user {user_id} has no label yet; run label")
        prof = lab.get("profile") or {}
        wanted = [
            *(lab["evidence"] or []),
            *(e for it in prof.get("interests", []) for e in it.get("evidence", [])),
        ]
        items = _evidence_items(store.event_snippets(user_id, list(dict.fromkeys(wanted))))
    evidence = [
        items.get(i, {"item_id": i, "item_title": None}) for i in dict.fromkeys(lab["evidence"] or [])
    ]
    if as_json:
        print_json(lab | {"evidence_items": evidence})
        return
    _show_table(user_id, lab, evidence, items)


def _evidence_items(snippets: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """item id -> its title (or the start of its text): one entry per item, however often the user met it."""
    items: dict[str, dict[str, Any]] = {}
    for s in snippets:
        title = s.get("item_title") or s.get("text")
        if s["item_id"] not in items or (title and not items[s["item_id"]]["item_title"]):
            items[s["item_id"]] = {"item_id": s["item_id"], "item_title": title}
    return items


def _item_text(item: dict[str, Any]) -> str:
    title = item.get("item_title")
    return f"{clip(title, 120)} ({item['item_id']})" if title else f"{item['item_id']} (not in the store)"


def _show_table(
    user_id: str, lab: dict[str, Any], evidence: list[dict[str, Any]], items: dict[str, Any]
) -> None:
    table = Table(title=f"User {esc(user_id)} (run {esc(lab['run_id'])})", show_header=False)
    primary = lab["primary_segment"] or f"(abstain: {lab['abstain_reason']})"
    probs = sorted((lab["probabilities"] or {}).items(), key=lambda kv: -kv[1])
    rows: list[tuple[str, str]] = [
        ("primary", primary),
        ("confidence", f"{lab['confidence']:.3f}"),
        ("segments", ", ".join(lab["segments"] or [])),
        ("probabilities", "  ".join(f"{k} {v:.2f}" for k, v in probs)),
        ("rationale", clip(lab["rationale"] or "", 500)),
        ("evidence", "\n".join(_item_text(e) for e in evidence)),
    ]
    prof = lab.get("profile")
    if prof:
        rows.append(("profile", clip(prof.get("summary", ""), 500)))
        for it in prof.get("interests", []):
            shown = "; ".join(
                _item_text(items.get(e, {"item_id": e, "item_title": None}))
                for e in dict.fromkeys(it.get("evidence", []))
            )
            rows.append(("", f"{clip(it['topic'], 80)} ({it['weight']:.2f}) ← {shown}"))
    rows += [
        ("model", lab["model_id"]),
        ("prompt", f"{lab['prompt_name']}@{lab['prompt_version']} {lab['prompt_hash'][:12]}"),
        ("taxonomy", f"{lab['taxonomy_name']} {lab['taxonomy_hash'][:12]}"),
    ]
    for key, value in rows:
        table.add_row(key, plain(value))
    show_table(table)


@app.command()
def runs(
    db: DbOpt = "",
    as_json: JsonOpt = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N runs.")] = 20,
) -> None:
    """Recent runs with their status and statistics."""
    with errors(), open_store(db, read_only=True) as store:
        rows = store.recent_runs(limit)
    for r in rows:
        stats = r.pop("stats") or {}
        r.update({k: stats.get(k) for k in ("users", "calls", "cache_hits", "s_per_user")})
    emit(rows, as_json, "Runs")


@app.command()
def logs(
    db: DbOpt = "",
    run: Annotated[str | None, typer.Option("--run", help="Only this run id.")] = None,
    user: Annotated[str | None, typer.Option("--user", help="Only this user id.")] = None,
    errors_only: Annotated[bool, typer.Option("--errors", help="Only failed calls.")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N calls.")] = 200,
    as_json: JsonOpt = False,
) -> None:
    """Every call: model, prompt hash, tokens, latency, attempts, cost, cache hit, error."""
    from ..store.calls import call_log

    with errors(), open_store(db, read_only=True) as store:
        rows = call_log(store, run, user, errors_only, limit)
    if as_json:
        print_json(rows)
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


@app.command("config")
def config(as_json: JsonOpt = False) -> None:
    """The settings the commands default to and where each came from: a flag beats $LLM_LABELER_*, which beats
    the config file (./llm_labeler.toml, else the tool.llm_labeler table of ./pyproject.toml), then the default."""
    with errors():
        found = config_file()
        rows = all_settings()
    if as_json:
        data = {
            "config_file": str(found.path) if found else None,
            "settings": {r.key: {"value": r.value, "source": r.source} for r in rows},
        }
        print_json(data)
        return
    table = Table(title="Settings (a flag on the command line beats all of these)")
    for col in ("setting", "value", "source", "what"):
        table.add_column(col)
    for r in rows:
        table.add_row(r.key, plain("" if r.value is None else r.value), plain(r.source), plain(r.help))
    show_table(table)
    where = (
        esc(found.label) if found else f"none (./{CONFIG_FILE} or [{PYPROJECT_TABLE}] in ./pyproject.toml)"
    )
    out.print(f"config file: {where}")
