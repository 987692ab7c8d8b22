"""What every command shares: the consoles, the common options, error and progress handling, tables.

Anything that came from users (titles, texts, ids, file names, model answers, messages quoting them) reaches rich
only through `esc` (inside markup) or `plain` (as a Text): rich never parses it as markup, and control characters
(ANSI escapes, carriage returns, bidirectional overrides) are shown as visible escapes instead of reaching the
terminal raw.
"""

from __future__ import annotations

import errno
import json
import re
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as ProgressBar
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from ..errors import LabelerError
from ..settings import debug_enabled, default_db_path
from ..store import Store

__all__ = [
    "INTERRUPTED",
    "DbOpt",
    "JsonOpt",
    "app",
    "clip",
    "console",
    "emit",
    "errors",
    "esc",
    "fail",
    "note",
    "open_store",
    "out",
    "plain",
    "print_json",
    "print_wide",
    "progress",
    "quiet",
    "show_table",
    "warn",
]

INTERRUPTED = "interrupted: everything answered so far is stored; rerun to resume"
# C0/C1 controls but newline and tab, DEL, and the bidirectional embeddings/overrides/isolates that can reorder
# what a terminal shows ("Trojan source"). Right-to-left letters themselves pass untouched.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_WIDE = 4000  # the console width of tables written to a pipe or file: never squeezed into 80 columns


@dataclass
class _Flags:
    """The global options of this invocation (set by the app callback)."""

    debug: bool = False
    quiet: bool = False


_FLAGS = _Flags()


class _Group(TyperGroup):
    """The root command: whatever escapes a command becomes one `error:` line and exit 2 (130 on Ctrl-C)."""

    def invoke(self, ctx: Any) -> Any:  # typer.core.Context (its vendored click)
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt as exc:
            _interrupted(exc)
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # `llm-labeler runs | head`: typer closes quietly
                raise
            fail(exc)
        except Exception as exc:
            fail(exc)


app = typer.Typer(
    cls=_Group,
    add_completion=True,
    no_args_is_help=True,
    help="Label recommender-system users into taxonomy segments with an LLM.",
)
console = Console(stderr=True, emoji=False, soft_wrap=True)
out = Console(emoji=False, soft_wrap=True)

DbOpt = Annotated[
    str,
    typer.Option(
        "--db", help="DuckDB file (default: $LLM_LABELER_DB, `db` in llm_labeler.toml, ./llm_labeler.duckdb)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _show_version(value: bool) -> None:
    if value:
        from .. import __version__

        out.print(f"llm-labeler {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_show_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback behind an error (or set LLM_LABELER_DEBUG=1).")
    ] = False,
    quiet_: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="For scripts: no progress bars, warnings or notes; results and errors only."
        ),
    ] = False,
) -> None:
    """Label recommender-system users into taxonomy segments with an LLM."""
    _FLAGS.debug, _FLAGS.quiet = debug, quiet_
    if quiet_:  # third-party warnings too: a script wants its results and errors only
        warnings.simplefilter("ignore")


def quiet() -> bool:
    """True under --quiet."""
    return _FLAGS.quiet


def clip(value: Any, limit: int = 200) -> str:
    """A user's text cut to `limit` characters, saying how much was left out."""
    text = "" if value is None else str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (+{len(text) - limit:,} chars)"


def _visible(value: Any) -> str:
    text = "" if value is None else str(value)
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def esc(value: Any) -> str:
    """User text, safe inside a rich markup string: no tag is interpreted, control characters are made visible."""
    return escape(_visible(value))


def plain(value: Any) -> Text:
    """User text as a rich Text (never parsed as markup), control characters made visible."""
    return Text(_visible(value))


def fail(exc: BaseException) -> NoReturn:
    """One clear `error:` line (our errors as they are, others with their type) and exit 2; the traceback first
    under --debug or LLM_LABELER_DEBUG=1."""
    if _FLAGS.debug or debug_enabled():
        console.print(plain("".join(traceback.format_exception(exc)).rstrip()), highlight=False)
    detail = str(exc)
    message = (
        detail if isinstance(exc, LabelerError) else f"{type(exc).__name__}: {detail}".removesuffix(": ")
    )
    console.print(f"[bold red]error:[/] {esc(message)}", highlight=False)
    raise typer.Exit(2) from exc


def _interrupted(exc: KeyboardInterrupt) -> NoReturn:
    console.print(f"[yellow]{INTERRUPTED}[/]")
    detail = str(exc)
    if detail:  # the library's RunInterrupted says how many users it labeled before stopping
        console.print(esc(detail), highlight=False)
    raise typer.Exit(130) from exc


@contextmanager
def errors() -> Iterator[None]:
    """Our errors become one clear line and exit code 2 (the root command does the same for every other one)."""
    try:
        yield
    except LabelerError as exc:
        fail(exc)


def warn(message: Any) -> None:
    """A warning on stderr (none under --quiet)."""
    if not _FLAGS.quiet:
        console.print(f"[yellow]warning:[/] {esc(message)}", highlight=False)


def note(message: Any) -> None:
    """A dim progress note on stderr (none under --quiet)."""
    if not _FLAGS.quiet:
        console.print(f"[dim]{esc(message)}[/]", highlight=False)


@contextmanager
def progress(label: str, hidden: bool) -> Iterator[Callable[[Any], None]]:
    """A rich progress bar fed by the library's progress events (nothing when hidden, e.g. --json, or --quiet)."""
    if hidden or _FLAGS.quiet:
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
        # The description is formatted into the column's markup: escape it like any text we did not write.
        task = bar.add_task(esc(label), total=None, hits=0)

        def update(p: Any) -> None:
            bar.update(task, completed=p.done, total=p.total, hits=p.cache_hits)

        yield update


def open_store(db: str | None, read_only: bool = False) -> Store:
    """The store at --db (or the configured default path); `read_only` for commands that only read."""
    return Store(db or default_db_path(), read_only=read_only)


def show_table(table: Table) -> None:
    """A table on stdout. Never truncated: on a terminal long cells fold; to a pipe or file it keeps its natural
    width (ids and model names stay whole, greppable and copyable)."""
    for column in table.columns:
        column.overflow = "fold"
    print_wide(table)


def print_wide(renderable: RenderableType) -> None:
    """A table or panel on stdout: the terminal's width on a terminal, its natural width into a pipe or file."""
    if out.is_terminal:
        out.print(renderable)
        return
    Console(file=out.file, width=_WIDE, emoji=False, soft_wrap=True).print(renderable)


def print_json(data: Any, indent: int | None = 2) -> None:
    """--json output: plain JSON on stdout (no highlighting, no wrapping); non-ASCII text stays readable, and the
    characters a terminal would obey (controls, bidirectional overrides) are written as \\u escapes."""
    text = json.dumps(data, default=str, ensure_ascii=False, indent=indent)
    typer.echo(_CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}", text))


def emit(rows: list[dict[str, Any]], as_json: bool, title: str) -> None:
    """Rows as a table, or as JSON with --json."""
    if as_json:
        print_json(rows)
        return
    table = Table(title=esc(title))
    for col in rows[0] if rows else ["(none)"]:
        table.add_column(plain(col))
    for r in rows:
        table.add_row(*[plain(_fmt(v)) for v in r.values()])
    show_table(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)
