"""The CLI: every command's --help, JSON contracts, clear errors; the public API's __all__."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import llm_labeler
from llm_labeler.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _commands(group: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command (typer's groups are its own, not click's: duck-typed on `.commands`)."""
    out = []
    for name, cmd in group.commands.items():
        out.append((*prefix, name))
        if hasattr(cmd, "commands"):
            out += _commands(cmd, (*prefix, name))
    return out


ALL_COMMANDS = _commands(typer.main.get_command(app))  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=[" ".join(c) for c in ALL_COMMANDS])
def test_every_command_has_help(command: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_core_commands_exist() -> None:
    names = {c[0] for c in ALL_COMMANDS}
    assert {"ingest", "label", "show", "demo", "runs", "config"} <= names
    assert {("review", "export"), ("review", "import"), ("eval", "run"), ("eval", "report")} <= set(
        ALL_COMMANDS
    )


def test_public_api_all_is_importable() -> None:
    assert len(llm_labeler.__all__) == len(set(llm_labeler.__all__))
    for name in llm_labeler.__all__:
        assert getattr(llm_labeler, name) is not None
    for module in ("llm_labeler.backends", "llm_labeler.store", "llm_labeler.errors", "llm_labeler.schemas"):
        mod = importlib.import_module(module)
        for name in mod.__all__:
            assert hasattr(mod, name), f"{module}.{name}"


def test_ingest_label_show_json(tmp_path: Path, events_path: Path) -> None:
    db = str(tmp_path / "cli.duckdb")
    result = runner.invoke(app, ["ingest", str(events_path), "--db", db, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["added"] > 0
    tax = str(ROOT / "taxonomies" / "20ng_coarse.yaml")
    result = runner.invoke(
        app,
        [
            "label",
            "--db",
            db,
            "--taxonomy",
            tax,
            "--backend",
            "fake:echo",
            "--scorers",
            "llm=1",
            "--limit",
            "3",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(rows) == 3
    for row in rows:
        assert {"user_id", "primary", "confidence", "segments", "run_id"} <= set(row)
        assert set(row["segments"]) == {
            "computers",
            "recreation",
            "science",
            "politics",
            "religion",
            "marketplace",
        }
    shown = runner.invoke(app, ["show", rows[0]["user_id"], "--db", db, "--json"])
    assert shown.exit_code == 0 and json.loads(shown.stdout)["primary_segment"] == rows[0]["primary"]
    table = runner.invoke(
        app,
        [
            "label",
            "--db",
            db,
            "--taxonomy",
            tax,
            "--backend",
            "fake:echo",
            "--scorers",
            "llm=1",
            "--limit",
            "3",
        ],
    )
    assert table.exit_code == 0 and "cache hits 3" in table.stdout


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    db = str(tmp_path / "e.duckdb")
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,ts,item_title\nu1,someday,a\n", encoding="utf-8")
    result = runner.invoke(app, ["ingest", str(bad), "--db", db])
    assert (
        result.exit_code == 2 and "unparsable timestamp" in result.output and "Traceback" not in result.output
    )
    result = runner.invoke(app, ["show", "ghost", "--db", db])
    assert result.exit_code == 2 and "ghost" in result.output
    result = runner.invoke(app, ["label", "--db", db, "--taxonomy", str(tmp_path / "none.yaml")])
    assert result.exit_code == 2 and "taxonomy file not found" in result.output
