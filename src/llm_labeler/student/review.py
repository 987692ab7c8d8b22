"""Bootstrapped training labels: export a run's labels, a human review loop, and explanations of the student."""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InputError, UnknownUserError
from ..schemas import Taxonomy
from ..store import Store
from ..store import student as sq
from .scoring import load_model

__all__ = ["REVIEW_COLUMNS", "Explanation", "explain_user", "export_labels", "review_export", "review_import"]

REVIEW_COLUMNS = (
    "user_id",
    "taxonomy_name",
    "taxonomy_hash",
    "llm_segment",
    "llm_confidence",
    "history",
    "correct_segment",
    "note",
)
_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


def export_labels(store: Store, run_id: str, out: str | Path, min_confidence: float = 0.0) -> int:
    """Write a run's usable labels (reviews applied) to .parquet, .csv or .jsonl; returns the row count."""
    path = Path(out)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"--out {path}: use a .parquet, .csv or .jsonl file name")
    run_id = sq.labeling_run(store, run_id)  # an unknown run is an error, not an empty file
    path.parent.mkdir(parents=True, exist_ok=True)
    return sq.export_labels(store, run_id, min_confidence, path, fmt)


def review_export(
    store: Store, run_id: str, out: str | Path, n: int = 50, sample: str = "least-confident", seed: int = 0
) -> int:
    """Write n users of a run for humans to check: the least confident, or a random audit sample."""
    if sample not in ("least-confident", "random"):
        raise InputError(f"--sample must be least-confident or random, not {sample!r}")
    run_id = sq.labeling_run(store, run_id)
    tax = store.run_taxonomy(run_id)
    labels = [lab for lab in store.labels(run_id) if lab["error"] is None]
    if sample == "random":
        labels.sort(key=lambda lab: hashlib.sha256(f"{seed}:{lab['user_id']}".encode()).hexdigest())
    else:
        labels.sort(key=lambda lab: (not lab["abstained"], lab["confidence"], lab["user_id"]))
    chosen = labels[:n]
    sq.refresh_docs(store)
    docs = sq.docs_for(store, [lab["user_id"] for lab in chosen])
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, REVIEW_COLUMNS)
        writer.writeheader()
        for lab in chosen:
            writer.writerow(_review_row(lab, tax, docs.get(lab["user_id"], ("", ""))[0]))
    return len(chosen)


def _review_row(lab: dict[str, Any], tax: Taxonomy, doc: str) -> dict[str, Any]:
    return {
        "user_id": lab["user_id"],
        "taxonomy_name": tax.name,
        "taxonomy_hash": tax.content_hash(),
        "llm_segment": lab["primary_segment"] or "",
        "llm_confidence": f"{lab['confidence']:.3f}",
        "history": " ".join(doc.split())[:600],
        "correct_segment": "",
        "note": "",
    }


def review_import(store: Store, path: str | Path) -> dict[str, int]:
    """Read reviewed rows back as gold (source 'review:<file>'); any bad row stops the import, nothing is stored."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"review file not found: {p}")
    rows = _read_review(p)
    by_tax: dict[str, dict[str, list[str]]] = {}
    for line, row in rows:
        tax = _taxonomy_of(store, row, p, line)
        seg = row["correct_segment"].strip()
        if seg not in tax.ids:
            raise InputError(f"{p}, line {line}: segment {seg!r} is not in taxonomy {tax.name} ({tax.ids})")
        by_tax.setdefault(tax.name, {})[row["user_id"].strip()] = [seg]
    users = [u for gold in by_tax.values() for u in gold]
    store.user_ids(users)  # raises UnknownUserError naming users that are not in the store
    stored = sum(store.set_gold(name, gold, f"review:{p.name}") for name, gold in by_tax.items())
    return {"rows": len(rows), "imported": stored}


def _read_review(p: Path) -> list[tuple[int, dict[str, str]]]:
    with p.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        missing = {"user_id", "taxonomy_hash", "correct_segment"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{p}: missing column(s) {sorted(missing)}; write the file with `review export`")
        return [(i + 2, r) for i, r in enumerate(reader) if (r.get("correct_segment") or "").strip()]


def _taxonomy_of(store: Store, row: dict[str, str], p: Path, line: int) -> Taxonomy:
    found = store.taxonomy(row["taxonomy_hash"])
    if found is None:
        raise InputError(f"{p}, line {line}: unknown taxonomy_hash {row['taxonomy_hash'][:12]!r}")
    return found


@dataclass
class Explanation:
    """The student's reasons next to the LLM's."""

    user_id: str
    model_version: str
    student_segment: str
    student_probability: float
    top_features: list[tuple[str, float]]
    llm: dict[str, Any] | None
    evidence: list[dict[str, Any]]


def explain_user(
    store: Store, user_id: str, model_path: str | Path | None = None, k: int = 12
) -> Explanation:
    """Top n-grams behind the student's segment for one user, and the LLM's latest label with its evidence."""
    store.user_ids([user_id])
    path = model_path or sq.latest_model(store)["path"]
    est, meta, _ = load_model(path)
    sq.refresh_docs(store)
    doc, metas = sq.docs_for(store, [user_id]).get(user_id, ("", ""))
    if not doc and not metas:
        raise UnknownUserError([user_id])
    proba = est.predict_proba([[doc, metas]])[0]
    j = int(proba.argmax())
    segment = str(est.classes_[j])
    llm = store.latest_label(user_id)
    return Explanation(
        user_id,
        meta["model_version"],
        segment,
        float(proba[j]),
        est.top_features(doc, metas, segment, k),
        llm,
        _evidence(store, user_id, (llm or {}).get("evidence") or []),
    )


def _evidence(store: Store, user_id: str, item_ids: list[str]) -> list[dict[str, Any]]:
    return store.event_snippets(user_id, item_ids)
