"""`plan` (= `label --dry-run`) and `logs` on the command line."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from llm_labeler.cli import app
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.schemas import Taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.store import Store


def test_plan_and_logs_commands(loaded_store: Store, coarse_taxonomy: Taxonomy, tmp_path: Path) -> None:
    runner = CliRunner()
    taxonomy = str(Path(__file__).resolve().parents[1] / "taxonomies" / "20ng_coarse.yaml")
    label_users(
        loaded_store, coarse_taxonomy, LabelConfig(backend="fake:junk", scorers=[ScorerSpec("json")]), limit=2
    )
    planned = runner.invoke(
        app,
        ["plan", "--db", loaded_store.path, "--taxonomy", taxonomy, "--backend", "fake:echo", "--scorers", "json",
         "--limit", "3", "--json"],
    )  # fmt: skip
    assert planned.exit_code == 0, planned.output
    import json

    data = json.loads(planned.output)
    assert data["users"] == 3 and data["scorers"][0]["calls"] == 3 and data["totals"]["cost_usd"] == 0.0
    assert "User activity" in data["sample_prompt"]
    errors = runner.invoke(app, ["logs", "--db", loaded_store.path, "--errors", "--json"])
    rows = json.loads(errors.output)
    assert len(rows) == 2 and all("OutputValidationError" in r["error"] for r in rows)
    for cmd in (["plan", "--help"], ["logs", "--help"], ["label", "--help"]):
        shown = runner.invoke(app, cmd, env={"COLUMNS": "200"})
        assert shown.exit_code == 0
    assert "--max-cost" in shown.output and "--concurrency" in shown.output and "--no-redact" in shown.output
