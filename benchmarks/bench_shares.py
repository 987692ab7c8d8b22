"""Segment shares on real gold: coverage and width of the naive, classical and PPI intervals.

Labels many 20 Newsgroups authors once (the cheap embedding-only scorer by default; the store caches it, so a rerun
labels nothing), takes every author's coarse family as the truth, then repeatedly draws n "reviewed" users at
random and builds each method's interval for every segment. Coverage: the share of intervals that hold the true
share (computed from the gold of all the run's users); width: the mean hi - lo. Where `ppi_py` (the PPI paper
authors' package, the `dev` extra) is installed, its `ppi_mean_ci` as it stands (an infinite population, the
unreviewed users as its unlabeled set) is a fourth row.

    taskset -c 1 env LLM_LABELER_THREADS=1 .venv/bin/python benchmarks/bench_shares.py --users 2000 --reps 200
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llm_labeler.audience import METHODS, indicators, run_population, shares
from llm_labeler.datasets import newsgroups
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.schemas import load_taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.settings import bundled_path
from llm_labeler.store import Store

GOLD_SOURCE = "dataset: 20news-bydate coarse family"


def label_run(db: Path, n_users: int, scorers: str, seed: int) -> str:
    """A label run over n_users authors (all of them if 0), its gold stored as dataset gold; returns its id."""
    taxonomy = load_taxonomy(bundled_path("taxonomies", "20ng_coarse.yaml"))
    users = newsgroups.load_users()
    if n_users and n_users < len(users):
        users = newsgroups.sample_users(users, n_users, seed=seed)
    specs = [ScorerSpec(*_spec(p)) for p in scorers.split(",")]
    with tempfile.TemporaryDirectory() as tmp, Store(db) as store:
        events = Path(tmp) / "events.jsonl"
        newsgroups.write_events_jsonl(users, events)
        store.ingest(events)
        store.set_gold(taxonomy.name, {u.user_id: [u.gold_coarse] for u in users}, GOLD_SOURCE)
        t0 = time.perf_counter()
        run = label_users(store, taxonomy, LabelConfig(scorers=specs), users=[u.user_id for u in users])
        print(f"labeled {len(users)} users in {time.perf_counter() - t0:.1f} s: run {run.run_id}", flush=True)
        return run.run_id


def _spec(part: str) -> tuple[str, float, str]:
    name, _, rest = part.partition("=")
    weight, _, cal = rest.partition(":")
    return name.strip(), float(weight or 1), cal or "none"


def _ppi_py() -> object | None:
    try:
        with warnings.catch_warnings():  # ppi_py switches every warning off when imported
            import ppi_py
    except ImportError:
        return None
    return ppi_py


def _ppi_py_covers(ppi_py: object, y: np.ndarray, yhat: np.ndarray, unl: np.ndarray, level: float, t: float):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lo, hi = ppi_py.ppi_mean_ci(y, yhat, unl, alpha=1 - level)  # type: ignore[attr-defined]
    lo, hi = max(0.0, float(np.ravel(lo)[0])), min(1.0, float(np.ravel(hi)[0]))
    return lo <= t <= hi, hi - lo


def simulate(
    db: Path, run_id: str, sizes: list[int], reps: int, level: float, seed: int
) -> list[dict[str, float]]:
    """Coverage and mean width of each method at each gold sample size."""
    with Store(db, read_only=True) as store:
        pop = run_population(store, run_id)
        gold = {u: segs for u, segs in store.gold(pop.taxonomy.name).items() if u in pop.predicted}
    users = sorted(gold)
    predicted = pop.matrix(users)
    truth = indicators(pop.taxonomy.ids, gold, users)
    true_share = truth.mean(axis=0)
    accuracy = float((predicted.argmax(1) == truth.argmax(1)).mean())
    print(
        f"{len(users)} users, labeler accuracy vs gold {accuracy:.3f}; true shares "
        + ", ".join(f"{s} {p:.3f}" for s, p in zip(pop.taxonomy.ids, true_share))
        + "; naive shares "
        + ", ".join(f"{p:.3f}" for p in predicted.mean(axis=0)),
        flush=True,
    )
    rng = np.random.default_rng(seed)
    reference = _ppi_py()
    methods = [*METHODS, "ppi_py"] if reference is not None else list(METHODS)
    rows = []
    for n in sizes:
        hits: dict[str, list[bool]] = {m: [] for m in methods}
        widths: dict[str, list[float]] = {m: [] for m in methods}
        for _ in range(reps):
            drawn = np.sort(rng.choice(len(users), n, replace=False))
            rest = np.ones(len(users), bool)
            rest[drawn] = False
            for k, est in enumerate(shares(pop.taxonomy.ids, predicted, drawn, truth[drawn], level)):
                for m in METHODS:
                    iv = getattr(est, m)
                    hits[m].append(iv.covers(true_share[k]))
                    widths[m].append(iv.width)
                if reference is not None:
                    y, yhat, unl = truth[drawn, k], predicted[drawn, k], predicted[rest, k]
                    hit, width = _ppi_py_covers(reference, y, yhat, unl, level, true_share[k])
                    hits["ppi_py"].append(hit)
                    widths["ppi_py"].append(width)
        k = len(pop.taxonomy.ids)
        for m in methods:
            per_segment = np.asarray(hits[m], float).reshape(reps, k).mean(axis=0)  # draws x segments
            rows.append(
                {
                    "n": n,
                    "method": m,
                    "coverage": float(np.mean(hits[m])),
                    "worst": float(per_segment.min()),
                    "worst_segment": pop.taxonomy.ids[int(per_segment.argmin())],
                    "width": float(np.mean(widths[m])),
                }
            )
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--db", type=Path, default=Path(tempfile.gettempdir()) / "bench_shares.duckdb")
    p.add_argument("--users", type=int, default=0, help="authors to label (0: all of them)")
    p.add_argument(
        "--scorers", default="embedding=1", help="the labeling combination (name=weight[:cal],...)"
    )
    p.add_argument("--run", default=None, help="reuse this run of --db instead of labeling")
    p.add_argument("--sizes", default="50,100,200")
    p.add_argument("--reps", type=int, default=200)
    p.add_argument("--level", type=float, default=0.95)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    run_id = args.run or label_run(args.db, args.users, args.scorers, args.seed)
    t0 = time.perf_counter()
    rows = simulate(
        args.db, run_id, [int(s) for s in args.sizes.split(",")], args.reps, args.level, args.seed
    )
    print(
        f"\n{args.reps} draws per n, {args.level:.0%} intervals, coverage and mean width over the 6 segments "
        f"({time.perf_counter() - t0:.1f} s)"
    )
    print(f"{'n gold':>6} | {'method':<9} | {'coverage':>8} | {'worst segment':<20} | {'mean width':>10}")
    print(f"{'-' * 6}-+-{'-' * 9}-+-{'-' * 8}-+-{'-' * 20}-+-{'-' * 10}")
    for r in rows:
        worst = f"{r['worst']:.3f} {r['worst_segment']}"
        print(f"{r['n']:>6} | {r['method']:<9} | {r['coverage']:>8.3f} | {worst:<20} | {r['width']:>10.4f}")


if __name__ == "__main__":
    main()
