"""Bootstrapped training labels: export a run's labels, a human review loop, and explanations of the student."""

from __future__ import annotations

import csv
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from ..errors import InputError, UnknownUserError
from ..schemas import Taxonomy
from ..store import Store
from ..store import student as sq
from .scoring import load_model

__all__ = [
    "REVIEW_COLUMNS",
    "Explanation",
    "explain_user",
    "export_labels",
    "label_config_path",
    "label_studio_config",
    "review_export",
    "review_import",
]

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
_REVIEW_FORMATS = {".csv": "csv", ".json": "label-studio"}
# Label Studio: the names of the Text object and the Choices control in label_studio_config (tasks refer to them).
_LS_TEXT, _LS_CHOICES = "history", "segment"
_TASK_CHARS = 4000  # Label Studio shows a scrolling text box: more history than a spreadsheet cell holds


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
    """Write n users of a run for humans to check: the least confident, or a random audit sample.

    The extension picks the format: `.csv` for a spreadsheet (fill in correct_segment), `.json` for Label Studio
    tasks with the LLM's label as a pre-annotation, plus its labeling config beside it (`label_config_path`).
    """
    path = Path(out)
    fmt = _review_format(path, "--out")
    if sample not in ("least-confident", "random"):
        raise InputError(f"--sample must be least-confident or random, not {sample!r}")
    run_id = sq.labeling_run(store, run_id)
    tax = store.run_taxonomy(run_id)
    chosen = _sample(store.labels(run_id), n, sample, seed)
    sq.refresh_docs(store)
    docs = sq.docs_for(store, [lab["user_id"] for lab in chosen])
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "csv":
        _write_csv(path, [_review_row(lab, tax, docs.get(lab["user_id"], ("", ""))[0]) for lab in chosen])
    else:
        tasks = [_task(lab, tax, docs.get(lab["user_id"], ("", ""))[0]) for lab in chosen]
        path.write_text(json.dumps(tasks, ensure_ascii=False, indent=1), encoding="utf-8")
        label_config_path(path).write_text(label_studio_config(tax), encoding="utf-8")
    return len(chosen)


def label_config_path(path: str | Path) -> Path:
    """Where `review export --out tasks.json` writes the Label Studio labeling config: tasks.label_config.xml."""
    return Path(path).with_suffix(".label_config.xml")


def _review_format(path: Path, what: str) -> str:
    fmt = _REVIEW_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{what} {path}: use a .csv file (a spreadsheet) or a .json file (Label Studio tasks)"
        )
    return fmt


def _sample(labels: list[dict[str, Any]], n: int, sample: str, seed: int) -> list[dict[str, Any]]:
    usable = [lab for lab in labels if lab["error"] is None]
    if sample == "random":
        usable.sort(key=lambda lab: hashlib.sha256(f"{seed}:{lab['user_id']}".encode()).hexdigest())
    else:
        usable.sort(key=lambda lab: (not lab["abstained"], lab["confidence"], lab["user_id"]))
    return usable[:n]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, REVIEW_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


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


def _task(lab: dict[str, Any], tax: Taxonomy, doc: str) -> dict[str, Any]:
    """One Label Studio task: the user's data, and the LLM's label as a pre-annotation of the Choices control."""
    confidence = round(float(lab["confidence"]), 3)
    data = {
        "user_id": lab["user_id"],
        "taxonomy_name": tax.name,
        "taxonomy_hash": tax.content_hash(),
        "llm_segment": lab["primary_segment"] or "",
        "llm_confidence": confidence,
        "llm_label": f"LLM: {lab['primary_segment'] or 'abstained'} (confidence {confidence:.3f})",
        "history": " ".join(doc.split())[:_TASK_CHARS],
    }
    segments = [] if lab["abstained"] else lab["segments"] or [lab["primary_segment"]]
    chosen = [s for s in segments if s in tax.ids]
    if not chosen:  # an abstain: nothing to pre-fill
        return {"data": data, "predictions": []}
    result = {
        "id": "llm",
        "type": "choices",
        "from_name": _LS_CHOICES,
        "to_name": _LS_TEXT,
        "value": {"choices": chosen},
    }
    return {
        "data": data,
        "predictions": [{"model_version": lab["model_id"], "score": confidence, "result": [result]}],
    }


def label_studio_config(tax: Taxonomy) -> str:
    """A Label Studio labeling config (XML) for `review export` tasks: the history and one choice per segment."""
    mode = "multiple" if tax.multi_label else "single-radio"
    choices = "".join(
        f"    <Choice value={quoteattr(s.id)} hint={quoteattr(f'{s.name}: {s.description}')}/>\n"
        for s in tax.segments
    )
    header = f"Which {tax.name} segment{'s fit' if tax.multi_label else ' fits'} this user?"
    return (
        "<View>\n"
        f"  <Header value={quoteattr(header)}/>\n"
        '  <Text name="llm" value="$llm_label"/>\n'
        f'  <Text name="{_LS_TEXT}" value="$history"/>\n'
        f'  <Choices name="{_LS_CHOICES}" toName="{_LS_TEXT}" choice="{mode}" required="true" showInline="false">\n'
        f"{choices}  </Choices>\n"
        f'  <TextArea name="note" toName="{_LS_TEXT}" placeholder="note (optional)" maxSubmissions="1"/>\n'
        "</View>\n"
    )


@dataclass
class _Correction:
    """One reviewed user from a review file, with where it was read (for error messages)."""

    where: str
    user_id: str
    taxonomy_hash: str
    segments: list[str]


def review_import(store: Store, path: str | Path) -> dict[str, int]:
    """Read reviewed rows back as gold (source 'review:<file>'); any bad row stops the import, nothing is stored.

    `.csv`: rows whose correct_segment is filled in. `.json`: Label Studio's JSON export of the tasks that
    `review export` wrote; the reviewer's choice is read from `annotations[].result[].value.choices` (the newest
    annotation that was not cancelled), tasks without one are skipped.
    """
    p = Path(path)
    fmt = _review_format(p, "review file")
    if not p.is_file():
        raise InputError(f"review file not found: {p}")
    found = _read_review(p) if fmt == "csv" else _read_label_studio(p)
    return {"rows": len(found), "imported": _store_corrections(store, p, found)}


def _store_corrections(store: Store, p: Path, found: list[_Correction]) -> int:
    """Check every correction against its taxonomy, then store them all as gold, or none."""
    by_tax: dict[str, dict[str, list[str]]] = {}
    for c in found:
        tax = store.taxonomy(c.taxonomy_hash)
        if tax is None:
            raise InputError(f"{c.where}: unknown taxonomy_hash {c.taxonomy_hash[:12]!r}")
        for seg in c.segments:
            if seg not in tax.ids:
                raise InputError(f"{c.where}: segment {seg!r} is not in taxonomy {tax.name} ({tax.ids})")
        if len(c.segments) > 1 and not tax.multi_label:
            raise InputError(f"{c.where}: {len(c.segments)} segments chosen; taxonomy {tax.name} takes one")
        by_tax.setdefault(tax.name, {})[c.user_id] = c.segments
    # UnknownUserError names the users that are not in the store
    store.user_ids([u for gold in by_tax.values() for u in gold])
    return sum(store.set_gold(name, gold, f"review:{p.name}") for name, gold in by_tax.items())


def _read_review(p: Path) -> list[_Correction]:
    try:
        with p.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"user_id", "taxonomy_hash", "correct_segment"} - set(reader.fieldnames or [])
            if missing:
                raise InputError(
                    f"{p}: missing column(s) {sorted(missing)}; write the file with `review export`"
                )
            rows = [(i + 2, r) for i, r in enumerate(reader) if (r.get("correct_segment") or "").strip()]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{p}: not a readable UTF-8 CSV file ({exc})") from exc
    return [
        _Correction(
            f"{p}, line {line}", r["user_id"].strip(), r["taxonomy_hash"], [r["correct_segment"].strip()]
        )
        for line, r in rows
    ]


def _read_label_studio(p: Path) -> list[_Correction]:
    try:
        tasks = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{p}: not a Label Studio JSON export ({exc})") from exc
    if not isinstance(tasks, list):
        raise InputError(
            f"{p}: expected a JSON list of tasks (Label Studio's JSON export, not JSON-MIN or CSV)"
        )
    found = []
    for i, task in enumerate(tasks, start=1):
        where = f"{p}, task {i}" + (f" (id {task['id']})" if isinstance(task, dict) and "id" in task else "")
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise InputError(f"{where}: a task is an object with a 'data' object")
        data = task["data"]
        missing = sorted(k for k in ("user_id", "taxonomy_hash") if not isinstance(data.get(k), str))
        if missing:
            raise InputError(
                f"{where}: data lacks {missing}; export the tasks with `review export --out FILE.json`"
            )
        choices = _choices(task, where)
        if choices:
            found.append(_Correction(where, data["user_id"].strip(), data["taxonomy_hash"], choices))
    return found


def _choices(task: dict[str, Any], where: str) -> list[str]:
    """The reviewer's choices in the newest annotation that was not cancelled ([] when nobody answered)."""
    annotations = task.get("annotations") or []
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise InputError(f"{where}: 'annotations' must be a list of objects")
    done = [a for a in annotations if not a.get("was_cancelled")]
    done.sort(key=lambda a: str(a.get("updated_at") or a.get("created_at") or ""))
    for annotation in reversed(done):
        results = annotation.get("result") or []
        if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
            raise InputError(f"{where}: an annotation's 'result' must be a list of objects")
        picked = [
            r
            for r in results
            if r.get("type") == "choices" and r.get("from_name", _LS_CHOICES) == _LS_CHOICES
        ]
        if picked:
            value = picked[-1].get("value")
            choices = value.get("choices") if isinstance(value, dict) else None
            if not isinstance(choices, list) or not choices or not all(isinstance(c, str) for c in choices):
                raise InputError(
                    f"{where}: value.choices must be a non-empty list of segment ids, got {choices!r}"
                )
            return [c.strip() for c in choices]
    return []


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
