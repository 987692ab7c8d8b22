"""Commands for the student model: distill, score, export, review, explain."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .common import DbOpt, JsonOpt, app, console, errors, open_store, out, progress

review_app = typer.Typer(
    no_args_is_help=True, help="Human review loop: export uncertain users, import corrections."
)
app.add_typer(review_app, name="review")

RunOpt = Annotated[str, typer.Option("--run", help="A label run or an eval run id.")]
MinConfOpt = Annotated[
    float, typer.Option("--min-confidence", help="Leave out labels below this confidence.")
]


@app.command()
def distill(
    run: RunOpt,
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the model (.skops).")],
    db: DbOpt = "",
    min_confidence: MinConfOpt = 0.0,
    self_train: Annotated[
        bool, typer.Option("--self-train", help="Retrain on users where the student agrees with the LLM.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Train a student classifier on a run's LLM labels; prints cross-validated agreement and gold figures."""
    from ..student.distill import DistillConfig
    from ..student.distill import distill as run_distill

    with errors(), open_store(db) as store:
        console.print(f"[dim]distilling run {run} ...[/]")
        report = run_distill(store, run, out_path, DistillConfig(min_confidence, self_train=self_train))
    if as_json:
        out.print_json(json.dumps(asdict(report), default=str))
        return
    _distill_summary(report)


def _distill_summary(r: Any) -> None:
    out.print(
        f"model [bold]{r.model_path}[/] (version {r.model_version}) from run {r.run_id}: {r.n_train} users "
        f"trained on, excluded {r.excluded or 'none'}, review corrections {r.reviewed}, "
        f"self-training dropped {r.self_train_dropped} · fit {r.fit_s} s"
    )
    cv = r.cv
    if "accuracy" in cv:
        out.print(
            f"[bold]student vs LLM labels[/] (cross-validated, {cv['n']} users): accuracy {cv['accuracy']:.3f} · "
            f"kappa {cv['kappa']:.3f} · macro-F1 {cv['macro_f1']:.3f}"
        )
    else:
        out.print(f"student vs LLM labels: {cv.get('note')}")
    g = r.gold
    if not g:
        out.print("no gold labels for these users: no gold figures")
        return
    table = Table(title=f"vs gold on the same {g['n']} users (student out-of-fold)")
    for col in ("segment", "support", "student F1", "LLM F1"):
        table.add_column(col, justify="left" if col == "segment" else "right")
    for seg, row in g["per_segment"].items():
        table.add_row(seg, str(row["support"]), f"{row['student_f1']:.3f}", f"{row['llm_f1']:.3f}")
    for who in ("student", "llm"):
        m = g[who]
        table.add_row(
            f"[bold]{who} overall[/]",
            str(m["n"]),
            f"acc {m['accuracy']:.3f}",
            f"macro-F1 {m['macro_f1']:.3f}",
        )
    out.print(table)


@app.command()
def score(
    model: Annotated[Path, typer.Option("--model", help="A model written by distill.")],
    db: DbOpt = "",
    users: Annotated[
        str | None, typer.Option("--users", help='SQL condition on the users table, e.g. "n_events >= 5".')
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Also write the scores to this Parquet file.")
    ] = None,
    taxonomy: Annotated[
        Path | None, typer.Option("--taxonomy", help="Refuse the model unless it was made for this taxonomy.")
    ] = None,
    llm_fallback: Annotated[
        str | None, typer.Option("--llm-fallback", help="Backend id for users the student is unsure about.")
    ] = None,
    margin: Annotated[
        float, typer.Option("--margin", help="Top-two probability margin below which the LLM decides.")
    ] = 0.1,
    full: Annotated[
        bool, typer.Option("--full", help="Rescore everyone, not only users whose history changed.")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", help="Batches featurized at once.")] = 2,
    processes: Annotated[
        bool, typer.Option("--processes", help="Featurize in forked processes instead of threads.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Score users in bulk with a student (streaming from DuckDB); optionally let the LLM decide the uncertain ones."""
    from ..student.scoring import score_users, taxonomy_arg

    with errors(), open_store(db) as store, progress("scoring", as_json) as update:
        report = score_users(
            store,
            model,
            taxonomy_arg(taxonomy),
            users,
            out_path,
            llm_fallback,
            margin,
            full,
            workers=workers,
            progress=update,
            processes=processes,
        )
    if as_json:
        out.print_json(json.dumps(asdict(report), default=str))
        return
    _score_summary(report)


def _score_summary(r: Any) -> None:
    out.print(
        f"scored [bold]{r.scored}[/] of {r.users_in_filter} users ({r.unchanged} unchanged since this model last "
        f"scored them, {r.docs_rebuilt} history docs rebuilt) in {r.wall_s} s · {r.users_per_s:,.0f} users/s · "
        f"model {r.model_version} · run {r.run_id}"
    )
    if r.segments:
        out.print("  " + " · ".join(f"{k} {v}" for k, v in sorted(r.segments.items(), key=lambda kv: -kv[1])))
    f = r.fallback
    if f:
        cost = f" · ${f.cost_usd:.4f}" if f.cost_usd is not None else ""
        out.print(
            f"LLM fallback ({f.backend}, margin < {f.margin}): sent [bold]{f.sent}[/] of {r.users_in_filter} users · "
            f"{f.calls} new calls, {f.cache_hits} cache hits, {f.failed_calls} failed · "
            f"{f.prompt_tokens} prompt + {f.completion_tokens} completion tokens · LLM {f.llm_s} s, wall {f.wall_s} s{cost} · "
            f"{f.replaced} labels replaced"
        )
    for name, m in {
        **{f"{k} vs gold": v for k, v in r.gold.items()},
        # The source run's users are the student's training set: in-sample, so only a sanity check (distill
        # prints the cross-validated agreement).
        **{f"{k} vs LLM labels of the training run (in-sample)": v for k, v in r.agreement.items()},
    }.items():
        if m:
            out.print(
                f"[bold]{name}[/] ({m['n']} users): accuracy {m['accuracy']:.3f} · macro-F1 {m['macro_f1']:.3f} · "
                f"kappa {m['kappa']:.3f}"
            )
    if r.out:
        out.print(f"wrote {r.rows_out} rows to {r.out}")


@app.command()
def export(
    run: RunOpt,
    out_path: Annotated[Path, typer.Option("--out", help="FILE.parquet, FILE.csv or FILE.jsonl")],
    db: DbOpt = "",
    min_confidence: MinConfOpt = 0.0,
) -> None:
    """Export a run's labels (review corrections applied) to train your own models."""
    from ..student.review import export_labels

    with errors(), open_store(db) as store:
        n = export_labels(store, run, out_path, min_confidence)
    out.print(f"wrote {n} labels to {out_path}")


@review_app.command("export")
def review_export(
    run: RunOpt,
    out_path: Annotated[Path, typer.Option("--out", help="CSV file for reviewers.")],
    db: DbOpt = "",
    n: Annotated[int, typer.Option("--n", help="How many users.")] = 50,
    sample: Annotated[str, typer.Option("--sample", help="least-confident | random")] = "least-confident",
    seed: Annotated[int, typer.Option("--seed")] = 0,
) -> None:
    """Write the least confident (or a random audit sample of) users to CSV; fill in correct_segment."""
    from ..student.review import review_export as run_export

    with errors(), open_store(db) as store:
        k = run_export(store, run, out_path, n, sample, seed)
    out.print(
        f"wrote {k} users to {out_path}: fill in correct_segment, then `llm-labeler review import {out_path}`"
    )


@review_app.command("import")
def review_import(
    path: Annotated[Path, typer.Argument(help="A reviewed CSV from `review export`.")],
    db: DbOpt = "",
) -> None:
    """Read corrections back as gold labels; they override the LLM's in the next distill and export."""
    from ..student.review import review_import as run_import

    with errors(), open_store(db) as store:
        res = run_import(store, path)
    out.print(f"imported {res['imported']} corrections ({res['rows']} filled rows) from {path}")


@app.command()
def explain(
    user_id: Annotated[str, typer.Argument(help="User id.")],
    db: DbOpt = "",
    model: Annotated[
        Path | None, typer.Option("--model", help="Model file (default: the newest distilled).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """The student's top features for a user's segment, next to the LLM's label and evidence."""
    from ..student.review import explain_user

    with errors(), open_store(db) as store:
        e = explain_user(store, user_id, model)
    if as_json:
        out.print_json(json.dumps(asdict(e), default=str))
        return
    table = Table(title=f"{user_id}: student says {e.student_segment} ({e.student_probability:.2f})")
    table.add_column("student: n-gram")
    table.add_column("weight", justify="right")
    for text, w in e.top_features:
        table.add_row(text, f"{w:.3f}")
    out.print(table)
    if e.llm:
        out.print(
            f"LLM ({e.llm['run_id']}): {e.llm['primary_segment'] or '(abstain)'} "
            f"confidence {e.llm['confidence']:.2f} {e.llm.get('rationale') or ''}"
        )
        for ev in e.evidence:
            out.print(f"  evidence {ev['item_id']}: {ev['item_title'] or ''} — {(ev['text'] or '')[:120]}")
    else:
        out.print("no LLM label for this user")
