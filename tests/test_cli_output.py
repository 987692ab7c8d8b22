"""What the commands print: whole ids in piped tables, hosted-only lines only for hosted runs, distill's overall
rows in their own columns, in-sample figures said to be, the demo's CPU kernels, --json on every command."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from llm_labeler.cli import app
from llm_labeler.cli.label import hosted_line, is_local
from llm_labeler.cli.student import _distill_summary, _score_summary
from llm_labeler.evals.demo import cpu_kernels
from llm_labeler.store import Store

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]
TAX = str(ROOT / "taxonomies" / "20ng_coarse.yaml")


def _label(db: str, *extra: str) -> str:
    args = [
        "label",
        "--db",
        db,
        "--taxonomy",
        TAX,
        "--backend",
        "fake:echo",
        "--scorers",
        "json",
        "--limit",
        "3",
    ]
    result = runner.invoke(app, [*args, *extra])
    assert result.exit_code == 0, result.output
    return result.stdout


def test_piped_tables_keep_ids_and_model_names_whole(loaded_store: Store) -> None:
    first = json.loads(_label(loaded_store.path, "--json").splitlines()[0])
    runs = runner.invoke(app, ["runs", "--db", loaded_store.path])
    assert runs.exit_code == 0 and first["run_id"] in runs.stdout and "fake:echo" in runs.stdout
    logs = runner.invoke(app, ["logs", "--db", loaded_store.path, "--run", first["run_id"]])
    assert logs.exit_code == 0 and first["user_id"] in logs.stdout and "fake-echo" in logs.stdout
    assert "…" not in runs.stdout + logs.stdout  # nothing cut to fit 80 columns


def test_hosted_only_lines_stay_off_local_runs(
    loaded_store: Store, capsys: pytest.CaptureFixture[str]
) -> None:
    text = _label(loaded_store.path)
    assert "s/user" in text and "HTTP attempts" not in text and "redaction" not in text and "cost" not in text
    planned = runner.invoke(
        app, ["plan", "--db", loaded_store.path, "--taxonomy", TAX, "--backend", "fake:echo"]
    )
    assert planned.exit_code == 0 and "redaction" not in planned.stdout
    hosted = {"transport_attempts": 7, "cost_usd": 0.0012, "redaction": True, "redactions": {"email": 2}}
    assert (
        not is_local(hosted) and not is_local({"local": False}) and is_local({"local": True, "cost_usd": 1.0})
    )
    hosted_line(hosted)
    shown = capsys.readouterr().out
    assert "HTTP attempts 7" in shown and "$0.001200" in shown and "redaction on: email 2" in shown


def test_distill_overall_rows_sit_under_their_own_columns(capsys: pytest.CaptureFixture[str]) -> None:
    seg = {"support": 5, "student_f1": 0.8, "llm_f1": 0.7}
    report = SimpleNamespace(
        model_path="m.skops", model_version="v1", run_id="run_1", n_train=10, excluded=None, reviewed=0,
        self_train_dropped=0, fit_s=0.1, cv={"accuracy": 0.9, "kappa": 0.8, "n": 10, "macro_f1": 0.85},
        gold={"n": 10, "per_segment": {"computers": seg},
              "student": {"n": 10, "accuracy": 0.901, "macro_f1": 0.851},
              "llm": {"n": 10, "accuracy": 0.702, "macro_f1": 0.652}},
    )  # fmt: skip
    _distill_summary(report)
    shown = capsys.readouterr().out
    assert "acc 0.901" not in shown and "macro-F1 0.851" not in shown  # no figure inside another's column
    assert re.search(r"accuracy\s*┃\s*macro-F1", shown), shown
    assert re.search(r"student overall\s*│\s*10\s*│\s*0\.901\s*│\s*0\.851", shown), shown
    assert re.search(r"llm overall\s*│\s*10\s*│\s*0\.702\s*│\s*0\.652", shown), shown


def test_score_says_which_figures_are_in_sample(capsys: pytest.CaptureFixture[str]) -> None:
    m = {"n": 4, "accuracy": 0.5, "macro_f1": 0.5, "kappa": 0.1}
    report = SimpleNamespace(
        scored=4, users_in_filter=4, unchanged=0, docs_rebuilt=4, wall_s=0.1, users_per_s=40.0,
        model_version="v1", run_id="score_1", segments={"computers": 4}, fallback=None, out=None,
        gold={"student": m, "student on users outside the training run": m},
        agreement={"student": m},
    )  # fmt: skip
    _score_summary(report)
    lines = [line for line in capsys.readouterr().out.splitlines() if "vs " in line]
    assert len(lines) == 3
    assert "student vs gold, all scored users (in-sample" in lines[0]
    assert "users outside the training run (out-of-sample)" in lines[1]
    assert "(in-sample)" in lines[2]


def test_demo_prints_the_cpu_kernels_beside_the_speed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llm_labeler.backends.llamacpp as llamacpp
    from llm_labeler.datasets import newsgroups

    def no_tarball() -> None:
        raise FileNotFoundError("no tarball here")

    monkeypatch.setattr(newsgroups, "load_users", no_tarball)  # the bundled fixture, as on a fresh machine
    args = [
        "demo",
        "--db",
        str(tmp_path / "d.duckdb"),
        "--n",
        "4",
        "--backend",
        "fake:echo",
        "--scorers",
        "json",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "s/user with llama.cpp CPU kernels: none: fake:echo is not a llama.cpp backend" in result.stdout
    assert "bundled fixture" in result.stderr
    as_json = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert as_json["cpu_kernels"] is None and as_json["backend"] == "fake:echo"
    monkeypatch.setattr(llamacpp, "cpu_features", lambda: "AVX2 AVX512")
    assert cpu_kernels("llamacpp:default") == "AVX2 AVX512" and cpu_kernels("openai:gpt-4o-mini") is None


def test_every_result_command_has_json(
    loaded_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llm_labeler.evals

    db = loaded_store.path
    events = ROOT / "tests" / "fixtures" / "20ng_sample" / "events.jsonl"
    run_id = json.loads(_label(db, "--json").splitlines()[0])["run_id"]
    user = loaded_store.user_ids(limit=1)[0]
    monkeypatch.setattr(llm_labeler.evals, "render_report", lambda store, run_id: "<!DOCTYPE html>")
    label = ["--db", db, "--taxonomy", TAX, "--backend", "fake:echo", "--scorers", "json", "--limit", "2"]
    commands = [
        ["ingest", str(events), "--db", db],
        ["runs", "--db", db],
        ["show", user, "--db", db],
        ["plan", *label],
        ["label", "--dry-run", *label],
        ["logs", "--db", db],
        ["export", "--run", run_id, "--out", str(tmp_path / "l.csv"), "--db", db],
        ["review", "export", "--run", run_id, "--out", str(tmp_path / "r.csv"), "--db", db],
        ["review", "import", str(tmp_path / "r.csv"), "--db", db],
        ["eval", "report", "eval_x", "--html", str(tmp_path / "r.html"), "--db", db],
        ["config"],
    ]
    for args in commands:
        result = runner.invoke(app, [*args, "--json"])
        assert result.exit_code == 0, (args, result.output)
        json.loads(result.stdout)


def test_eval_report_into_a_folder_writes_report_html(
    loaded_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import llm_labeler.evals

    monkeypatch.setattr(llm_labeler.evals, "render_report", lambda store, run_id: "<!DOCTYPE html>")
    folder = tmp_path / "reports"
    folder.mkdir()
    result = runner.invoke(app, ["eval", "report", "e1", "--html", str(folder), "--db", loaded_store.path])
    assert result.exit_code == 0, result.output
    assert (folder / "report.html").read_text(encoding="utf-8") == "<!DOCTYPE html>"
    assert str(folder / "report.html") in result.stdout
