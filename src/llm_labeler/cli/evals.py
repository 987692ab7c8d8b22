"""Commands for evaluation suites: eval run / compare / report."""

from __future__ import annotations

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
