"""`llm-labeler demo`: real 20 Newsgroups users, labeled on the embedded model, scored against gold."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..datasets import newsgroups
from ..labeling import LabelConfig, LabelProgress, RunResult, label_users
from ..metrics import classification_metrics
from ..schemas import Taxonomy, load_taxonomy
from ..segments import ScorerSpec
from ..settings import bundled_path
from ..store import Store

__all__ = ["FIXTURE", "DemoResult", "cpu_kernels", "run_demo"]

FIXTURE = ("fixtures", "20ng_sample")  # under the package's data/ (tests/fixtures/20ng_sample links there)


@dataclass
class DemoResult:
    """The demo's run, taxonomy and headline figures."""

    run: RunResult
    taxonomy: Taxonomy
    summary: dict[str, Any]


def _sample(n: int, log: Callable[[str], None]) -> tuple[Path, dict[str, str], str]:
    """Events file + coarse gold: from the real corpus when it is beside the checkout, else the bundled fixture."""
    tmp = Path(tempfile.mkdtemp(prefix="llm_labeler_demo_"))
    try:
        users = newsgroups.sample_users(newsgroups.load_users(), n, seed=7)
        source = f"20news-bydate.tar.gz ({n} sampled authors)"
    except FileNotFoundError:
        fixture = bundled_path(*FIXTURE)
        log(f"20 Newsgroups tarball not found; using the bundled fixture {fixture}")
        gold = _read_gold(fixture / "gold.csv")
        return fixture / "events.jsonl", dict(list(gold.items())[:n]), "bundled fixture"
    events = tmp / "events.jsonl"
    newsgroups.write_events_jsonl(users, events)
    return events, {u.user_id: u.gold_coarse for u in users}, source


def _read_gold(path: Path) -> dict[str, str]:
    import csv

    with path.open(encoding="utf-8") as fh:
        return {row["user_id"]: row["gold_coarse"] for row in csv.DictReader(fh)}


def cpu_kernels(backend: str) -> str | None:
    """The CPU kernels the llama.cpp build runs with ("AVX2 AVX512 ..."), for a llama.cpp backend; else None.

    A s/user figure depends on them far more than on the clock: the same demo ran 0.455 s/user on an AVX-512
    build and about 2 s/user on an AVX2 one.
    """
    if not backend.startswith("llamacpp:"):
        return None
    from ..backends.llamacpp import cpu_features

    return cpu_features() or "none reported"


def run_demo(
    db: str,
    n: int = 60,
    backend: str = "llamacpp:default",
    progress: Callable[[LabelProgress], None] | None = None,
    log: Callable[[str], None] = lambda m: None,
    scorers: list[ScorerSpec] | None = None,
) -> DemoResult:
    """Ingest a sample, label it with the default pipeline (or `scorers`), compare with gold."""
    taxonomy = load_taxonomy(bundled_path("taxonomies", "20ng_coarse.yaml"))
    events, gold, source = _sample(n, log)
    config = LabelConfig(backend=backend, scorers=scorers)
    with Store(db) as store:
        ingested = store.ingest(events)
        log(f"ingested {ingested.rows_added} new events ({ingested.rows_read} read) from {source}")
        store.set_gold(taxonomy.name, {u: [g] for u, g in gold.items()}, source)
        run = label_users(store, taxonomy, config, users=list(gold), progress=progress)
    by_user = {lab.user_id: lab.primary_segment for lab in run.labels}
    ids = list(gold)
    metrics = classification_metrics([gold[u] for u in ids], [by_user.get(u) for u in ids], taxonomy.ids)
    summary = {
        "run_id": run.run_id,
        "source": source,
        "n_gold": metrics["n"],
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        **{k: run.stats[k] for k in ("calls", "cache_hits", "s_per_user")},
        "backend": backend,
        "cpu_kernels": cpu_kernels(backend),
    }
    return DemoResult(run, taxonomy, summary)
