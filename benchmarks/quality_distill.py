"""Student quality on 20 Newsgroups: trained on the embedded default pipeline's labels, judged on held-out users.

Needs a store holding every 20 Newsgroups author (min 3 posts), their gold in `gold`, and one label run over some of
them (the LLM's labels): see --help. Users are split by user (newsgroups.split_users, 30% test, seed 0): the student
trains only on labeled users of the train side and is scored on labeled users of the test side, where the LLM's own
labels are scored too (same users, same gold). For N in --sizes (train users with an LLM label), prints accuracy and
macro-F1 vs gold of:

    llm           the LLM labels themselves on the test users (abstains count as misses)
    student       StudentClassifier on the N users' LLM labels, confidence as sample weight
    conf>=q50     the same on the more confident half of the N labels only
    self-train    retrained on the users where the cross-validated student agrees with the LLM
    pseudo        plus the student's confident (p >= 0.7) predictions on the other train-side users (their LLM
                  labels unused: they stand in for the users nobody paid the LLM for)
    +emb          student features + mean MiniLM sentence embedding of the history (where installed), with the
                  embedding time per user: does it pay for its cost?
    gold-trained  the same student on the N users' gold labels (the ceiling that label noise leaves)

Then a feature ablation on gold labels (300 and 1000 train-side users, all test-side users): word unigrams vs
uni+bigrams vs + char 3-5-grams, with predict throughput on these (long, ~2,500-character) histories.

    .venv/bin/python benchmarks/quality_distill.py --db /tmp/distill20ng/20ng.duckdb --run RUN_ID

--zh: the student's featurizer on the Chinese gold (shared/datasets/toutiao_readers, 400 users), supervised, in the
README's own protocol (5-fold StratifiedKFold, shuffle, seed 0; a user's headlines joined by newlines), next to the
README's char-bigram TF-IDF + LogisticRegression baseline run on the same folds: the student before unspaced-script
n-grams, with each `cjk_ngrams` choice, on the product's own documents (ingest -> user_docs: titles, keywords and
event meta), and with jieba words where jieba is importable (it is not a dependency: put it on PYTHONPATH).

    .venv/bin/python benchmarks/quality_distill.py --zh [--folds 5] [--zh-configs NAME,...] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression

from llm_labeler.datasets import newsgroups as ng
from llm_labeler.metrics import classification_metrics
from llm_labeler.store import Store
from llm_labeler.store import student as sq
from llm_labeler.student import StudentClassifier, cross_val_predict_student

SEGS = list(ng.COARSE_IDS)
ZH_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "toutiao_readers"
# name -> (documents, StudentClassifier parameters); "baseline" and "jieba" are built separately
ZH_CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "before": ("titles", {"cjk_ngrams": (0, 0)}),
    "cjk 2": ("titles", {"cjk_ngrams": (2, 2)}),
    "cjk 1-2": ("titles", {"cjk_ngrams": (1, 2)}),
    "cjk 1-3": ("titles", {"cjk_ngrams": (1, 3)}),
    "cjk 2-3": ("titles", {"cjk_ngrams": (2, 3)}),
    "default": ("titles", {}),
    "default +kw": ("titles+keywords", {}),
    "default product docs": ("product", {}),
}


def metrics(gold: list[str], pred: list[Any]) -> str:
    """acc / macro-F1 as text."""
    m = classification_metrics(gold, [None if p is None else str(p) for p in pred], SEGS)
    return f"acc {m['accuracy']:.3f}  macro-F1 {m['macro_f1']:.3f}"


def embed(texts: dict[str, list[str]]) -> tuple[dict[str, np.ndarray], float]:
    """Mean unit embedding of each user's events (subject + first 500 chars), and seconds per user."""
    from llm_labeler.backends.embedding import EmbeddingModel

    model = EmbeddingModel()
    started = time.perf_counter()
    out = {}
    for uid, items in texts.items():
        v = model.encode([t[:500] for t in items[-30:]]).mean(axis=0)
        out[uid] = v / (np.linalg.norm(v) or 1.0)
    return out, (time.perf_counter() - started) / max(len(texts), 1)


def main() -> None:
    """Learning curve and variants (or, with --zh, the Chinese gold table)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--db")
    p.add_argument("--run")
    p.add_argument("--sizes", default="100,300,1000")
    p.add_argument("--no-embeddings", action="store_true")
    p.add_argument("--zh", action="store_true", help="the Chinese gold table instead (needs no --db/--run)")
    p.add_argument("--zh-dir", type=Path, default=ZH_DIR)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument(
        "--zh-configs",
        default="baseline,baseline +kw,jieba,before,cjk 2,cjk 1-2,cjk 1-3,cjk 2-3,default +kw,default product docs",
        help=f"rows, comma-separated, from: baseline, baseline +kw, jieba, {', '.join(ZH_CONFIGS)}",
    )
    p.add_argument("--json", type=Path, help="also write the --zh rows here")
    args = p.parse_args()
    if args.zh:
        rows = zh_table(args.zh_dir, args.zh_configs.split(","), args.folds)
        print_zh(rows, args.folds)
        if args.json:
            args.json.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
        return
    if not (args.db and args.run):
        p.error("--db and --run are required (or --zh)")
    users = ng.load_users()
    train_side, test_side = ng.split_users(users, 0.3, seed=0)
    gold = {u.user_id: u.gold_coarse for u in users}
    texts = {u.user_id: [f"{e['item_title'] or ''} {e['text'] or ''}" for e in u.events] for u in users}
    with Store(args.db) as store:
        sq.refresh_docs(store)
        docs = sq.docs_for(store, list(gold))
        labels = {r["user_id"]: r for r in store.labels(args.run)}
    usable = {
        u: r for u, r in labels.items() if r["primary_segment"] and not r["abstained"] and not r["error"]
    }
    train_ids = [u.user_id for u in train_side if u.user_id in usable]
    test_ids = [u.user_id for u in test_side if u.user_id in labels]
    unlabeled = [u.user_id for u in train_side if u.user_id not in labels]
    X = {u: [docs.get(u, ("", ""))[0], docs.get(u, ("", ""))[1]] for u in gold}

    def xs(ids: list[str]) -> np.ndarray:
        return np.array([X[u] for u in ids], dtype=object)

    g_test = [gold[u] for u in test_ids]
    print(
        f"run {args.run}: {len(labels)} labeled users ({len(usable)} usable); train side {len(train_ids)} "
        f"labeled + {len(unlabeled)} unlabeled; test side {len(test_ids)} labeled users"
    )
    print(
        f"llm labels on the test users:   {metrics(g_test, [labels[u]['primary_segment'] for u in test_ids])}"
    )
    emb, emb_s = ({}, 0.0) if args.no_embeddings else embed({u: texts[u] for u in gold})
    if emb:
        print(
            f"(MiniLM embeddings: {emb_s * 1000:.0f} ms a user; the student's own features: see bench_score)"
        )
    for n in [int(s) for s in args.sizes.split(",")]:
        ids = sorted(train_ids, key=lambda u: ng._hash_rank(1, u))[:n]
        if len(ids) < n:
            print(
                f"\nN={n}: only {len(ids)} labeled train-side users exist in this run: N={len(ids)} instead"
            )
        rest = [u for u in train_ids if u not in set(ids)] + unlabeled
        run_size(ids, usable, gold, xs, test_ids, g_test, rest, emb)
    feature_ablation(train_side, test_side, xs)


def run_size(
    ids: list[str],
    usable: dict[str, Any],
    gold: dict[str, str],
    xs: Any,
    test_ids: list[str],
    g_test: list[str],
    unlabeled: list[str],
    emb: dict[str, np.ndarray],
) -> None:
    """Every variant for one N."""
    y = np.array([usable[u]["primary_segment"] for u in ids])
    w = np.array([max(usable[u]["confidence"], 1e-3) for u in ids])
    Xtr, Xte = xs(ids), xs(test_ids)
    print(
        f"\nN={len(ids)} (LLM labels vs gold on these train users: {metrics([gold[u] for u in ids], list(y))})"
    )
    est = StudentClassifier().fit(Xtr, y, sample_weight=w)
    print(f"  student        {metrics(g_test, list(est.predict(Xte)))}")
    q = w >= np.median(w)
    print(
        f"  conf>=q50      {metrics(g_test, list(StudentClassifier().fit(Xtr[q], y[q], sample_weight=w[q]).predict(Xte)))}  ({q.sum()} users)"
    )
    oof = cross_val_predict_student(StudentClassifier(), Xtr, y, w, 5)
    if oof is not None:
        keep = (oof == y) | ~np.isin(y, y[oof == y])
        st = StudentClassifier().fit(Xtr[keep], y[keep], sample_weight=w[keep])
        print(f"  self-train     {metrics(g_test, list(st.predict(Xte)))}  (kept {keep.sum()} of {len(y)})")
    if unlabeled:
        Xu = xs(unlabeled)
        pu = est.predict_proba(Xu)
        conf = pu.max(axis=1) >= 0.7
        Xp = np.concatenate([Xtr, Xu[conf]])
        yp = np.concatenate([y, est.classes_[pu.argmax(axis=1)][conf]])
        wp = np.concatenate([w, pu.max(axis=1)[conf]])
        ps = StudentClassifier().fit(Xp, yp, sample_weight=wp)
        print(
            f"  pseudo         {metrics(g_test, list(ps.predict(Xte)))}  (+{conf.sum()} pseudo-labeled users)"
        )
    if emb:
        feats = est.features_
        Etr = np.vstack([emb[u] for u in ids])
        Ete = np.vstack([emb[u] for u in test_ids])
        Ftr, Fte = (
            sp.hstack([feats.transform(Xtr), sp.csr_matrix(Etr)]).tocsr(),
            sp.hstack([feats.transform(Xte), sp.csr_matrix(Ete)]).tocsr(),
        )
        lr = LogisticRegression(C=10.0, class_weight="balanced", solver="newton-cg", max_iter=1000)
        print(f"  +emb           {metrics(g_test, list(lr.fit(Ftr, y, sample_weight=w).predict(Fte)))}")
    yg = np.array([gold[u] for u in ids])
    print(f"  gold-trained   {metrics(g_test, list(StudentClassifier().fit(Xtr, yg).predict(Xte)))}")


def feature_ablation(train: list[Any], test: list[Any], xs: Any) -> None:
    """Which features pay for themselves (gold labels, so label noise does not hide differences)."""
    Xtr, Xte = xs([u.user_id for u in train]), xs([u.user_id for u in test])
    ytr, yte = np.array([u.gold_coarse for u in train]), [u.gold_coarse for u in test]
    configs: dict[str, dict[str, Any]] = {
        "unigrams, 2^18": {"word_bits": 18, "word_ngrams": 1},
        "uni+bigrams, 2^20": {"word_bits": 20, "word_ngrams": 2},
        "unigrams + char 3-5, 2^18": {"word_bits": 18, "word_ngrams": 1, "char_ngrams": (3, 5)},
    }
    print(f"\nfeature ablation (gold-trained, {len(yte)} test users)")
    for n in (300, 1000):
        for name, cfg in configs.items():
            est = StudentClassifier(**cfg).fit(Xtr[:n], ytr[:n])
            t = time.perf_counter()
            pred = est.predict(Xte)
            rate = len(yte) / (time.perf_counter() - t)
            print(f"  N={n:<5} {name:<27} {metrics(yte, list(pred))}  predict {rate:,.0f} users/s")


def zh_docs(folder: Path, keywords: bool = False) -> tuple[list[str], list[str], list[str]]:
    """(user ids, documents, gold) of the Chinese readers, as the README's baseline.py builds its documents:
    a user's headlines joined by newlines (each followed by its keywords, commas made spaces, with keywords)."""
    with (folder / "gold.csv").open(encoding="utf-8", newline="") as fh:
        gold = {r["user_id"]: r["segment"] for r in csv.DictReader(fh)}
    docs: dict[str, list[str]] = {}
    with (folder / "events.csv").open(encoding="utf-8", newline="") as fh:
        for r in csv.DictReader(fh):
            piece = r["item_title"] + (" " + r["text"].replace(",", " ") if keywords and r["text"] else "")
            docs.setdefault(r["user_id"], []).append(piece)
    users = sorted(gold)
    return users, ["\n".join(docs[u]) for u in users], [gold[u] for u in users]


def zh_product_docs(folder: Path, users: list[str]) -> np.ndarray:
    """(doc, meta) rows as the product builds them: events.csv ingested into a scratch store -> user_docs."""
    with tempfile.TemporaryDirectory() as tmp, Store(Path(tmp) / "zh.duckdb") as store:
        store.ingest(folder / "events.csv")
        sq.refresh_docs(store)
        docs = sq.docs_for(store, users)
    return np.array([list(docs.get(u, ("", ""))) for u in users], dtype=object)


def zh_cv(make: Callable[[], Any], X: Any, y: list[str], folds: int) -> dict[str, Any]:
    """Per-fold macro-F1 / accuracy of a fresh make() per fold, on the README's folds; fit and predict seconds."""
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    Xa, ya = np.asarray(X, dtype=object), np.asarray(y)
    f1s, accs, fit_s, pred_s = [], [], 0.0, 0.0
    for tr, te in StratifiedKFold(n_splits=folds, shuffle=True, random_state=0).split(Xa, ya):
        t = time.perf_counter()
        model = make().fit(list(Xa[tr]) if Xa.ndim == 1 else Xa[tr], ya[tr])
        fit_s += time.perf_counter() - t
        t = time.perf_counter()
        pred = model.predict(list(Xa[te]) if Xa.ndim == 1 else Xa[te])
        pred_s += time.perf_counter() - t
        f1s.append(float(f1_score(ya[te], pred, average="macro")))
        accs.append(float(accuracy_score(ya[te], pred)))
    return {
        "macro_f1": statistics.mean(f1s),
        "macro_f1_std": statistics.stdev(f1s) if len(f1s) > 1 else 0.0,
        "accuracy": statistics.mean(accs),
        "folds": [round(f, 4) for f in f1s],
        "fit_s": round(fit_s, 2),
        "predict_users_per_s": round(len(ya) / pred_s) if pred_s else None,
    }


def _baseline() -> Any:
    """The README's supervised baseline, verbatim."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline

    return make_pipeline(
        TfidfVectorizer(analyzer="char", ngram_range=(2, 2), sublinear_tf=True),
        LogisticRegression(max_iter=2000),
    )


def _jieba_docs(docs: list[str]) -> list[str] | None:
    """Each document as jieba words separated by spaces (None when jieba is not importable)."""
    try:
        import jieba
    except ImportError:
        return None
    jieba.setLogLevel(60)
    return [" ".join(w for w in jieba.cut(d) if w.strip()) for d in docs]


def zh_table(folder: Path, names: list[str], folds: int) -> list[dict[str, Any]]:
    """One row per configuration name (see ZH_CONFIGS, plus baseline, baseline +kw and jieba)."""
    users, titles, y = zh_docs(folder)
    inputs: dict[str, Any] = {"titles": titles, "titles+keywords": zh_docs(folder, keywords=True)[1]}
    rows = []
    for name in names:
        if name in ("baseline", "baseline +kw"):
            docs = "titles+keywords" if name.endswith("+kw") else "titles"
            X, make = inputs[docs], _baseline
        elif name == "jieba":
            X, docs = _jieba_docs(titles), "titles, jieba words"
            if X is None:
                rows.append({"name": name, "docs": docs, "skipped": "jieba is not importable"})
                continue

            def make() -> Any:
                return StudentClassifier(cjk_ngrams=(0, 0))

        else:
            docs, params = ZH_CONFIGS[name]
            if docs == "product" and "product" not in inputs:
                inputs["product"] = zh_product_docs(folder, users)
            X = inputs[docs]

            def make(params: dict[str, Any] = params) -> Any:
                return StudentClassifier(**params)

        rows.append({"name": name, "docs": docs, **zh_cv(make, X, y, folds)})
    return rows


def print_zh(rows: list[dict[str, Any]], folds: int) -> None:
    """The --zh table."""
    print(f"Chinese gold (toutiao_readers, 400 users, 6 segments), supervised {folds}-fold CV, README folds")
    print(f"{'row':<22} {'documents':<26} {'macro-F1':>15} {'accuracy':>9} {'fit s':>7} {'predict u/s':>12}")
    for r in rows:
        if "skipped" in r:
            print(f"{r['name']:<22} {r['docs']:<26} skipped: {r['skipped']}")
            continue
        f1 = f"{r['macro_f1']:.3f} +- {r['macro_f1_std']:.3f}"
        print(
            f"{r['name']:<22} {r['docs']:<26} {f1:>15} {r['accuracy']:>9.3f} {r['fit_s']:>7.2f} "
            f"{r['predict_users_per_s'] or 0:>12,}"
        )


if __name__ == "__main__":
    main()
