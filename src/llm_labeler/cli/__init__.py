"""The command line: parse, call one library function, format. Owns the terminal.

common.py   consoles, shared options, errors -> one line and exit 2, progress bars, tables
label.py    ingest, label (--dry-run) / plan, show, runs, logs, demo
student.py  distill, score, export, review, explain
evals.py    eval run / compare / report
"""

from __future__ import annotations

import sys
import warnings

from . import evals, label, student  # noqa: F401  (each registers its commands on `app`)
from .common import app, console

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    # torch's TypedStorage deprecation notice says nothing a user of this tool can act on.
    warnings.filterwarnings("ignore", message=".*TypedStorage.*")
    try:
        app()
    except KeyboardInterrupt:
        console.print("[yellow]interrupted: everything answered so far is stored; rerun to resume[/]")
        sys.exit(130)
