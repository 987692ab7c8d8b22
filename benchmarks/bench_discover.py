"""Discovered segments against gold, side by side: k-means on TF-IDF, BERTopic, and `discover`.

The same users for every method, in one run: N held-out 20 Newsgroups authors (gold: coarse, 6 families, and fine,
20 groups) and the Chinese toutiao_readers set (gold: 6 segments). For each method the partition is scored with
NMI, ARI and purity (users a method leaves out count as one more cluster), and with accuracy and macro-F1 once its
segments are mapped one to one onto gold (Hungarian). For `discover` also end to end: `label` with the discovered
taxonomy (the embedding-only scorer: MiniLM for English, e5 for Chinese), then the same mapping.

Methods
  tfidf-kmeans   the seed document's clustering: TF-IDF of each user's history (our analyzer), k-means
  bertopic       BERTopic 0.17 (UMAP -> HDBSCAN -> c-TF-IDF) on the same user vectors `discover` uses
  discover       ours: k by silhouette (auto) or given; names by --backend (--naming llm, k=auto only: the
                 k=gold rows are named from their top terms, which does not move the clusters, so that the run
                 takes minutes) or from top terms (--naming terms)

    export LLM_LABELER_DATASETS=/work/shared/datasets
    taskset -c 1 env LLM_LABELER_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/bench_discover.py --n 400
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.cluster import KMeans
from sklearn.feature_extraction.text import TfidfVectorizer

from llm_labeler.backends import get_embedder, get_llm
from llm_labeler.datasets import newsgroups
from llm_labeler.discovery import DiscoverConfig, cluster_scores, discover_segments, mapped_scores
from llm_labeler.discovery.terms import analyze
from llm_labeler.discovery.vectors import UserVectors, choose_embedder, user_document, user_vectors
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.segments import ScorerSpec
from llm_labeler.settings import newsgroups_dir
from llm_labeler.store import Store

ROOT = Path(__file__).resolve().parents[1]
Gold = dict[str, dict[str, str]]  # gold name -> user -> segment


def newsgroups_users(store: Store, n: int, workdir: Path) -> Gold:
    """N authors of the held-out half (the eval suites' split), ingested; coarse and fine gold."""
    users = newsgroups.load_users(None, min_posts=3)
    _, test = newsgroups.split_users(users, 0.5, 20)
    chosen = newsgroups.sample_users(test, n, 1)
    events = workdir / "20ng.jsonl"
    newsgroups.write_events_jsonl(chosen, events)
    store.ingest(events)
    return {
        "20ng coarse": {u.user_id: u.gold_coarse for u in chosen},
        "20ng fine": {u.user_id: newsgroups.fine_segment_id(u.gold_fine) for u in chosen},
    }


def toutiao_users(store: Store) -> Gold:
    """The 400 Chinese readers, ingested, with their gold."""
    folder = (
        Path(newsgroups_dir("LLM_LABELER_DATASETS") or ROOT.parent / "shared" / "datasets")
        / "toutiao_readers"
    )
    store.ingest(folder / "events.csv")
    with (folder / "gold.csv").open(encoding="utf-8", newline="") as fh:
        return {"toutiao": {r["user_id"]: r["segment"] for r in csv.DictReader(fh)}}


# ------------------------------------------------------------------------------------------------- methods
def tfidf_kmeans(docs: list[str], k: int, seed: int) -> np.ndarray:
    """The seed's clustering: k-means on TF-IDF (sublinear, L2) of the users' histories."""
    x = TfidfVectorizer(analyzer=analyze, sublinear_tf=True, min_df=2, max_df=0.5).fit_transform(docs)
    labels: np.ndarray = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
    return labels


def bertopic(
    docs: list[str], vectors: np.ndarray, min_size: int, seed: int, topics: int | None
) -> np.ndarray:
    """BERTopic as shipped (UMAP + HDBSCAN + c-TF-IDF) on precomputed user vectors; -1 = its outliers."""
    from bertopic import BERTopic
    from sklearn.feature_extraction.text import CountVectorizer
    from umap import UMAP

    umap = UMAP(n_neighbors=15, n_components=5, min_dist=0.0, metric="cosine", random_state=seed)
    model = BERTopic(
        umap_model=umap,
        vectorizer_model=CountVectorizer(analyzer=analyze),
        min_topic_size=min_size,
        nr_topics=topics,
        calculate_probabilities=False,
    )
    found, _ = model.fit_transform(docs, vectors)
    return np.asarray(found)


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - started


def as_map(user_ids: list[str], labels: np.ndarray) -> dict[str, str | None]:
    return {u: (str(c) if c >= 0 else None) for u, c in zip(user_ids, labels)}


# ------------------------------------------------------------------------------------------------- discover
def ours(store: Store, k: int | None, naming: str, args: argparse.Namespace) -> tuple[Any, float]:
    cfg = DiscoverConfig(backend=args.backend, naming=naming, k=k, seed=args.seed, min_size=args.min_size)
    return timed(lambda: discover_segments(store, cfg))


def label_with(store: Store, result: Any, chinese: bool) -> dict[str, str | None]:
    """`label` with the discovered taxonomy, the embedding-only scorer; user -> primary segment."""
    tax = store.taxonomy(result.taxonomy_hash)
    assert tax is not None
    spec = ScorerSpec("multilingual", 1.0, "batch") if chinese else ScorerSpec("embedding", 1.0, "none")
    run = label_users(
        store, tax, LabelConfig(backend="fake:echo", scorers=[spec]), users=list(result.assignments)
    )
    return {lab.user_id: lab.primary_segment for lab in run.labels}


def row(
    method: str, k: Any, pred: dict[str, str | None], gold: dict[str, str], secs: float | None, n: int
) -> dict[str, Any]:
    c, m = cluster_scores(pred, gold), mapped_scores(pred, gold)
    per_k = f"{secs * 1000 / n:.1f}" if secs is not None else ""
    return {
        "method": method, "k": k, "nmi": c["nmi"], "ari": c["ari"], "purity": c["purity"],
        "acc": m["accuracy"], "f1": m["macro_f1"], "left_out": sum(v is None for u, v in pred.items() if u in gold),
        "s_per_1k": per_k,
    }  # fmt: skip


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    head = f"{'method':<34} {'k':>4} {'NMI':>6} {'ARI':>6} {'purity':>6} {'acc':>6} {'mF1':>6} {'out':>4} {'s/1k users':>10}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['method']:<34} {r['k']!s:>4} {r['nmi']:>6.3f} {r['ari']:>6.3f} {r['purity']:>6.3f} "
            f"{r['acc']:>6.3f} {r['f1']:>6.3f} {r['left_out']:>4} {r['s_per_1k']:>10}"
        )


def run_dataset(name: str, args: argparse.Namespace, load: Callable[[Store, Path], Gold]) -> Any:
    with tempfile.TemporaryDirectory(prefix="bench_discover_") as tmp, Store(Path(tmp) / "s.duckdb") as store:
        golds = load(store, Path(tmp))
        users = sorted(next(iter(golds.values())))
        n = len(users)
        events = store.events_for(users)
        chinese = choose_embedder("auto", events) != "embedding:default"
        auto, auto_s = ours(store, None, args.naming, args)
        print(
            f"\n== {name}: {n} users; discover (k auto) {auto_s:.1f} s cold ({auto.stats['embed_s']:.1f} s "
            f"embedding, {auto.stats['cluster_s']:.1f} s clustering+terms, {auto.stats['name_s']:.1f} s naming "
            f"{auto.stats['calls']} LLM calls by {args.backend if args.naming == 'llm' else 'none'}, "
            f"{auto.stats['named_by_terms']} of {len(auto.segments)} segments named from their terms)"
        )
        again, again_s = ours(store, None, args.naming, args)
        print(
            f"   rerun: {again_s:.1f} s, {again.stats['calls']} LLM calls, {again.stats['cache_hits']} cache hits, "
            f"{again.stats['embedded_users']} users embedded"
        )
        auto_labels, label_s = timed(lambda: label_with(store, auto, chinese))
        vec = _vectors(store, users, events)
        docs = [user_document(events[u], 30, 500) for u in vec.user_ids]
        for gold_name, gold in golds.items():
            k_gold = len(set(gold.values()))
            rows = [
                row("discover k=auto (clusters)", auto.stats["k"], auto.assignments, gold, auto_s, n),
                row("discover k=auto + label", auto.stats["k"], auto_labels, gold, auto_s + label_s, n),
            ]
            fixed, fixed_s = ours(store, k_gold, "terms", args)
            rows.append(row(f"discover k={k_gold} (clusters)", k_gold, fixed.assignments, gold, fixed_s, n))
            fixed_labels, fl_s = timed(lambda fixed=fixed: label_with(store, fixed, chinese))
            rows.append(row(f"discover k={k_gold} + label", k_gold, fixed_labels, gold, fixed_s + fl_s, n))
            for k in sorted({k_gold, auto.stats["k"]}):
                labels, secs = timed(lambda k=k: tfidf_kmeans(docs, k, args.seed))
                rows.append(row("tfidf-kmeans", k, as_map(vec.user_ids, labels), gold, secs, n))
            if not args.no_bertopic:
                for topics in (None, k_gold):
                    labels, secs = timed(
                        lambda t=topics: bertopic(docs, vec.matrix, args.min_size, args.seed, t)
                    )
                    found = len(set(labels.tolist()) - {-1})
                    what = "bertopic (auto)" if topics is None else f"bertopic nr_topics={k_gold}"
                    rows.append(row(f"{what} *", found, as_map(vec.user_ids, labels), gold, secs, n))
            print_table(f"{name} vs {gold_name} gold ({k_gold} segments, {len(gold)} users)", rows)
        print("\n* bertopic: seconds exclude the embeddings it shares with discover; out = its outliers (-1)")
        return auto


def refine_experiment(args: argparse.Namespace) -> None:
    """The --from loop on 20 Newsgroups coarse: discover k=6, keep 4 segments, let --from propose the rest."""
    with tempfile.TemporaryDirectory(prefix="bench_discover_") as tmp, Store(Path(tmp) / "s.duckdb") as store:
        gold = newsgroups_users(store, args.n, Path(tmp))["20ng coarse"]
        first, _ = ours(store, 6, "terms", args)
        mapping = mapped_scores(first.assignments, gold)["mapping"]
        tax = store.taxonomy(first.taxonomy_hash)
        assert tax is not None
        keep = tax.segments[:4]
        kept = tax.model_copy(update={"segments": keep})
        dropped_gold = sorted(set(gold.values()) - {mapping.get(s.id) for s in keep})
        cfg = DiscoverConfig(naming="terms", seed=args.seed, min_size=args.min_size)
        refined, secs = timed(lambda: discover_segments(store, cfg, kept=kept))
        new = [s for s in refined.segments if s.named_by != "kept"]
        print(
            f"\n== --from on 20ng coarse ({len(gold)} users): kept 4 of 6 discovered segments "
            f"(mapped to {', '.join(sorted(mapping.get(s.id, '?') for s in keep))}; dropped gold: "
            f"{', '.join(dropped_gold)}); fit threshold {refined.stats['fit_threshold']:.3f}, "
            f"{sum(s.size for s in new)} users fit none -> {len(new)} new segment(s), {secs:.1f} s"
        )
        for seg in new:
            members = [gold[u] for u in seg.members if u in gold]
            top = max(set(members), key=members.count) if members else "-"
            share = members.count(top) / max(len(members), 1)
            print(
                f"   new {seg.id:<28} {seg.size:>4} users, top terms {', '.join(seg.terms[:5])}; "
                f"gold majority {top} ({share:.0%})"
            )
        rows = [
            row("discover k=6", 6, first.assignments, gold, None, len(gold)),
            row(
                "after --from (4 kept + new)",
                len(refined.segments),
                refined.assignments,
                gold,
                None,
                len(gold),
            ),
        ]
        print_table("20ng coarse: before and after the --from loop", rows)


def _vectors(store: Store, users: list[str], events: dict[str, Any]) -> UserVectors:
    emb = get_embedder(choose_embedder("auto", events))
    return user_vectors(
        store, emb, {u: h for u, h in _hashes(store, users).items()}, events, DiscoverConfig(), lambda p: None
    )


def _hashes(store: Store, users: list[str]) -> dict[str, str]:
    from llm_labeler.store.discovery import select_users

    wanted = set(users)
    return {u: h for u, h in select_users(store, None, None) if u in wanted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=400, help="20 Newsgroups users (held-out half)")
    parser.add_argument("--backend", default="llamacpp:default", help="LLM that names the k=auto segments")
    parser.add_argument("--naming", default="llm", choices=["llm", "terms"], help="for the k=auto run")
    parser.add_argument("--min-size", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--datasets", default="20ng,toutiao")
    parser.add_argument("--no-bertopic", action="store_true")
    parser.add_argument("--show", type=int, default=3, help="proposed segments to print as written (YAML)")
    parser.add_argument("--refine", action="store_true", help="only the --from loop experiment (20ng coarse)")
    args = parser.parse_args(argv)
    if args.refine:
        refine_experiment(args)
        return 0
    if args.naming == "llm":
        get_llm(args.backend)  # fail early on a bad id
    shown = []
    loaders = {
        "20ng": lambda s, w: newsgroups_users(s, args.n, w),
        "toutiao": lambda s, w: toutiao_users(s),
    }
    for name in args.datasets.split(","):
        shown.append((name, run_dataset(name, args, loaders[name])))
    for name, result in shown:
        blocks = result.yaml_text.split("\n\n")[1 : 1 + args.show]
        print(f"\n{name}: the first {args.show} proposed segments as written (run {result.run_id})")
        print("\n\n".join(blocks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
