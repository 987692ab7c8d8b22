"""`discover` on the command line, on real parts: real 20 Newsgroups users, all-MiniLM-L6-v2, a DuckDB file; the
taxonomy it writes is labeled with as is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from llm_labeler.backends.embedding import embeddings_available
from llm_labeler.cli import app
from llm_labeler.schemas import load_taxonomy

runner = CliRunner()
needs_model = pytest.mark.skipif(not embeddings_available(), reason="needs the embeddings extra")


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, events_path: Path) -> str:
    path = str(tmp_path_factory.mktemp("discover") / "s.duckdb")
    assert runner.invoke(app, ["ingest", str(events_path), "--db", path]).exit_code == 0
    return path


@needs_model
def test_discover_writes_a_taxonomy_label_accepts(db: str, tmp_path: Path, events_path: Path) -> None:
    out = tmp_path / "proposed.yaml"
    args = ["discover", "--db", db, "--limit", "24", "--k", "3", "--naming", "terms", "--out", str(out)]
    gold = f"{events_path.parent / 'gold.csv'}#gold_coarse"
    first = runner.invoke(app, [*args, "--json", "--gold", gold])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["gold"]["n"] == 24 and 0 < data["gold"]["nmi"] <= 1 and len(data["gold"]["mapping"]) == 3
    assert len(data["segments"]) == 3 and sum(s["size"] for s in data["segments"]) == 24
    assert data["stats"]["embedding_model"].startswith("sentence-transformers/all-MiniLM-L6-v2")
    tax = load_taxonomy(out)
    assert tax.content_hash() == data["taxonomy_hash"] and len(tax.segments) == 3
    # the same users again: nothing embedded, nothing asked; the table names every segment
    again = runner.invoke(app, [*args, "--force"])
    assert again.exit_code == 0, again.output
    assert "embedded 0 users" in again.stdout and all(s["id"] in again.stdout for s in data["segments"])
    label = runner.invoke(
        app,
        ["label", "--db", db, "--taxonomy", str(out), "--limit", "24", "--backend", "fake:echo",
         "--scorers", "embedding=1:none", "--json"],
    )  # fmt: skip
    assert label.exit_code == 0, label.output
    labeled = [json.loads(line) for line in label.stdout.splitlines() if line.startswith("{")]
    assert len(labeled) == 24 and {r["primary"] for r in labeled} <= set(tax.ids)


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (["--k", "1"], "k must be between 2 and 60"),
        (["--k", "many"], "--k must be a number of segments or 'auto'"),
        (
            ["--limit", "24", "--k", "20", "--min-size", "5"],
            "24 users with a history cannot make 20 segments",
        ),
        (["--method", "density", "--k", "4"], "--k applies to k-means"),
        (["--users", "no_such_column > 1"], "--users"),
        (["--mapped-gold", "m.csv"], "--mapped-gold needs --gold"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(db: str, tmp_path: Path, extra: list[str], problem: str) -> None:
    result = runner.invoke(
        app, ["discover", "--db", db, "--naming", "terms", "--out", str(tmp_path / "t.yaml"), *extra]
    )
    assert result.exit_code == 2 and problem in result.output and "Traceback" not in result.output
    assert not (tmp_path / "t.yaml").exists()


def test_an_existing_out_file_is_kept(db: str, tmp_path: Path) -> None:
    out = tmp_path / "mine.yaml"
    out.write_text("my edits\n", encoding="utf-8")
    result = runner.invoke(app, ["discover", "--db", db, "--naming", "terms", "--out", str(out)])
    assert result.exit_code == 2 and "pass --force" in result.output
    assert out.read_text(encoding="utf-8") == "my edits\n"


def test_gold_file_errors_come_before_any_work(db: str, tmp_path: Path) -> None:
    bad = tmp_path / "gold.csv"
    bad.write_text("user,seg\nu1,a\n", encoding="utf-8")
    out = tmp_path / "t.yaml"
    result = runner.invoke(app, ["discover", "--db", db, "--out", str(out), "--gold", f"{bad}#seg"])
    assert result.exit_code == 2 and "needs columns user_id and 'seg'" in result.output and not out.exists()
