"""The command line: parse, call one library function, format. Owns the terminal.

Commands live in submodules (core, hosted, evals, distill), each registering on `app`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ..errors import LabelerError
from ..settings import default_db_path

__all__ = ["app", "main"]

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


def _db(db: str | None) -> str:
    return db or default_db_path()


@contextmanager
def _errors() -> Iterator[None]:
    """Our errors become one clear line and exit code 2; nothing else is swallowed."""
    try:
        yield
    except LabelerError as exc:
        console.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from exc


@contextmanager
def _progress(label: str, quiet: bool) -> Iterator[Callable[[Any], None]]:
    if quiet:
        yield lambda p: None
        return
    bar = Progress(
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


def _open(db: str | None) -> Any:
    from ..store import Store

    return Store(_db(db))


def _emit(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
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


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: everything answered so far is stored; rerun to resume[/]")
        sys.exit(130)


# Registering the commands (imported last: they use `app` and the helpers above).
from . import core, distill, evals, hosted  # noqa: E402, F401
