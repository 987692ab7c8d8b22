"""Commands for the student model: distill, score, export, review, explain."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .common import (
    DbOpt,
    JsonOpt,
    app,
    clip,
    errors,
    esc,
    note,
    open_store,
    out,
    plain,
    print_json,
    progress,
    show_table,
)

review_app = typer.Typer(
    no_args_is_help=True, help="Human review loop: export uncertain users, import corrections."
)
app.add_typer(review_app, name="review")

RunOpt = Annotated[str, typer.Option("--run", help="A label run or an eval run id.")]
MinConfOpt = Annotated[
    float,
    typer.Option("--min-confidence", min=0.0, max=1.0, help="Leave out labels below this confidence (0..1)."),
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
        note(f"distilling run {run} ...")
        report = run_distill(store, run, out_path, DistillConfig(min_confidence, self_train=self_train))
    if as_json:
        print_json(asdict(report))
        return
    _distill_summary(report)


def _distill_summary(r: Any) -> None:
    out.print(
        f"model [bold]{esc(r.model_path)}[/] (version {esc(r.model_version)}) from run {esc(r.run_id)}: "
        f"{r.n_train} users trained on, excluded {esc(r.excluded or 'none')}, review corrections {r.reviewed}, "
        f"self-training dropped {r.self_train_dropped} · fit {r.fit_s} s"
    )
    cv = r.cv
    if "accuracy" in cv:
        out.print(
            f"[bold]student vs LLM labels[/] (cross-validated, {cv['n']} users): accuracy {cv['accuracy']:.3f} · "
            f"kappa {cv['kappa']:.3f} · macro-F1 {cv['macro_f1']:.3f}"
        )
    else:
        out.print(f"student vs LLM labels: {esc(cv.get('note'))}")
    g = r.gold
    if not g:
        out.print("no gold labels for these users: no gold figures")
        return
    table = Table(title=f"vs gold on the same {g['n']} users (student out-of-fold)")
    for col in ("segment", "support", "student F1", "LLM F1"):
        table.add_column(col, justify="left" if col == "segment" else "right")
    for seg, row in g["per_segment"].items():
        table.add_row(plain(seg), str(row["support"]), f"{row['student_f1']:.3f}", f"{row['llm_f1']:.3f}")
    show_table(table)
    # The overall figures are accuracy and macro-F1, not an F1 per segment: their own columns, their own table.
    overall = Table(title=f"overall vs gold ({g['n']} users)")
    for col in ("who", "users", "accuracy", "macro-F1"):
        overall.add_column(col, justify="left" if col == "who" else "right")
    for who in ("student", "llm"):
        m = g[who]
        overall.add_row(f"{who} overall", str(m["n"]), f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}")
    show_table(overall)


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
        float,
        typer.Option(
            "--margin", min=0.0, max=1.0, help="Top-two probability margin below which the LLM decides."
        ),
    ] = 0.1,
    full: Annotated[
        bool, typer.Option("--full", help="Rescore everyone, not only users whose history changed.")
    ] = False,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Batches featurized at once.")] = 2,
    processes: Annotated[
        bool, typer.Option("--processes", help="Featurize in forked processes instead of threads.")
    ] = False,
    as_json: JsonOpt = False,
    input_glob: Annotated[
        str | None,
        typer.Option(
            "--input",
            help="Score Parquet event files (path, folder, glob or s3:// URI) instead of the store; --out is a folder.",
        ),
    ] = None,
    shard: Annotated[
        str | None, typer.Option("--shard", help="With --input: this shard I/N of the work (I from 0).")
    ] = None,
    split: Annotated[
        str,
        typer.Option(
            "--split", help="With --shard: share out the input 'files', or the 'users' of every file."
        ),
    ] = "files",
    engine: Annotated[
        str,
        typer.Option("--engine", help="With --input: 'duckdb' (in this process) or 'spark' (spark-submit)."),
    ] = "duckdb",
) -> None:
    """Score users in bulk with a student (streaming from DuckDB); optionally let the LLM decide the uncertain ones."""
    from ..student.scoring import score_users, taxonomy_arg

    if input_glob is not None:
        from .scale import score_input

        store_only = {"--db": db, "--users": users, "--llm-fallback": llm_fallback, "--full": full}
        given = [flag for flag, value in store_only.items() if value]
        score_input(input_glob, model, out_path, shard, split, engine, taxonomy, as_json, given)
        return
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
        print_json(asdict(report))
        return
    _score_summary(report)


def _score_summary(r: Any) -> None:
    out.print(
        f"scored [bold]{r.scored}[/] of {r.users_in_filter} users ({r.unchanged} unchanged since this model last "
        f"scored them, {r.docs_rebuilt} history docs rebuilt) in {r.wall_s} s · {r.users_per_s:,.0f} users/s · "
        f"model {esc(r.model_version)} · run {esc(r.run_id)}"
    )
    if r.segments:
        ranked = sorted(r.segments.items(), key=lambda kv: -kv[1])
        out.print("  " + " · ".join(f"{esc(k)} {v}" for k, v in ranked))
    f = r.fallback
    if f:
        cost = f" · ${f.cost_usd:.4f}" if f.cost_usd is not None else ""
        out.print(
            f"LLM fallback ({esc(f.backend)}, margin < {f.margin}): sent [bold]{f.sent}[/] of {r.users_in_filter} "
            f"users · {f.calls} new calls, {f.cache_hits} cache hits, {f.failed_calls} failed · "
            f"{f.prompt_tokens} prompt + {f.completion_tokens} completion tokens · LLM {f.llm_s} s, wall {f.wall_s} s{cost} · "
            f"{f.replaced} labels replaced"
        )
    for name, m in _score_figures(r).items():
        if m:
            out.print(
                f"[bold]{esc(name)}[/] ({m['n']} users): accuracy {m['accuracy']:.3f} · "
                f"macro-F1 {m['macro_f1']:.3f} · kappa {m['kappa']:.3f}"
            )
    if r.out:
        out.print(f"wrote {r.rows_out} rows to {esc(r.out)}")


def _score_figures(r: Any) -> dict[str, Any]:
    """Each figure named with the users it is measured on: the training run's users are in-sample."""
    figures = {}
    for key, m in r.gold.items():
        if "outside the training run" in key:
            who = key.replace(" on users outside the training run", "")
            figures[f"{who} vs gold, users outside the training run (out-of-sample)"] = m
        else:
            figures[f"{key} vs gold, all scored users (in-sample: includes the training run's users)"] = m
    # The source run's users are the student's training set: only a sanity check (distill prints the
    # cross-validated agreement).
    for key, m in r.agreement.items():
        figures[f"{key} vs LLM labels of the training run (in-sample)"] = m
    return figures


@app.command()
def export(
    run: RunOpt,
    out_path: Annotated[Path, typer.Option("--out", help="FILE.parquet, FILE.csv or FILE.jsonl")],
    db: DbOpt = "",
    min_confidence: MinConfOpt = 0.0,
    as_json: JsonOpt = False,
) -> None:
    """Export a run's labels (review corrections applied) to train your own models."""
    from ..student.review import export_labels

    with errors(), open_store(db, read_only=True) as store:
        n = export_labels(store, run, out_path, min_confidence)
    if as_json:
        print_json({"run_id": run, "labels": n, "out": str(out_path)})
        return
    out.print(f"wrote {n} labels to {esc(out_path)}")


@review_app.command("export")
def review_export(
    run: RunOpt,
    out_path: Annotated[
        Path,
        typer.Option(
            "--out",
            help="Review file: .csv (a spreadsheet) or .json (Label Studio tasks; FILE.label_config.xml is written beside it).",
        ),
    ],
    db: DbOpt = "",
    n: Annotated[int, typer.Option("--n", min=1, help="How many users.")] = 50,
    sample: Annotated[str, typer.Option("--sample", help="least-confident | random")] = "least-confident",
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random sample.")] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Write the least confident (or a random audit sample of) users for review: a CSV to fill in, or Label Studio tasks."""
    from ..student.review import label_config_path
    from ..student.review import review_export as run_export

    with errors(), open_store(db, read_only=True) as store:
        k = run_export(store, run, out_path, n, sample, seed)
    config = label_config_path(out_path) if out_path.suffix.lower() == ".json" else None
    if as_json:
        print_json(
            {"run_id": run, "users": k, "out": str(out_path)}
            | ({"label_config": str(config)} if config else {})
        )
        return
    if config is not None:
        out.print(
            f"wrote {k} users to {esc(out_path)} and the labeling config to {esc(config)}: create a Label Studio "
            "project with that config, import the tasks, review, export as JSON, then "
            "`llm-labeler review import EXPORT.json`"
        )
        return
    out.print(
        f"wrote {k} users to {esc(out_path)}: fill in correct_segment, then "
        f"`llm-labeler review import {esc(out_path)}`"
    )


@review_app.command("import")
def review_import(
    path: Annotated[
        Path,
        typer.Argument(
            help="A reviewed CSV from `review export`, or Label Studio's JSON export of its tasks."
        ),
    ],
    db: DbOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Read corrections back as gold labels; they override the LLM's in the next distill and export."""
    from ..student.review import review_import as run_import

    with errors(), open_store(db) as store:
        res = run_import(store, path)
    if as_json:
        print_json(dict(res) | {"path": str(path)})
        return
    out.print(f"imported {res['imported']} corrections ({res['rows']} reviewed rows/tasks) from {esc(path)}")


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

    with errors(), open_store(db, read_only=True) as store:
        e = explain_user(store, user_id, model)
    if as_json:
        print_json(asdict(e))
        return
    table = Table(
        title=f"{esc(user_id)}: student says {esc(e.student_segment)} ({e.student_probability:.2f})"
    )
    table.add_column("student: n-gram")
    table.add_column("weight", justify="right")
    for text, w in e.top_features:
        table.add_row(plain(clip(text, 80)), f"{w:.3f}")
    show_table(table)
    if e.llm:
        out.print(
            f"LLM ({esc(e.llm['run_id'])}): {esc(e.llm['primary_segment'] or '(abstain)')} "
            f"confidence {e.llm['confidence']:.2f} {esc(clip(e.llm.get('rationale') or '', 500))}"
        )
        for ev in e.evidence:
            out.print(
                f"  evidence {esc(ev['item_id'])}: {esc(clip(ev['item_title'] or '', 120))} — "
                f"{esc(clip(ev['text'] or '', 120))}"
            )
    else:
        out.print("no LLM label for this user")
