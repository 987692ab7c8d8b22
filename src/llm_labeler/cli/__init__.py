"""The command line: parse, call one library function, format. Owns the terminal.

common.py   consoles, global options (--version, --debug, --quiet), errors -> one line and exit 2, Ctrl-C -> 130,
            escaping of user text, progress bars, tables
label.py    ingest, label (--dry-run) / plan, demo
student.py  distill, score, export, review, explain
evals.py    eval run / compare / report
records.py  show, runs, logs (read the store); config (each setting's value and source)
audience.py shares (segment shares with intervals), report (the audience page)
discover.py discover (propose a taxonomy from the users; --from refines one)
"""

from __future__ import annotations

import sys
import warnings

from . import audience, discover, evals, label, records, student  # noqa: F401  (each registers its commands on `app`)
from .common import INTERRUPTED, app, console

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    # torch's TypedStorage deprecation notice says nothing a user of this tool can act on.
    warnings.filterwarnings("ignore", message=".*TypedStorage.*")
    try:
        app()
    except KeyboardInterrupt:
        # Ctrl-C outside a command (the root command turns one inside into this message and exit 130).
        console.print(f"[yellow]{INTERRUPTED}[/]")
        sys.exit(130)
