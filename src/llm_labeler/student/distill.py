"""Distill a run's LLM labels into a student classifier: training set, cross-validated report, saved model."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..metrics import classification_metrics, per_segment
from ..schemas import Taxonomy
from ..store import Store
from ..store import student as sq
from . import StudentClassifier, cross_val_predict_student, library_versions, save_student

__all__ = ["DistillConfig", "DistillReport", "TrainingSet", "distill", "training_set"]


@dataclass
class DistillConfig:
    """How the student is trained."""

    min_confidence: float = 0.0
    folds: int = 5
    self_train: bool = False  # retrain on the users where the cross-validated student agrees with the LLM
    C: float = 10.0
    word_ngrams: int = 1
    char_ngrams: tuple[int, int] = (0, 0)
    seed: int = 0


@dataclass
class TrainingSet:
    """Users, labels and weights taken from one run (review corrections applied)."""

    user_ids: list[str]
    labels: list[str]
    weights: list[float]
    excluded: dict[str, int]
    reviewed: int
    model_ids: list[str]
    prompt_hashes: list[str]


@dataclass
class DistillReport:
    """What distill built and how well the student matches the LLM and the gold labels."""

    model_path: str
    model_version: str
    run_id: str
    taxonomy: str
    n_train: int
    excluded: dict[str, int]
    reviewed: int
    cv: dict[str, Any]
    gold: dict[str, Any] = field(default_factory=dict)
    self_train_dropped: int = 0
    fit_s: float = 0.0


def training_set(store: Store, run_id: str, taxonomy: Taxonomy, min_confidence: float) -> TrainingSet:
    """Non-abstaining, non-failed labels at or above min_confidence, confidence as weight; review gold overrides."""
    reviewed = sq.review_gold(store, taxonomy.name)
    excluded: Counter[str] = Counter()
    rows: list[tuple[str, str, float]] = []
    models, prompts = Counter[str](), Counter[str]()
    for lab in store.labels(run_id):
        uid = lab["user_id"]
        if uid in reviewed:
            rows.append((uid, reviewed[uid], 1.0))
            continue
        reason = _exclusion(lab, min_confidence)
        if reason:
            excluded[reason] += 1
            continue
        rows.append((uid, lab["primary_segment"], max(float(lab["confidence"]), 1e-3)))
        models[lab["model_id"]] += 1
        prompts[lab["prompt_hash"] or ""] += 1
    users = [r[0] for r in rows]
    n_reviewed = sum(u in reviewed for u in users)
    return TrainingSet(
        users,
        [r[1] for r in rows],
        [r[2] for r in rows],
        dict(excluded),
        n_reviewed,
        [m for m, _ in models.most_common()],
        [p for p, _ in prompts.most_common()],
    )


def _exclusion(lab: dict[str, Any], min_confidence: float) -> str | None:
    if lab["error"]:
        return "failed"
    if lab["abstained"] or not lab["primary_segment"]:
        return "abstained"
    if lab["confidence"] < min_confidence:
        return "below min confidence"
    return None


def distill(store: Store, run_id: str, out: str | Path, config: DistillConfig | None = None) -> DistillReport:
    """Train, cross-validate and save a student for one run's labels; the model is registered in the store."""
    config = config or DistillConfig()
    run_id = sq.labeling_run(store, run_id)
    taxonomy = store.run_taxonomy(run_id)
    ts = training_set(store, run_id, taxonomy, config.min_confidence)
    _check_trainable(ts, run_id)
    sq.refresh_docs(store)
    docs = sq.docs_for(store, ts.user_ids)
    X = np.array([list(docs.get(u, ("", ""))) for u in ts.user_ids], dtype=object)
    y, w = np.asarray(ts.labels), np.asarray(ts.weights)
    est = _estimator(config)
    started = time.perf_counter()
    oof = cross_val_predict_student(est, X, y, w, config.folds, config.seed)
    keep = np.ones(len(y), dtype=bool)
    if config.self_train and oof is not None:
        keep = oof == y
        keep |= ~np.isin(y, y[keep])  # a segment the student never got right keeps its LLM labels
    est.fit(X[keep], y[keep], sample_weight=w[keep])
    fit_s = time.perf_counter() - started
    report = DistillReport(
        str(out),
        "",
        run_id,
        taxonomy.name,
        int(keep.sum()),
        ts.excluded,
        ts.reviewed,
        _cv_figures(y, oof, taxonomy),
        self_train_dropped=int((~keep).sum()),
        fit_s=round(fit_s, 3),
    )
    report.gold = _gold_figures(store, taxonomy, ts, oof)
    meta = _metadata(store, run_id, taxonomy, ts, est, config, report)
    report.model_version = save_student(est, meta, out)
    sq.register_model(store, report.model_version, str(out), meta, asdict(report))
    return report


def _check_trainable(ts: TrainingSet, run_id: str) -> None:
    if not ts.user_ids:
        raise InputError(f"run {run_id} has no usable labels (excluded: {ts.excluded or 'none'})")
    if len(set(ts.labels)) < 2:
        raise InputError(
            f"run {run_id} labels every usable user {ts.labels[0]!r}: a student needs two classes"
        )


def _estimator(config: DistillConfig) -> StudentClassifier:
    return StudentClassifier(word_ngrams=config.word_ngrams, char_ngrams=config.char_ngrams, C=config.C)


def _cv_figures(y: np.ndarray, oof: np.ndarray | None, tax: Taxonomy) -> dict[str, Any]:
    """Out-of-fold student vs LLM labels."""
    if oof is None:
        return {"note": "too few labels per segment to cross-validate"}
    return classification_metrics(list(y), list(oof), tax.ids)


def _gold_figures(store: Store, tax: Taxonomy, ts: TrainingSet, oof: np.ndarray | None) -> dict[str, Any]:
    """Out-of-fold student vs gold and LLM vs gold on the same users (gold not from review), per segment."""
    gold = sq.dataset_gold(store, tax.name)
    if oof is None or not gold:
        return {}
    idx = [i for i, u in enumerate(ts.user_ids) if u in gold]
    if not idx:
        return {}
    g = [gold[ts.user_ids[i]] for i in idx]
    student = [str(oof[i]) for i in idx]
    llm = [ts.labels[i] for i in idx]
    seg_s, seg_l = per_segment(g, student, tax.ids), per_segment(g, llm, tax.ids)
    return {
        "n": len(idx),
        "student": classification_metrics(g, student, tax.ids),
        "llm": classification_metrics(g, llm, tax.ids),
        "per_segment": {
            s: {"support": seg_s[s]["support"], "student_f1": seg_s[s]["f1"], "llm_f1": seg_l[s]["f1"]}
            for s in tax.ids
        },
    }


def _metadata(
    store: Store,
    run_id: str,
    tax: Taxonomy,
    ts: TrainingSet,
    est: StudentClassifier,
    config: DistillConfig,
    report: DistillReport,
) -> dict[str, Any]:
    run = store.get_run(run_id)
    return {
        "taxonomy_name": tax.name,
        "taxonomy_hash": tax.content_hash(),
        "taxonomy": tax.model_dump(mode="json"),
        "segments": tax.ids,
        "source_run": run_id,
        "source_run_kind": run["kind"],
        "label_model_id": ts.model_ids[0] if ts.model_ids else run["model_id"],
        "label_model_ids": ts.model_ids,
        "prompt_hash": ts.prompt_hashes[0] if ts.prompt_hashes else "",
        "prompt_hashes": ts.prompt_hashes,
        "feature_config": {k: _plain(v) for k, v in est.get_params().items()},
        "distill_config": {k: _plain(v) for k, v in asdict(config).items()},
        "n_train": report.n_train,
        # Users whose review correction it trained on: their scores are in-sample (audience shares refuses them).
        "reviewed_users": sorted(set(ts.user_ids) & set(sq.review_gold(store, tax.name))),
        "cv": report.cv,
        "library_versions": library_versions(),
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v
