"""`review export/import` in Label Studio's formats: JSON tasks with pre-annotations, a labeling config, the export.

The store is a real DuckDB file with the fixture users; the run's labels are written directly (no model).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from llm_labeler.cli import app
from llm_labeler.errors import InputError, UnknownUserError
from llm_labeler.schemas import Taxonomy
from llm_labeler.store import LabelRecord, Store
from llm_labeler.store import student as sq
from llm_labeler.student.review import export_labels, label_config_path, review_export, review_import

SEGMENTS = ["computers", "recreation", "science", "politics", "religion", "marketplace"]


def _write_run(store: Store, tax: Taxonomy, gold: dict[str, str]) -> str:
    """A label run of the first 12 fixture users: the gold segment at rising confidence, the first one abstains."""
    h = tax.content_hash()
    store.remember_taxonomy(h, tax.name, tax.model_dump(mode="json"))
    run = store.start_run("label", "fake:echo", "fake-echo", tax.name, h, {})
    labels = []
    for i, (uid, seg) in enumerate(sorted(gold.items())[:12]):
        conf = 0.3 + i / 20
        labels.append(
            LabelRecord(
                run, uid, seg, [seg], {seg: conf}, conf, False, "fake-echo", "segment", "v1", "p", tax.name, h
            )
        )
    labels[0].primary_segment, labels[0].segments, labels[0].abstained = None, [], True
    store.write_labels(labels)
    store.finish_run(run, "done", {})
    return run


@pytest.fixture
def labeled(loaded_store: Store, coarse_taxonomy: Taxonomy, gold_coarse: dict[str, str]) -> tuple[Store, str]:
    return loaded_store, _write_run(loaded_store, coarse_taxonomy, gold_coarse)


def _annotate(task: dict[str, Any], task_id: int, *answers: tuple[list[str], bool, str]) -> dict[str, Any]:
    """A task as Label Studio's JSON export writes it after review: (choices, was_cancelled, updated_at) each."""
    annotations = [
        {
            "id": task_id * 10 + k,
            "completed_by": 1,
            "result": [
                {
                    "value": {"choices": choices},
                    "id": f"r{task_id}{k}",
                    "from_name": "segment",
                    "to_name": "history",
                    "type": "choices",
                    "origin": "manual",
                },
                {
                    "value": {"text": ["checked"]},
                    "id": "n",
                    "from_name": "note",
                    "to_name": "history",
                    "type": "textarea",
                },
            ],
            "was_cancelled": cancelled,
            "ground_truth": False,
            "created_at": "2025-01-01T10:00:00.000000Z",
            "updated_at": updated,
            "lead_time": 4.2,
            "task": task_id,
        }
        for k, (choices, cancelled, updated) in enumerate(answers)
    ]
    return {"id": task_id, "annotations": annotations, "drafts": [], "data": task["data"], "project": 3} | {
        "predictions": [k + 100 for k in range(len(task["predictions"]))]  # the export lists prediction ids
    }


def test_export_writes_tasks_with_pre_annotations_and_a_labeling_config(
    labeled: tuple[Store, str], tmp_path: Path
) -> None:
    store, run = labeled
    out = tmp_path / "tasks.json"
    assert review_export(store, run, out, n=5) == 5
    tasks = json.loads(out.read_text(encoding="utf-8"))
    assert len(tasks) == 5
    first, second = tasks[0], tasks[1]
    assert first["predictions"] == []  # the abstain comes first (least confident) and has nothing to pre-fill
    assert first["data"]["llm_label"].startswith("LLM: abstained")
    assert {"user_id", "taxonomy_name", "taxonomy_hash", "llm_segment", "llm_confidence", "history"} <= set(
        second["data"]
    )
    assert second["data"]["history"] and isinstance(second["data"]["llm_confidence"], float)
    [prediction] = second["predictions"]
    assert (
        prediction["model_version"] == "fake-echo" and prediction["score"] == second["data"]["llm_confidence"]
    )
    [result] = prediction["result"]
    assert result["type"] == "choices" and result["from_name"] == "segment" and result["to_name"] == "history"
    assert result["value"] == {"choices": [second["data"]["llm_segment"]]}
    config = label_config_path(out)
    assert config == tmp_path / "tasks.label_config.xml"
    view = ET.fromstring(config.read_text(encoding="utf-8"))
    choices = view.find("Choices")
    assert choices is not None and choices.get("name") == "segment" and choices.get("toName") == "history"
    assert choices.get("choice") == "single-radio"
    assert [c.get("value") for c in choices.findall("Choice")] == SEGMENTS
    texts = {t.get("name"): t.get("value") for t in view.findall("Text")}
    assert texts["history"] == "$history" and texts["llm"] == "$llm_label"  # data fields the tasks carry
    assert all(v and v[1:] in second["data"] for v in texts.values())


def test_round_trip_export_review_in_label_studio_import_as_gold(
    labeled: tuple[Store, str], tmp_path: Path
) -> None:
    store, run = labeled
    out = tmp_path / "tasks.json"
    review_export(store, run, out, n=5)
    tasks = json.loads(out.read_text(encoding="utf-8"))
    users = [t["data"]["user_id"] for t in tasks]
    exported = [
        _annotate(tasks[0], 1, (["religion"], False, "2025-01-01T10:00:00Z")),
        # two passes: the newest one that was not cancelled wins
        _annotate(
            tasks[1],
            2,
            (["politics"], False, "2025-01-01T10:00:00Z"),
            (["science"], False, "2025-01-02T10:00:00Z"),
            (["marketplace"], True, "2025-01-03T10:00:00Z"),
        ),
        # the reviewer accepts the LLM's pre-annotation
        _annotate(tasks[2], 3, ([tasks[2]["data"]["llm_segment"]], False, "2025-01-01T10:00:00Z")),
        _annotate(tasks[3], 4, (["computers"], True, "2025-01-01T10:00:00Z")),  # skipped by the reviewer
        _annotate(tasks[4], 5),  # not reviewed yet
    ]
    done = tmp_path / "project-3-at-2025-01-03.json"
    done.write_text(json.dumps(exported), encoding="utf-8")
    assert review_import(store, done) == {"rows": 3, "imported": 3}
    expected = {users[0]: "religion", users[1]: "science", users[2]: tasks[2]["data"]["llm_segment"]}
    assert sq.review_gold(store, "20ng_coarse") == expected
    gold = store.gold("20ng_coarse")
    assert {u: gold[u] for u in expected} == {u: [s] for u, s in expected.items()}
    labels = tmp_path / "labels.jsonl"
    export_labels(store, run, labels)  # corrections override the LLM's labels, named like the CSV path's
    rows = [json.loads(line) for line in labels.read_text(encoding="utf-8").splitlines()]
    assert {r["user_id"] for r in rows if r["label_source"] == f"review:{done.name}"} == set(expected)


def test_bad_choices_and_unknown_users_store_nothing(labeled: tuple[Store, str], tmp_path: Path) -> None:
    store, run = labeled
    out = tmp_path / "tasks.json"
    review_export(store, run, out, n=3)
    tasks = json.loads(out.read_text(encoding="utf-8"))
    stamp = "2025-01-01T10:00:00Z"
    good = _annotate(tasks[0], 7, (["religion"], False, stamp))
    cases = {
        "segment 'sports' is not in taxonomy 20ng_coarse": _annotate(tasks[1], 8, (["sports"], False, stamp)),
        "2 segments chosen; taxonomy 20ng_coarse takes one": _annotate(
            tasks[1], 8, (["science", "politics"], False, stamp)
        ),
    }
    path = tmp_path / "done.json"
    for message, bad in cases.items():
        path.write_text(json.dumps([good, bad]), encoding="utf-8")
        with pytest.raises(InputError, match=rf"done\.json, task 2 \(id 8\): {message}"):
            review_import(store, path)
    # the good task before the bad one was not stored either
    assert sq.review_gold(store, "20ng_coarse") == {}
    stranger = _annotate(tasks[1], 8, (["science"], False, stamp))
    stranger["data"] = stranger["data"] | {"user_id": "u_nobody"}
    path.write_text(json.dumps([good, stranger]), encoding="utf-8")
    with pytest.raises(UnknownUserError):
        review_import(store, path)
    assert sq.review_gold(store, "20ng_coarse") == {}


def _task(**changes: Any) -> dict[str, Any]:
    base = {"id": 4, "data": {"user_id": "u1", "taxonomy_hash": "abc"}, "annotations": []}
    return base | changes


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[{", r"bad\.json: not a Label Studio JSON export"),
        ('{"tasks": []}', r"bad\.json: expected a JSON list of tasks"),
        (json.dumps(["x"]), r"bad\.json, task 1: a task is an object with a 'data' object"),
        (
            json.dumps([_task(), _task(data="u1")]),
            r"bad\.json, task 2 \(id 4\): a task is an object with a 'data'",
        ),
        (
            json.dumps([_task(data={"user_id": "u1"})]),
            r"bad\.json, task 1 \(id 4\): data lacks \['taxonomy_hash'\]",
        ),
        (json.dumps([_task(annotations={"result": []})]), r"task 1 \(id 4\): 'annotations' must be a list"),
        (
            json.dumps([_task(annotations=[{"result": "religion"}])]),
            r"task 1 \(id 4\): an annotation's 'result'",
        ),
        (
            json.dumps(
                [_task(annotations=[{"result": [{"type": "choices", "value": {"choices": "religion"}}]}])]
            ),
            r"task 1 \(id 4\): value\.choices must be a non-empty list of segment ids, got 'religion'",
        ),
        (
            json.dumps([_task(annotations=[{"result": [{"type": "choices", "from_name": "segment"}]}])]),
            r"task 1 \(id 4\): value\.choices must be a non-empty list",
        ),
    ],
)
def test_malformed_label_studio_files_name_the_file_and_the_task(
    store: Store, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(InputError, match=message):
        review_import(store, path)


def test_unknown_extensions_and_binary_files_are_input_errors(
    labeled: tuple[Store, str], tmp_path: Path
) -> None:
    store, run = labeled
    with pytest.raises(InputError, match=r"--out .*review\.xlsx: use a \.csv file .* or a \.json file"):
        review_export(store, run, tmp_path / "review.xlsx")
    assert not (tmp_path / "review.xlsx").exists()
    (tmp_path / "review.txt").write_text("user_id\n")
    with pytest.raises(InputError, match=r"review file .*review\.txt: use a \.csv file"):
        review_import(store, tmp_path / "review.txt")
    for name in ("latin1.csv", "latin1.json"):
        (tmp_path / name).write_bytes(
            "user_id,taxonomy_hash,correct_segment\nu,h,caf\xe9\n".encode("latin-1")
        )
        with pytest.raises(InputError, match=name.replace(".", r"\.")):
            review_import(store, tmp_path / name)


def test_cli_review_export_and_import_label_studio(labeled: tuple[Store, str], tmp_path: Path) -> None:
    store, run = labeled
    db = store.path
    store.close()
    cli = CliRunner()
    out = tmp_path / "tasks.json"
    res = cli.invoke(app, ["review", "export", "--db", db, "--run", run, "--out", str(out), "--n", "2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "tasks.label_config.xml").is_file()
    tasks = json.loads(out.read_text(encoding="utf-8"))
    done = tmp_path / "done.json"
    done.write_text(json.dumps([_annotate(tasks[0], 1, (["religion"], False, "2025-01-01T10:00:00Z"))]))
    res = cli.invoke(app, ["review", "import", "--db", db, str(done)])
    assert res.exit_code == 0, res.output
    assert "imported 1 corrections" in res.output
    bad = cli.invoke(app, ["review", "export", "--db", db, "--run", run, "--out", str(tmp_path / "r.xlsx")])
    assert bad.exit_code == 2 and "use a .csv file" in " ".join(bad.output.split())
