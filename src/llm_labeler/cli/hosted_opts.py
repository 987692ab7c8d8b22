"""Flags of hosted backends that `label` and `plan` share, and the run line that reports them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from . import out

__all__ = ["ConcurrencyOpt", "MaxCostOpt", "RedactOpt", "SamplesOpt", "hosted_line"]

ConcurrencyOpt = Annotated[
    int,
    typer.Option("--concurrency", min=1, help="Parallel calls for hosted backends (paced by ?rpm=/?tpm=)."),
]
MaxCostOpt = Annotated[
    float | None,
    typer.Option("--max-cost", help="USD budget: stop cleanly before a call could cross it (price table)."),
]
RedactOpt = Annotated[
    bool | None,
    typer.Option(
        "--redact/--no-redact",
        help="PII redaction before text leaves the machine (default: on for non-local backends).",
    ),
]
SamplesOpt = Annotated[
    int, typer.Option("--samples", min=1, help="K-sample self-consistency for the json scorer's confidence.")
]


def hosted_line(stats: dict[str, Any]) -> None:
    """Transport, cost and privacy figures of a finished run, on one line."""
    cost = stats.get("cost_usd")
    cost_text = (
        f"${cost:.6f}" if cost is not None else f"unknown ({stats.get('unpriced_calls')} unpriced calls)"
    )
    red = stats.get("redactions") or {}
    red_text = ", ".join(f"{k} {v}" for k, v in sorted(red.items())) or "none"
    out.print(
        f"concurrency {stats.get('concurrency', 1)} · HTTP attempts {stats.get('transport_attempts', 0)} "
        f"(failed {stats.get('failed_attempts', 0)}, retry wait {stats.get('retry_wait_s', 0)} s) · "
        f"re-asks {stats.get('reasks', 0)} · cost {cost_text} · "
        f"redaction {'on' if stats.get('redaction') else 'off'}: {red_text}"
    )
