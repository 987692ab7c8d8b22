"""Run a suite: every prompt x backend x scorer combination is one labeling run (sharing the cache), scored on gold."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..labeling import LabelProgress, label_users, stored_backend
from ..schemas import Taxonomy, load_taxonomy
from ..store import Store, new_id
from ..store import evals as sql
from .data import prepare
from .gate import GateResult, check_gate
from .matrix import Cell, plan
from .metrics import HEADLINE, run_metrics, score_labels
from .suite import Suite
from .tune import ensure_fitted

__all__ = ["EvalResult", "flat_metrics", "run_suite"]


@dataclass
class EvalResult:
    """A finished eval run: the matrix, totals and the gate's verdict."""

    eval_id: str
    suite: Suite
    source: str
    n: int
    calls: int
    cache_hits: int
    cells: list[dict[str, Any]]
    gate: GateResult
    warnings: list[str] = field(default_factory=list)

    @property
    def primary(self) -> dict[str, Any]:
        """The primary cell (headline and gate)."""
        return next(c for c in self.cells if c["is_primary"])

    @property
    def baseline(self) -> dict[str, Any] | None:
        """The embedding-only baseline cell."""
        return next((c for c in self.cells if c["is_baseline"]), None)


def run_suite(
    store: Store,
    suite: Suite,
    backends: Sequence[str] | None = None,
    limit: int | None = None,
    fail_under: Mapping[str, float] | None = None,
    baseline: str | None = None,
    progress: Callable[[LabelProgress], None] | None = None,
) -> EvalResult:
    """Prepare the data, label it once per cell, score each cell, store everything and apply the gate."""
    taxonomy = load_taxonomy(suite.resolve(suite.taxonomy))
    data = prepare(store, suite, taxonomy, limit)
    cells = plan(suite, backends)
    eval_id = new_id("eval")
    as_run = suite.model_dump(mode="json") | {"limit": limit, "backends_override": list(backends or [])}
    sql.start_eval(
        store,
        eval_id,
        suite.name,
        suite.path,
        suite.content_hash(),
        (taxonomy.name, taxonomy.content_hash()),
        len(data.gold),
        as_run,
    )
    sql.write_eval_gold(store, eval_id, data.gold)
    status, gate = "failed", GateResult()
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        rows, notes = _run_cells(store, suite, eval_id, taxonomy, data.gold, cells, progress)
        gate = _gate(store, suite, taxonomy, rows, data.gold, fail_under or {}, baseline)
        status = "done"
    except KeyboardInterrupt:
        status = "stopped"
        raise
    finally:
        summary = _summary(rows, gate if status == "done" else None, data.source)
        sql.finish_eval(store, eval_id, status, summary)
    return EvalResult(
        eval_id,
        suite,
        data.source,
        len(data.gold),
        summary["calls"],
        summary["cache_hits"],
        rows,
        gate,
        notes,
    )


def _run_cells(
    store: Store,
    suite: Suite,
    eval_id: str,
    taxonomy: Taxonomy,
    gold: Mapping[str, Sequence[str]],
    cells: Sequence[Cell],
    progress: Callable[[LabelProgress], None] | None,
) -> tuple[list[dict[str, Any]], list[str]]:
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    users = sorted(gold)
    done = hits = 0
    total = len(users) * len(cells)
    for position, cell in enumerate(cells):

        def relay(p: LabelProgress, offset: int = done, base_hits: int = hits, name: str = cell.name) -> None:
            if progress:
                progress(LabelProgress(name, offset + p.done, total, base_hits + p.cache_hits))

        config = cell.config
        if cell.combination.fitted and cell.combination.tune:
            ensure_fitted(store, suite, cell.combination)
        fitted = stored_backend(store, config.combination) if config.combination else None
        if fitted is not None:  # a stored combination runs on the backend it was fitted for
            config = replace(config, backend=fitted)
        result = label_users(store, taxonomy, config, users, kind="eval", progress=relay)
        done += len(users)
        hits += result.stats["cache_hits"]
        notes += [n for n in result.warnings if n not in notes]
        row = _cell_row(store, cell, result.run_id, result.stats, gold, taxonomy)
        sql.write_cell(store, eval_id, position, row)
        rows.append(row)
    return rows, notes


def _cell_row(
    store: Store,
    cell: Cell,
    run_id: str,
    stats: Mapping[str, Any],
    gold: Mapping[str, Sequence[str]],
    taxonomy: Taxonomy,
) -> dict[str, Any]:
    specs = cell.config.scorers
    return {
        "cell": cell.name,
        "run_id": run_id,
        "combination": cell.combination.name,
        "prompt": cell.prompt,
        "backend": cell.backend,
        "is_baseline": cell.combination.baseline,
        "is_primary": cell.is_primary,
        "scorers": [asdict(s) for s in specs] if specs else "default",
        "metrics": run_metrics(store, run_id, gold, taxonomy),
        "stats": dict(stats),
    }


def flat_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The headline numbers of a cell (plus Jaccard/Hamming when present)."""
    keys = [*HEADLINE, "jaccard", "hamming"]
    return {k: round(float(metrics[k]), 6) for k in keys if k in metrics}


def _gate(
    store: Store,
    suite: Suite,
    taxonomy: Taxonomy,
    rows: Sequence[Mapping[str, Any]],
    gold: Mapping[str, Sequence[str]],
    fail_under: Mapping[str, float],
    baseline: str | None,
) -> GateResult:
    primary = next(r for r in rows if r["is_primary"])
    floors = {**suite.thresholds, **fail_under}
    if baseline is None:
        return check_gate(primary["metrics"], floors)
    # Compare on the users both runs labeled, so a --limit or a different sample cannot fake a change.
    _, base_run = sql.resolve_run(store, baseline)
    base_labels = store.labels(base_run)
    common = {lab["user_id"] for lab in base_labels} & set(gold)
    if not common:
        from ..errors import InputError

        raise InputError(f"baseline {baseline} labeled none of this suite's {len(gold)} users")
    shared_gold = {u: gold[u] for u in common}
    now = score_labels(store.labels(primary["run_id"]), shared_gold, taxonomy)
    before = score_labels(base_labels, shared_gold, taxonomy)
    result = check_gate(primary["metrics"], floors)
    regress = check_gate(now, {}, before, baseline, suite.gate.metrics, suite.gate.tolerance)
    result.failures += regress.failures
    result.checks += [c | {"users": len(common)} for c in regress.checks]
    result.passed = not result.failures
    return result


def _summary(rows: Sequence[Mapping[str, Any]], gate: GateResult | None, source: str) -> dict[str, Any]:
    primary = next((r for r in rows if r["is_primary"]), None)
    base = next((r for r in rows if r["is_baseline"]), None)
    return {
        "source": source,
        "calls": sum(int(r["stats"].get("calls", 0)) for r in rows),
        "cache_hits": sum(int(r["stats"].get("cache_hits", 0)) for r in rows),
        "primary": {"cell": primary["cell"], "metrics": flat_metrics(primary["metrics"])}
        if primary
        else None,
        "baseline": {"cell": base["cell"], "metrics": flat_metrics(base["metrics"])} if base else None,
        "gate": gate.as_dict() if gate else None,
    }
