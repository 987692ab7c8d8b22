"""`score --input`: scoring event files where they live, in this process by shards or through Spark."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import InputError
from .common import errors, esc, out, print_json, progress

__all__ = ["ENGINES", "score_input"]

ENGINES = ("duckdb", "spark")


def score_input(
    pattern: str,
    model: Path,
    out_dir: Path | None,
    shard: str | None,
    split: str,
    engine: str,
    taxonomy: Path | None,
    as_json: bool,
    store_options: list[str] | None = None,
) -> None:
    """Score the Parquet event files `pattern` into the folder `out_dir` with the chosen engine."""
    from ..student.scoring import taxonomy_arg

    with errors():
        if store_options:
            raise InputError(
                f"{', '.join(store_options)} apply to scoring the store; --input scores files and writes every user"
            )
        if engine not in ENGINES:
            raise InputError(f"--engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        if out_dir is None:
            raise InputError("--input needs --out DIR: the folder that receives the score files")
        if engine == "spark":
            _spark(pattern, model, out_dir, shard, taxonomy_arg(taxonomy), as_json)
            return
        from ..student.shards import parse_shard, score_files

        with progress("scoring", as_json) as update:
            report = score_files(
                pattern, model, out_dir, parse_shard(shard), split, taxonomy_arg(taxonomy), progress=update
            )
    if as_json:
        print_json(asdict(report))
        return
    what = (
        "already written, skipped"
        if report.skipped
        else f"in {report.wall_s} s · {report.users_per_s:,.0f} users/s"
    )
    out.print(
        f"shard {report.shard}/{report.shards} ({report.split}): {report.files} files · "
        f"[bold]{report.users}[/] users {what} · model {esc(report.model_version)} -> {esc(report.out)}"
    )
    if report.segments:
        ranked = sorted(report.segments.items(), key=lambda kv: -kv[1])
        out.print("  " + " · ".join(f"{esc(k)} {v}" for k, v in ranked))


def _spark(pattern: str, model: Path, out_dir: Path, shard: str | None, taxonomy: Any, as_json: bool) -> None:
    if shard:
        raise InputError("--shard is for --engine duckdb: Spark shares the work out itself")
    from ..spark import score_event_files

    report = score_event_files(pattern, model, str(out_dir), taxonomy)
    if as_json:
        print_json(report)
        return
    out.print(
        f"spark ({esc(report['master'])}): [bold]{report['users']}[/] users in {report['wall_s']} s · "
        f"{report['users_per_s']:,.0f} users/s · model {esc(report['model_version'])} -> {esc(report['out'])}"
    )
