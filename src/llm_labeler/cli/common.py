"""What every command shares: the consoles, the common options, error and progress handling, tables."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as ProgressBar
from rich.table import Table

from ..errors import LabelerError
from ..settings import default_db_path
from ..store import Store

__all__ = ["DbOpt", "JsonOpt", "app", "console", "emit", "errors", "open_store", "out", "progress"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Label recommender-system users into taxonomy segments with an LLM.",
)
console = Console(stderr=True)
out = Console()

DbOpt = Annotated[
    str, typer.Option("--db", help="DuckDB file (default ./llm_labeler.duckdb or $LLM_LABELER_DB).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextmanager
def errors() -> Iterator[None]:
    """Our errors become one clear line and exit code 2; nothing else is swallowed."""
    try:
        yield
    except LabelerError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc


@contextmanager
def progress(label: str, quiet: bool) -> Iterator[Callable[[Any], None]]:
    """A rich progress bar fed by the library's progress events (nothing when quiet)."""
    if quiet:
        yield lambda p: None
        return
    bar = ProgressBar(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("cache hits: {task.fields[hits]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with bar:
        task = bar.add_task(label, total=None, hits=0)

        def update(p: Any) -> None:
            bar.update(task, completed=p.done, total=p.total, hits=p.cache_hits)

        yield update


def open_store(db: str | None) -> Store:
    """The store at --db (or the default path)."""
    return Store(db or default_db_path())


def emit(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    """Rows as a table, or as JSON with --json."""
    if as_json:
        out.print_json(json.dumps(rows, default=str))
        return
    table = Table(title=title)
    for col in rows[0] if rows else ["(none)"]:
        table.add_column(str(col))
    for r in rows:
        table.add_row(*[_fmt(v) for v in r.values()])
    out.print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
