"""Commands for evaluation suites: eval run / tune / combinations / compare / report."""

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
    console,
    errors,
    esc,
    open_store,
    out,
    plain,
    print_json,
    progress,
    show_table,
    warn,
)

eval_app = typer.Typer(
    no_args_is_help=True, help="Evaluation suites: gold sets, prompt x model matrix, CI gate."
)
app.add_typer(eval_app, name="eval")

_COLUMNS = (
    "accuracy",
    "macro_f1",
    "micro_f1",
    "kappa",
    "coverage",
    "ece",
    "latency_p50_ms",
    "tokens_per_user",
)
_SHORT = {"latency_p50_ms": "p50 ms", "tokens_per_user": "tokens/user"}


@eval_app.command("run")
def run(
    suite: Annotated[Path, typer.Argument(help="Suite YAML file, e.g. evals/20ng_coarse.yaml.")],
    db: DbOpt = "",
    backend: Annotated[
        list[str] | None, typer.Option("--backend", help="Run on this backend id instead (repeatable).")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N users of the sample.")
    ] = None,
    fail_under: Annotated[
        list[str] | None,
        typer.Option(
            "--fail-under", help="METRIC=VALUE floor for the primary cell (repeatable); exit 1 under it."
        ),
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="Eval run (or EVAL#CELL, or labeling run) that must not be beaten."),
    ] = None,
    taxonomy: Annotated[
        Path | None, typer.Option("--taxonomy", help="Evaluate this taxonomy file instead of the suite's.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run a suite's matrix, store it, print it; exit 1 when the gate fails (naming the metric)."""
    from ..evals import load_suite, parse_fail_under, run_suite

    with errors():
        floors = parse_fail_under(fail_under or [])
        spec = load_suite(suite, {"taxonomy": str(taxonomy.resolve())} if taxonomy else None)
        with open_store(db) as store, progress(f"eval {spec.name}", as_json) as update:
            result = run_suite(store, spec, backend or None, limit, floors, baseline, progress=update)
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json(_result_json(result), indent=None)
    else:
        _print_matrix(result)
    if not result.gate.passed:
        for failure in result.gate.failures:
            console.print(f"[bold red]gate failed:[/] {esc(failure)}")
        raise typer.Exit(1)


def _result_json(result: Any) -> dict[str, Any]:
    from ..evals import flat_metrics

    primary, base = result.primary, result.baseline
    return {
        "run_id": result.eval_id,
        "suite": result.suite.name,
        "n": result.n,
        "calls": result.calls,
        "cache_hits": result.cache_hits,
        "metrics": flat_metrics(primary["metrics"]),
        "covered": primary["metrics"]["covered"],
        "primary": primary["cell"],
        "baseline": {"cell": base["cell"], "metrics": flat_metrics(base["metrics"])} if base else None,
        "matrix": [
            {"cell": c["cell"], "run_id": c["run_id"], "metrics": flat_metrics(c["metrics"])}
            for c in result.cells
        ],
        "gate": result.gate.as_dict(),
        "source": result.source,
    }


def _print_matrix(result: Any) -> None:
    from ..evals.gate import metric_value

    table = Table(title=f"Eval {esc(result.eval_id)}: {esc(result.suite.name)}, {result.n} users")
    table.add_column("cell", no_wrap=True)
    columns = list(dict.fromkeys([*result.suite.metrics, *_COLUMNS]))
    for col in columns:
        table.add_column(_SHORT.get(col, col), justify="right", no_wrap=True)
    table.add_column("covered acc/F1", justify="right", no_wrap=True)
    runs = Table(title="Labeling runs behind the cells (for eval compare)")
    runs.add_column("cell", no_wrap=True)
    runs.add_column("labeling run", no_wrap=True)
    runs.add_column("calls", justify="right")
    runs.add_column("cache hits", justify="right")
    for c in result.cells:
        m = c["metrics"]
        role = " (primary)" if c["is_primary"] else " (baseline)" if c["is_baseline"] else ""
        cov = m["covered"]
        table.add_row(
            plain(c["cell"] + role),
            *[_num(metric_value(m, k)) for k in columns],
            f"{cov['accuracy']:.3f}/{cov['macro_f1']:.3f}",
        )
        runs.add_row(
            plain(c["cell"]),
            plain(c["run_id"]),
            str(c["stats"].get("calls", 0)),
            str(c["stats"].get("cache_hits", 0)),
        )
    # CI logs are not terminals: show_table never squeezes the matrix into 80 columns nor truncates it.
    show_table(table)
    show_table(runs)
    out.print(
        f"data: {esc(result.source)} · calls {result.calls} · cache hits {result.cache_hits} · "
        f"gate {'passed' if result.gate.passed else 'FAILED'}"
    )


def _num(v: float) -> str:
    return f"{v:.3f}" if abs(v) < 100 else f"{v:.0f}"


@eval_app.command("tune")
def tune(
    suite: Annotated[Path, typer.Argument(help="A tune-split suite YAML, e.g. evals/20ng_coarse_tune.yaml.")],
    name: Annotated[str, typer.Option("--name", help="Store the fitted combination under this name.")],
    db: DbOpt = "",
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="logloss: weights + temperature fitted on the gold; label-model: weights from the scorers' "
            "agreement (no gold).",
        ),
    ] = "logloss",
    combination: Annotated[
        str | None,
        typer.Option("--from", help="The suite combination whose scorers are fitted (default: its primary)."),
    ] = None,
    backend: Annotated[
        list[str] | None, typer.Option("--backend", help="Fit for this backend id instead of the suite's.")
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N users of the sample.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Fit a combination's weights on a tune suite's users and store it for `label --combination NAME`."""
    from ..evals import load_suite
    from ..evals.tune import tune_suite

    with errors():
        spec = load_suite(suite)
        with open_store(db) as store, progress(f"tune {spec.name}", as_json) as update:
            result = tune_suite(store, spec, name, method, combination, backend or None, limit, update)
    if as_json:
        print_json(asdict(result), indent=None)
        return
    table = Table(
        title=f"Combination {esc(result.name)} ({result.method}, {result.backend}), {result.n_users} users"
    )
    for col in ("scorer", "calibration", "prior weight", "fitted weight"):
        table.add_column(col, justify="left" if col in ("scorer", "calibration") else "right")
    prior = {s["name"]: s["weight"] for s in result.prior}
    for s in result.fitted:
        table.add_row(
            plain(s["name"]), s["calibration"], f"{prior.get(s['name'], 0):.3f}", f"{s['weight']:.3f}"
        )
    show_table(table)
    scores = Table(
        title="On the users it was fitted on (in-sample: report the held-out suite with fitted: NAME)"
    )
    for col in ("weights", "accuracy", "macro_f1"):
        scores.add_column(col, justify="left" if col == "weights" else "right")
    for label, m in result.metrics.items():
        scores.add_row(plain(label), f"{m['accuracy']:.3f}", f"{m['macro_f1']:.3f}")
    show_table(scores)
    extra = result.details.get("accuracy")
    if extra:
        out.print("label model's estimated accuracy: " + ", ".join(f"{k} {v:.3f}" for k, v in extra.items()))
    out.print(
        f"temperature {result.temperature:.3f} · labeling run {esc(result.run_id)} · "
        f"{'replaced the stored' if result.replaced else 'stored as'} combination {esc(result.name)}: "
        f"label --combination {esc(result.name)}"
    )


@eval_app.command("combinations")
def combinations(db: DbOpt = "", as_json: JsonOpt = False) -> None:
    """The stored combinations: name, method, backend, taxonomy, weights, what they were fitted on."""
    from ..store.combinations import list_combinations

    with errors(), open_store(db, read_only=True) as store:
        rows = list_combinations(store)
    if as_json:
        for r in rows:
            print_json(r, indent=None)
        return
    table = Table(title=f"{len(rows)} stored combinations")
    for col in ("name", "method", "backend", "taxonomy", "weights", "temperature", "fitted on", "created"):
        table.add_column(col)
    for r in rows:
        c, p = r["config"], r["provenance"]
        weights = ", ".join(f"{s['name']} {s['weight']:.2f}" for s in c["scorers"])
        table.add_row(
            plain(r["name"]), r["method"], plain(r["backend"]), plain(r["taxonomy_name"]), weights,
            f"{c['temperature']:.2f}", plain(f"{p.get('suite')} ({p.get('users')} users)"), str(r["created_at"])[:19],
        )  # fmt: skip
    show_table(table)


@eval_app.command("compare")
def compare(
    run_a: Annotated[
        str, typer.Argument(help="Eval run id (primary cell), EVAL_ID#CELL, or labeling run id.")
    ],
    run_b: Annotated[str, typer.Argument(help="The run compared against A (deltas are B - A).")],
    db: DbOpt = "",
    show: Annotated[int, typer.Option("--show", min=0, help="How many flipped users to list.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Metric deltas (B - A) and the users whose label flipped between two runs."""
    from ..evals import compare_runs

    with errors(), open_store(db, read_only=True) as store:
        comp = compare_runs(store, run_a, run_b)
    for message in comp.warnings:
        warn(message)
    if as_json:
        print_json(comp.as_dict(), indent=None)
        return
    table = Table(title=f"B - A on {comp.n_gold} users with gold (A {esc(comp.run_a)}, B {esc(comp.run_b)})")
    for col in ("metric", "A", "B", "delta"):
        table.add_column(col, justify="left" if col == "metric" else "right")
    for r in comp.metrics:
        colour = "green" if r["better"] else "red" if abs(r["delta"]) > 1e-12 else "dim"
        table.add_row(plain(r["metric"]), _num(r["a"]), _num(r["b"]), f"[{colour}]{r['delta']:+.3f}[/]")
    show_table(table)
    out.print(
        f"label flips: {len(comp.flips)} of {comp.n} users ([bold]flip rate {comp.flip_rate:.3f}[/]) · "
        f"fixed {comp.fixed} · broken {comp.broken}"
    )
    if comp.flips and show:
        flips = Table(title=f"First {min(show, len(comp.flips))} flipped users")
        for col in ("user", "gold", "A", "B", "change"):
            flips.add_column(col)
        for f in comp.flips[:show]:
            cells = (f["user_id"], f["gold"] or "", f["a"] or "(abstain)", f["b"] or "(abstain)", f["change"])
            flips.add_row(*map(plain, cells))
        show_table(flips)


@eval_app.command("report")
def report(
    run_id: Annotated[str, typer.Argument(help="Eval run id.")],
    html: Annotated[
        Path,
        typer.Option(
            "--html", help="Write the self-contained HTML report to this file (a folder: FOLDER/report.html)."
        ),
    ],
    db: DbOpt = "",
    as_json: JsonOpt = False,
) -> None:
    """Write an HTML page with the matrix, confusion heatmaps and reliability plots (opens offline)."""
    from ..evals import render_report

    with errors(), open_store(db, read_only=True) as store:
        page = render_report(store, run_id)
    target = report_path(html)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page, encoding="utf-8")
    if as_json:
        print_json({"run_id": run_id, "html": str(target), "bytes": len(page)})
        return
    out.print(f"wrote {esc(target)} ({len(page):,} bytes)")


def report_path(html: Path) -> Path:
    """--html as given, or FOLDER/report.html when it names an existing folder."""
    if html.is_dir():
        return html / "report.html"
    return html
