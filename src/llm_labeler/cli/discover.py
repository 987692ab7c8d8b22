"""The discover command: propose a taxonomy from the users (or refine one with --from)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from ..errors import InputError
from ..settings import DEFAULT_BACKEND, setting
from .common import (
    DbOpt,
    JsonOpt,
    app,
    errors,
    esc,
    note,
    open_store,
    out,
    plain,
    print_json,
    progress,
    show_table,
    warn,
)

__all__ = ["discover"]


def _k(value: str) -> int | None:
    if value.strip().lower() == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(f"--k must be a number of segments or 'auto', not {value!r}") from None


@app.command()
def discover(
    out_path: Annotated[Path, typer.Option("--out", help="Where to write the proposed taxonomy (YAML).")],
    db: DbOpt = "",
    users: Annotated[
        str | None, typer.Option("--users", help='SQL condition on the users table, e.g. "n_events >= 5".')
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="The first N users (by id).")] = None,
    k: Annotated[str, typer.Option("--k", help="Number of segments, or 'auto' (best silhouette).")] = "auto",
    method: Annotated[
        str, typer.Option("--method", help="kmeans, or density (HDBSCAN: users in no dense region left out).")
    ] = "kmeans",
    min_size: Annotated[int, typer.Option("--min-size", help="Smallest segment, in users.")] = 5,
    backend: Annotated[
        str | None,
        typer.Option(
            "--backend",
            help=f"LLM that names the segments (default: the `backend` setting, {DEFAULT_BACKEND}).",
        ),
    ] = None,
    naming: Annotated[
        str,
        typer.Option("--naming", help="llm (the backend names each segment), or terms (no LLM: top terms)."),
    ] = "llm",
    embedder: Annotated[
        str,
        typer.Option(
            "--embedder", help="auto (MiniLM for Latin script, e5 when any user writes another), or an id."
        ),
    ] = "auto",
    from_path: Annotated[
        Path | None,
        typer.Option(
            "--from", help="A taxonomy to keep: new segments only from users that fit none of its segments."
        ),
    ] = None,
    min_similarity: Annotated[
        float | None,
        typer.Option(
            "--min-similarity",
            help="--from: a user fits a kept segment from this cosine (default: median - 1 sd).",
        ),
    ] = None,
    name: Annotated[str, typer.Option("--name", help="Name of the proposed taxonomy.")] = "discovered",
    seed: Annotated[int, typer.Option("--seed", help="Clustering seed.")] = 0,
    gold: Annotated[
        str | None,
        typer.Option(
            "--gold",
            help="Score the proposal (NMI, ARI, purity, mapped accuracy / macro-F1) against FILE.csv[#COLUMN] "
            "(user_id and a segment column, default `segment`) or the store's gold of this taxonomy name.",
        ),
    ] = None,
    mapped_gold: Annotated[
        Path | None,
        typer.Option(
            "--mapped-gold",
            help="With --gold: also write the gold in the proposed ids (Hungarian mapping), for `eval run`.",
        ),
    ] = None,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Ask again where the model's stored answer was unusable.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Overwrite --out if it exists.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Propose segments from the users' histories: embed, cluster, describe by distinctive terms, name by LLM."""
    from ..discovery import (
        DiscoverConfig,
        cluster_scores,
        discover_segments,
        mapped_scores,
        read_gold_csv,
        write_mapped_gold,
    )
    from ..schemas import load_taxonomy

    with errors():
        config = DiscoverConfig(
            backend=setting("backend", backend), embedder=embedder, k=_k(k), method=method,
            min_size=min_size, name=name, seed=seed, retry_failed=retry_failed, naming=naming,
            min_similarity=min_similarity,
        )  # fmt: skip
        if mapped_gold is not None and not gold:
            raise InputError("--mapped-gold needs --gold (the gold to map onto the proposed segments)")
        if out_path.exists() and not force and out_path != from_path:
            raise InputError(f"{out_path} exists: pass --force to overwrite it, or another --out")
        kept = load_taxonomy(from_path) if from_path else None
        with open_store(db) as store:
            gold_map = _gold(store, gold, read_gold_csv) if gold else {}
            if gold and not gold_map:
                raise InputError(
                    f"no gold labels in {gold!r} (a CSV file, or a taxonomy name the store has gold of)"
                )
            with progress("discovering", as_json) as update:
                result = discover_segments(store, config, users, limit, kept, progress=update)
        out_path.write_text(result.yaml_text, encoding="utf-8")
    scores = (
        {**cluster_scores(result.assignments, gold_map), **mapped_scores(result.assignments, gold_map)}
        if gold_map
        else None
    )
    if scores and mapped_gold is not None:
        written = write_mapped_gold(mapped_gold, gold_map, scores["mapping"])
        note(f"wrote {written} users' gold in the proposed ids to {mapped_gold}")
    for message in result.warnings:
        warn(message)
    if as_json:
        print_json(_json(result, out_path, scores))
        return
    _table(result, out_path)
    if scores:
        _scores_line(gold or "", scores)


def _gold(store: Any, spec: str, read_csv: Any) -> dict[str, str]:
    if spec.partition("#")[0].lower().endswith(".csv"):
        found: dict[str, str] = read_csv(spec)
        return found
    return {u: s[0] for u, s in store.gold(spec).items() if s}


def _json(result: Any, out_path: Path, scores: dict[str, Any] | None) -> dict[str, Any]:
    segments = [
        {
            "id": s.id, "name": s.name, "description": s.description, "size": s.size, "share": round(s.share, 4),
            "terms": s.terms, "exemplars": s.exemplars, "named_by": s.named_by,
        }
        for s in result.segments
    ]  # fmt: skip
    return {
        "run_id": result.run_id,
        "out": str(out_path),
        "taxonomy_hash": result.taxonomy_hash,
        "segments": segments,
        "stats": result.stats,
        "gold": scores,
        "warnings": result.warnings,
    }


def _table(result: Any, out_path: Path) -> None:
    s = result.stats
    table = Table(title=esc(f"Proposed segments (run {result.run_id})"))
    for col in ("id", "name", "users", "share", "top terms", "named by"):
        table.add_column(col, justify="right" if col in ("users", "share") else "left")
    for seg in result.segments:
        table.add_row(
            plain(seg.id), plain(seg.name), str(seg.size), f"{seg.share:.1%}", plain(", ".join(seg.terms[:6])),
            seg.named_by,
        )  # fmt: skip
    show_table(table)
    out.print(
        f"wrote [bold]{esc(out_path)}[/] · users {s['users']} ({s['empty_history']} empty history, left out; "
        f"{s['left_out']} in no segment) · k {esc(s['k_chosen'])} · merged {s['merged']} · "
        f"LLM calls {s['calls']} · cache hits {s['cache_hits']} · failed {s['failed_calls']} · "
        f"embedded {s['embedded_users']} users · {s['embed_s'] + s['cluster_s'] + s['name_s']:.1f} s",
        highlight=False,
    )
    note(f"label with it: llm-labeler label --taxonomy {out_path}")


def _scores_line(gold: str, g: dict[str, Any]) -> None:
    out.print(
        f"[bold]vs gold {esc(gold)}[/] ({g['n']} users, {g['gold_segments']} gold segments, {g['clusters']} "
        f"proposed): NMI {g['nmi']:.3f} · ARI {g['ari']:.3f} · purity {g['purity']:.3f} · mapped accuracy "
        f"{g['accuracy']:.3f} · mapped macro-F1 {g['macro_f1']:.3f}",
        highlight=False,
    )
