"""History budget vs quality: macro-F1 on labeled 20 Newsgroups users at several history token budgets.

For each budget: the llm scorer alone (its s/user and prompt tokens/user, on a store where it has no cached answer)
and the default combination (llm + sentence embeddings; the embedding scorer does not depend on the budget, so after
the first budget its answers come from the cache and only the combination is new).

    flock /tmp/llm_labeler_cpu.lock .venv/bin/python benchmarks/bench_budget.py --n 200 --budgets 100,200,400,800
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_label import FIXTURE, ROOT, _read_gold, f1, hold_cpu_lock
from llm_labeler.backends import get_backend
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.schemas import Taxonomy, load_taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.store import Store


def sample(args: argparse.Namespace, workdir: Path) -> tuple[Path, dict[str, str]]:
    """Events and coarse gold of the evaluation users."""
    if args.fixture:
        gold = _read_gold(FIXTURE / "gold.csv")
        return FIXTURE / "events.jsonl", {u: gold[u] for u in sorted(gold)[: args.n]}
    from llm_labeler.datasets import newsgroups

    users = newsgroups.sample_users(newsgroups.load_users(), args.n, seed=args.seed)
    events = workdir / "events.jsonl"
    newsgroups.write_events_jsonl(users, events)
    return events, {u.user_id: u.gold_coarse for u in users}


def one(store: Store, taxonomy: Taxonomy, config: LabelConfig, gold: dict[str, str]) -> dict[str, Any]:
    """One labeling run: macro-F1 against gold, time and prompt tokens per user."""
    start = time.perf_counter()
    run = label_users(store, taxonomy, config, users=list(gold))
    seconds = time.perf_counter() - start
    pred = {lab.user_id: lab.primary_segment for lab in run.labels}
    n = max(len(gold), 1)
    return {
        "macro_f1": f1(taxonomy, gold, pred),
        "s_per_user": seconds / n,
        "prompt_tokens": run.stats["prompt_tokens"] / n,
        "cache_hits": run.stats["cache_hits"],
    }


def curve(args: argparse.Namespace) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
    """(budget, llm-only figures, default-combination figures) for each budget."""
    taxonomy = load_taxonomy(ROOT / "taxonomies" / f"{args.taxonomy}.yaml")
    get_backend("llamacpp:default").scorer  # noqa: B018 - load once, outside the timings
    out = []
    with tempfile.TemporaryDirectory(prefix="bench_budget_") as tmp:
        events, gold = sample(args, Path(tmp))
        with Store(Path(tmp) / "budget.duckdb") as store:
            store.ingest(events)
            for budget in args.budgets:
                llm = one(
                    store, taxonomy, LabelConfig(scorers=[ScorerSpec("llm", 1.0)], budget_tokens=budget), gold
                )
                default = (
                    one(store, taxonomy, LabelConfig(budget_tokens=budget), gold) if args.default else {}
                )
                out.append((budget, llm, default))
            emb = one(store, taxonomy, LabelConfig(scorers=[ScorerSpec("embedding", 1.0)]), gold)
    out.append((0, {}, emb))
    return out


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=200, help="labeled users")
    p.add_argument("--seed", type=int, default=11, help="sample_users seed (not the throughput benchmark's)")
    p.add_argument("--taxonomy", default="20ng_coarse")
    p.add_argument("--budgets", type=lambda s: [int(x) for x in s.split(",")], default=[100, 200, 400, 800])
    p.add_argument("--no-default", dest="default", action="store_false", help="skip the default combination")
    p.add_argument(
        "--fixture", action="store_true", help="use tests/fixtures/20ng_sample instead of the tarball"
    )
    p.add_argument("--no-lock", action="store_true", help="do not take the CPU lock (smoke tests only)")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    lock = hold_cpu_lock(args.no_lock)
    try:
        rows = curve(args)
    finally:
        if lock is not None:
            lock.close()
    source = "fixture" if args.fixture else f"20news-bydate sample_users(n={args.n}, seed={args.seed})"
    print(f"bench_budget: {args.n} users of {source}, taxonomy {args.taxonomy}, macro-F1 against gold_coarse")
    print(f"{'budget':>7} {'llm F1':>8} {'llm s/user':>11} {'prompt/u':>9} {'default F1':>11}")
    for budget, llm, default in rows:
        if budget == 0:
            print(f"embedding scorer alone (no history budget): macro-F1 {default['macro_f1']:.3f}")
            continue
        d = f"{default['macro_f1']:.3f}" if default else "-"
        print(
            f"{budget:>7} {llm['macro_f1']:>8.3f} {llm['s_per_user']:>11.4f} {llm['prompt_tokens']:>9.1f} {d:>11}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
