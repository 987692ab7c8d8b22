"""Eval dataset loaders: users with gold labels, ingested into the run's store with the gold beside them."""

from __future__ import annotations

import csv
import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..datasets import newsgroups
from ..errors import ConfigError, InputError
from ..schemas import Taxonomy
from ..store import Store
from .suite import DatasetSpec, Suite

__all__ = ["EvalData", "load_dataset", "prepare", "split_ids"]


@dataclass
class EvalData:
    """The users of an eval and their gold segments (a list each: one for single-label gold)."""

    gold: dict[str, list[str]]
    events_path: Path
    source: str

    @property
    def user_ids(self) -> list[str]:
        """Users in a stable order (sorted ids)."""
        return sorted(self.gold)


def load_dataset(suite: Suite, workdir: Path) -> EvalData:
    """Build the suite's users and gold; events are written as JSONL under workdir for ingestion."""
    spec = suite.dataset
    if spec.loader == "newsgroups":
        return _newsgroups(spec, workdir, suite)
    return _files(spec, suite)


def _newsgroups(spec: DatasetSpec, workdir: Path, suite: Suite) -> EvalData:
    tarball = str(suite.resolve(spec.tarball)) if spec.tarball else None
    try:
        users = newsgroups.load_users(tarball, spec.min_posts, spec.max_posts_per_user)
    except FileNotFoundError as exc:
        raise ConfigError(f"suite {suite.name}: {exc}") from exc
    # Split by user, never by post: a tuning decision never sees a test user's texts.
    tune, test = newsgroups.split_users(users, spec.test_fraction, spec.split_seed)
    pool = {"tune": tune, "test": test, "all": users}[spec.split or "test"]
    if spec.n is not None and spec.n > len(pool):
        raise ConfigError(
            f"suite {suite.name}: asks for {spec.n} users, the {spec.split} split has {len(pool)}"
        )
    chosen = newsgroups.sample_users(pool, spec.n, spec.seed) if spec.n else list(pool)
    events = workdir / f"{suite.name}_{spec.split}.jsonl"
    newsgroups.write_events_jsonl(chosen, events)
    gold = {u.user_id: _news_gold(u, spec.gold) for u in chosen}
    source = (
        f"20news-bydate {spec.split} split (seed {spec.split_seed}), {len(chosen)} users (seed {spec.seed})"
    )
    return EvalData(gold, events, source)


def _news_gold(user: newsgroups.NewsUser, field: str) -> list[str]:
    if field == "fine":
        return [newsgroups.fine_segment_id(user.gold_fine)]
    if field == "multi":
        return list(user.gold_multi)
    return [user.gold_coarse]


def _files(spec: DatasetSpec, suite: Suite) -> EvalData:
    assert spec.events and spec.gold_csv  # checked by DatasetSpec
    events, gold_path = suite.resolve(spec.events), suite.resolve(spec.gold_csv)
    for p in (events, gold_path):
        if not p.is_file():
            raise ConfigError(f"suite {suite.name}: dataset file not found: {p}")
    with gold_path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "user_id" not in reader.fieldnames or spec.gold not in reader.fieldnames:
            raise InputError(f"{gold_path}: needs columns user_id and {spec.gold!r}; has {reader.fieldnames}")
        rows = list(reader)
    gold = {
        r["user_id"]: [s for s in r[spec.gold].split(spec.multi_separator) if s]
        for r in rows
        if r[spec.gold].strip()
    }
    split = spec.split or "all"
    if split != "all":
        tune, test = split_ids(list(gold), spec.test_fraction, spec.split_seed)
        keep = set(tune if split == "tune" else test)
        gold = {u: g for u, g in gold.items() if u in keep}
    if spec.n is not None:
        gold = dict(sorted(gold.items())[: spec.n])
    where = f"{split} split (seed {spec.split_seed}), " if split != "all" else ""
    return EvalData(gold, events, f"{events.name} + {gold_path.name}[{spec.gold}], {where}{len(gold)} users")


def split_ids(user_ids: list[str], test_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """(tune, test) by user, the newsgroups loader's rule: sha256(seed:user_id) rank, the first share is test."""
    ranked = sorted(user_ids, key=lambda u: hashlib.sha256(f"{seed}:{u}".encode()).hexdigest())
    n_test = round(len(ranked) * test_fraction)
    return sorted(ranked[n_test:]), sorted(ranked[:n_test])


def prepare(store: Store, suite: Suite, taxonomy: Taxonomy, limit: int | None = None) -> EvalData:
    """Load the dataset, check its gold against the taxonomy, ingest the events and store the gold."""
    with tempfile.TemporaryDirectory(prefix="llm_labeler_eval_") as tmp:
        data = load_dataset(suite, Path(tmp))
        _check_gold(data, taxonomy, suite)
        if limit is not None:
            keep = data.user_ids[:limit]
            data.gold = {u: data.gold[u] for u in keep}
            data.source += f", first {len(keep)} (--limit)"
        store.ingest(data.events_path)
    store.user_ids(data.user_ids)  # every gold user must have events: raises naming the missing ones
    store.set_gold(taxonomy.name, data.gold, f"eval suite {suite.name}: {data.source}")
    return data


def _check_gold(data: EvalData, taxonomy: Taxonomy, suite: Suite) -> None:
    if not data.gold:
        raise InputError(f"suite {suite.name}: the dataset has no users with gold labels")
    known = set(taxonomy.ids)
    unknown = sorted({s for segs in data.gold.values() for s in segs} - known)
    if unknown:
        raise InputError(
            f"suite {suite.name}: gold segment(s) {', '.join(unknown)} are not in taxonomy {taxonomy.name} "
            f"({', '.join(taxonomy.ids)})"
        )
