"""Commands around the label run: ingest, label (--dry-run) / plan, demo."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from ..errors import InputError
from ..segments.base import DEFAULT_CALIBRATION
from ..settings import DEFAULT_BACKEND, setting
from .common import (
    DbOpt,
    JsonOpt,
    app,
    emit,
    errors,
    esc,
    note,
    open_store,
    out,
    plain,
    print_json,
    print_wide,
    progress,
    show_table,
    warn,
)

# The calibration each scorer gets when --scorers names no other: the same as the default combination's
# (labeling.prepare.default_specs), so `--scorers llm=0.3,embedding=1` is the default, spelled out.
CALIBRATIONS = ("batch", "none")
_SCORER = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)\s*(?:=\s*(?P<weight>[^:]*?))?\s*(?::\s*(?P<cal>\S*))?$")

ConcurrencyOpt = Annotated[
    int | None,
    typer.Option(
        "--concurrency",
        min=1,
        help="Parallel calls for hosted backends (paced by ?rpm=/?tpm=; default 1 or the config's `concurrency`).",
    ),
]
MaxCostOpt = Annotated[
    float | None,
    typer.Option(
        "--max-cost", min=0.0, help="USD budget: stop cleanly before a call could cross it (price table)."
    ),
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
    encoding: Annotated[
        str,
        typer.Option(
            "--encoding", help="Text encoding of CSV/JSONL files (utf-8, latin-1, cp1252, utf-16, ...)."
        ),
    ] = "utf-8",
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Reject a file with any row that has neither item_title nor text (default: skip and count them).",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Load user events into the store (one transaction per file; re-ingesting adds no duplicates)."""
    with errors():
        maps = _parse_map(mapping or [])
        results = []
        with open_store(db) as store:
            for f in files:
                results.append(store.ingest(f, fmt, maps, encoding=encoding, strict=strict))
    rows = [
        {
            "file": r.path,
            "format": r.format,
            "rows": r.rows_read,
            "added": r.rows_added,
            "duplicates": r.duplicates,
            "skipped": r.rows_skipped,
            "users": r.users_touched,
            "languages": r.languages,
        }
        for r in results
    ]
    for r in results:
        if r.rows_skipped:
            shown = ", ".join(map(str, r.skipped_rows))
            warn(
                f"{r.path}: skipped {r.rows_skipped} row(s) with neither item_title nor text (rows {shown}...); --strict refuses such files"
            )
    if not as_json:  # one cell per file: "zh 400, latin 3" (users the file touched, per language)
        rows = [row | {"languages": _languages_text(r.languages)} for row, r in zip(rows, results)]
    emit(rows, as_json, "Ingested")


def _languages_text(mix: dict[str, int]) -> str:
    """A language mix (language -> users) as `zh 400, latin 3`, most users first."""
    return ", ".join(f"{lang} {n}" for lang, n in mix.items()) or "none"


def _parse_map(items: list[str]) -> dict[str, str]:
    out_map = {}
    for item in items:
        src, sep, dst = item.partition("=")
        if not sep or not src or not dst:
            raise InputError(f"--map expects source_col=field, got {item!r}")
        out_map[src.strip()] = dst.strip()
    return out_map


def parse_scorers(scorers: str | None) -> Any:
    """`name[=weight][:calibration],...` as ScorerSpecs (None: the default combination).

    A scorer's calibration defaults to the one the default combination gives it (llm: batch, embedding and
    json: none); `llm=0.3:none` or `embedding=1:batch` choose another.
    """
    from ..segments import ScorerSpec

    if not scorers or not scorers.strip():
        return None
    specs = []
    for part in (p.strip() for p in scorers.split(",")):
        match = _SCORER.match(part)
        if not part or match is None:
            raise InputError(
                f"--scorers expects name[=weight][:calibration],..., got {part!r} in {scorers!r}"
            )
        name, weight, cal = match["name"], (match["weight"] or "").strip(), match["cal"]
        try:
            value = float(weight) if weight else 1.0
        except ValueError:
            raise InputError(f"--scorers: the weight of {name} must be a number, got {weight!r}") from None
        cal = cal or DEFAULT_CALIBRATION.get(name, "batch")
        if cal not in CALIBRATIONS:
            raise InputError(
                f"--scorers: calibration of {name} must be one of {', '.join(CALIBRATIONS)}, got {cal!r}"
            )
        specs.append(ScorerSpec(name, value, cal))
    return specs


def label(
    ctx: typer.Context,
    taxonomy: Annotated[
        str | None,
        typer.Option(
            "--taxonomy",
            help="Taxonomy YAML file or shipped name (default: $LLM_LABELER_TAXONOMY or the config's `taxonomy`).",
        ),
    ] = None,
    db: DbOpt = "",
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help=f"Backend id (default: $LLM_LABELER_BACKEND, the config's `backend`, {DEFAULT_BACKEND}).",
        ),
    ] = None,
    users: Annotated[str | None, typer.Option("--users", help="Comma-separated user ids.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Label the first N users.")] = None,
    profile: Annotated[
        bool, typer.Option("--profile/--no-profile", help="Also write interest profiles.")
    ] = False,
    threshold: Annotated[
        float | None,
        typer.Option(
            "--threshold", min=0.0, max=1.0, help="Abstain below this confidence (0..1, default 0)."
        ),
    ] = None,
    scorers: Annotated[
        str | None,
        typer.Option(
            "--scorers",
            help="name[=weight][:calibration],... e.g. 'llm=0.3,embedding=1' or 'llm=1:none' (default: auto; "
            "calibration batch|none, default as in the default combination: llm and multilingual batch, "
            "embedding/json none)",
        ),
    ] = None,
    embedding: Annotated[
        str | None,
        typer.Option(
            "--embedding",
            help="Embedding model of Latin-script users: embedding:default (all-MiniLM-L6-v2, fast), "
            "nomic:default (nomic-embed-text-v1.5, the [nomic] extra), e5:default.",
        ),
    ] = None,
    multilingual: Annotated[
        str | None,
        typer.Option(
            "--multilingual", help="Embedding model of users of other scripts (default e5:default)."
        ),
    ] = None,
    combination: Annotated[
        str | None,
        typer.Option(
            "--combination",
            help="A combination stored by `eval tune` (its scorers, weights, models and backend), or "
            "'label-model' (every scorer, weighed by their agreement on these users).",
        ),
    ] = None,
    budget: Annotated[
        int | None, typer.Option("--budget-tokens", min=1, help="History tokens per prompt (default 400).")
    ] = None,
    concurrency: ConcurrencyOpt = None,
    max_cost: MaxCostOpt = None,
    redact: RedactOpt = None,
    samples: SamplesOpt = 1,
    answer_language: Annotated[
        str,
        typer.Option(
            "--answer-language",
            help="Language of generated rationales and profiles: English, 'user' (the user's own), or a name.",
        ),
    ] = "English",
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Call no model: show users, cache hits, tokens, cost, time and a sample prompt."
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Label users into the taxonomy's segments; cached answers are reused, so a rerun resumes."""
    from ..labeling import LabelConfig, label_users, plan_run, stored_backend
    from ..schemas import load_taxonomy
    from ..settings import resolve

    with errors():
        tax = load_taxonomy(_taxonomy_arg(taxonomy))
        chosen = setting("backend", backend)
        combination = setting("combination", combination)
        if combination and combination != "label-model" and (scorers or embedding or multilingual):
            raise InputError(
                f"--combination {combination} fixes the scorers and embedding models: leave out --scorers, "
                "--embedding and --multilingual (or --combination)"
            )
        if combination and resolve("backend", backend).source == "default":
            # nobody chose a backend: a stored combination runs on the one it was fitted for
            with open_store(db, read_only=True) as store:
                chosen = stored_backend(store, combination) or chosen
        config = LabelConfig(
            backend=chosen, combination=combination, embedding_backend=setting("embedding", embedding),
            multilingual_backend=setting("multilingual", multilingual), profile=profile, threshold=setting("threshold", threshold),
            scorers=parse_scorers(setting("scorers", scorers)), budget_tokens=setting("budget_tokens", budget),
            concurrency=setting("concurrency", concurrency), max_cost=max_cost, redact=redact, samples=samples,
            answer_language=answer_language,
        )  # fmt: skip
        user_list = [u.strip() for u in users.split(",") if u.strip()] if users else None
        if dry_run or ctx.info_name == "plan":
            with open_store(db, read_only=True) as store:
                planned = plan_run(store, tax, config, user_list, limit)
            _print_plan(planned, max_cost, as_json)
            return
        with open_store(db) as store, progress("labeling", as_json) as update:
            result = label_users(store, tax, config, user_list, limit, progress=update)
            languages = store.languages([lab.user_id for lab in result.labels]) if as_json else {}
    for message in result.warnings:
        warn(message)
    if as_json:
        for lab in result.labels:
            print_json(_label_json(lab) | {"language": languages.get(lab.user_id)}, indent=None)
        return
    _segment_table(tax, result.labels, f"Run {result.run_id}")
    _stats_line(result.stats)
    if not is_local(result.stats):
        hosted_line(result.stats)


def _taxonomy_arg(flag: str | None) -> str:
    value = setting("taxonomy", flag)
    if not value:
        raise InputError(
            "no taxonomy: pass --taxonomy FILE_OR_NAME, set LLM_LABELER_TAXONOMY, or put `taxonomy = ...` in "
            "llm_labeler.toml (`llm-labeler config` shows the settings)"
        )
    return str(value)


app.command("label")(label)
# `plan` is the same command as `label --dry-run`: one function, one option set, registered under both names.
app.command(
    "plan",
    help="What `label` would do with the same arguments (= label --dry-run): users, cache hits, tokens, cost, "
    "time, a sample prompt.",
)(label)


def _print_plan(planned: Any, max_cost: float | None, as_json: bool) -> None:
    if as_json:  # the notes are in the JSON
        data = asdict(planned) | {"totals": planned.totals}
        print_json(data)
        return
    _plan_tables(planned, max_cost)


def _plan_tables(result: Any, max_cost: float | None) -> None:
    for message in result.notes:
        warn(message)
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
        cells = (
            s.scorer, s.model_id, str(s.calls), str(s.cache_hits), str(s.prompt_tokens), str(s.completion_tokens),
            _money(s.cost_usd), _secs(s.seconds), s.basis,
        )  # fmt: skip
        table.add_row(*map(plain, cells))
    t = result.totals
    table.add_row(
        "total", "", str(t["calls"]), str(t["cache_hits"]), str(t["prompt_tokens"]), str(t["completion_tokens"]),
        _money(t["cost_usd"]), _secs(t["seconds"]), f"concurrency {result.concurrency}",
    )  # fmt: skip
    show_table(table)
    if result.redaction or result.redactions:  # only where text would leave the machine, or --redact asked
        red = ", ".join(f"{k} {v}" for k, v in sorted(result.redactions.items())) or "none found"
        out.print(f"redaction {'on' if result.redaction else 'off'}: {esc(red)}")
    if max_cost is not None:
        fits = "unknown (price unknown)" if result.users_within_budget is None else result.users_within_budget
        out.print(f"--max-cost ${max_cost:g}: about {fits} of {result.users} users fit (expected cost)")
    if result.sample_prompt:
        print_wide(
            Panel(plain(result.sample_prompt), title="sample prompt, as it would be sent", expand=False)
        )


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
    table = Table(title=esc(title))
    for col in ("segment", "name", "users", "share", "mean confidence"):
        table.add_column(col, justify="right" if col in ("users", "share", "mean confidence") else "left")
    n = max(len(labels), 1)
    names = {s.id: s.name for s in tax.segments}
    for sid in [*tax.ids, None]:
        confs = [lab.confidence for lab in labels if lab.primary_segment == sid]
        table.add_row(
            plain(sid or "(abstain)"),
            plain(names.get(sid, "—") if sid else tax.abstain.name),
            str(counts.get(sid, 0)),
            f"{counts.get(sid, 0) / n:.1%}",
            f"{sum(confs) / len(confs):.2f}" if confs else "—",
        )
    show_table(table)


def _stats_line(stats: dict[str, Any]) -> None:
    out.print(
        f"users {stats['users']} · LLM/scorer calls {stats['calls']} · cache hits {stats['cache_hits']} · "
        f"failed {stats['failed_calls']} · prompt tokens/user {stats['prompt_tokens_per_user']} · "
        f"{stats['s_per_user']} s/user · wall {stats['wall_s']} s"
        + (f" · languages {esc(_languages_text(stats['languages']))}" if "languages" in stats else "")
    )


def is_local(stats: dict[str, Any]) -> bool:
    """Whether a run's text stayed on the machine (its hosted-only figures would all be zero or off).

    The run's `local` stat when the library gives it; else: nothing was priced, redacted, retried or unpriced.
    """
    if "local" in stats:
        return bool(stats["local"])
    keys = ("cost_usd", "unpriced_calls", "failed_attempts", "retry_wait_s", "redaction", "redactions")
    return not any(stats.get(k) for k in keys)


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
        f"redaction {'on' if stats.get('redaction') else 'off'}: {esc(red_text)}"
    )


@app.command()
def demo(
    db: Annotated[str, typer.Option("--db", help="DuckDB file for the demo.")] = "llm_labeler_demo.duckdb",
    n: Annotated[int, typer.Option("--n", min=1, help="Users to label.")] = 60,
    backend: Annotated[str, typer.Option("--backend", help="Backend id.")] = DEFAULT_BACKEND,
    scorers: Annotated[
        str | None, typer.Option("--scorers", help="As for label (default: the default combination).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Ingest real 20 Newsgroups users, label them on the embedded model, print segments and accuracy vs gold."""
    from ..evals.demo import run_demo

    with errors(), progress("demo: labeling", as_json) as update:
        result = run_demo(db, n, backend, progress=update, log=note, scorers=parse_scorers(scorers))
    if as_json:
        print_json(result.summary)
        return
    _segment_table(
        result.taxonomy, result.run.labels, f"Demo: {n} users of 20 Newsgroups, run {result.run.run_id}"
    )
    _stats_line(result.run.stats)
    s = result.summary
    # A s/user figure means little without the CPU kernels it ran on (AVX2 vs AVX-512 is a 5x difference).
    kernels = s["cpu_kernels"] or f"none: {s['backend']} is not a llama.cpp backend"
    out.print(f"{s['s_per_user']} s/user with llama.cpp CPU kernels: {esc(kernels)}")
    out.print(
        f"[bold]accuracy vs gold {s['accuracy']:.3f} · macro-F1 {s['macro_f1']:.3f}[/] on {s['n_gold']} users "
        f"(source: {esc(s['source'])})"
    )
