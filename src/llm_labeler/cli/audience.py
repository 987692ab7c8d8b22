"""Commands for audience sizes: shares (segment shares with intervals) and report (the audience page)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from .common import DbOpt, JsonOpt, app, errors, esc, note, open_store, out, plain, print_json, show_table

GoldOpt = Annotated[
    str,
    typer.Option(
        "--gold",
        help="Gold users: 'reviewed' (from review import) or a condition on the gold table, "
        "e.g. \"source LIKE 'eval suite%'\".",
    ),
]
LevelOpt = Annotated[
    float, typer.Option("--level", min=0.5, max=0.999, help="Confidence level of the intervals.")
]


@app.command()
def shares(
    db: DbOpt = "",
    run: Annotated[str | None, typer.Option("--run", help="A label run or an eval run id.")] = None,
    scores: Annotated[
        bool,
        typer.Option("--scores", help="Count a student's bulk scores (the scores table) instead of a run."),
    ] = False,
    model: Annotated[
        str | None, typer.Option("--model", help="With --scores: the model version (default: the newest).")
    ] = None,
    gold: GoldOpt = "reviewed",
    level: LevelOpt = 0.95,
    method: Annotated[
        str, typer.Option("--method", help="The headline estimate: ppi, classical or naive.")
    ] = "ppi",
    as_json: JsonOpt = False,
) -> None:
    """Segment shares: naive label counts, gold-only and prediction-powered estimates with intervals."""
    from ..audience import METHODS, estimate_shares, run_population, scores_population
    from ..errors import InputError

    with errors(), open_store(db, read_only=True) as store:
        if method not in METHODS:
            raise InputError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
        if (run is None) == (not scores):
            raise InputError("give exactly one of --run RUN or --scores")
        pop = run_population(store, run) if run else scores_population(store, model)
        result = estimate_shares(store, pop, gold, level)
    if as_json:
        for seg in result.segments:
            print_json(seg.as_json(), indent=None)
        return
    _shares_table(result, method)
    note("the intervals hold when the reviewed users are a random sample (review export --sample random)")


def _iv(iv: Any) -> str:
    return f"{iv.estimate:.1%} [{iv.lo:.1%}, {iv.hi:.1%}]"


def _shares_table(result: Any, method: str) -> None:
    table = Table(
        title=esc(
            f"segment shares of {result.source}: {result.n} users, {result.n_gold} gold ({result.gold}), "
            f"{result.level:.0%} intervals"
        )
    )
    for col in ("segment", "naive", "classical (gold only)", "PPI"):
        bold = {"naive": "naive", "classical": "classical (gold only)", "ppi": "PPI"}[method] == col
        table.add_column(f"[bold]{col}[/]" if bold else col, justify="left" if col == "segment" else "right")
    for s in result.segments:
        table.add_row(plain(s.segment), f"{s.naive.estimate:.1%}", _iv(s.classical), _iv(s.ppi))
    show_table(table)


@app.command()
def report(
    run: Annotated[str, typer.Option("--run", help="A label run or an eval run id.")],
    html: Annotated[Path, typer.Option("--html", help="Write the self-contained HTML page to this file.")],
    db: DbOpt = "",
    baseline: Annotated[
        str | None, typer.Option("--baseline", help="An earlier run: what moved since (shares, switchers).")
    ] = None,
    gold: GoldOpt = "reviewed",
    level: LevelOpt = 0.95,
    as_json: JsonOpt = False,
) -> None:
    """Write an audience page: segment sizes with intervals, terms, exemplars, confidence, changes (offline)."""
    from ..audience import render_audience_report

    with errors(), open_store(db, read_only=True) as store:
        page = render_audience_report(store, run, baseline=baseline, gold=gold, level=level)
    target = html / "audience.html" if html.is_dir() else html
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page.html, encoding="utf-8")
    if as_json:
        print_json({"run_id": page.run_id, "html": str(target), "bytes": len(page.html), "notes": page.notes})
        return
    out.print(f"wrote {esc(target)} ({len(page.html):,} bytes)")
    for line in page.notes:
        out.print(f"note: {esc(line)}")
