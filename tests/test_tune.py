"""`eval tune` -> a stored combination -> `label --combination` and a suite's `fitted:` cell, end to end.

Orchestration on the bundled fixture (real DuckDB file, real MiniLM and e5 embeddings, real CLI); the LLM is the
deterministic `fake:echo` backend. tests/test_fit.py checks the fitting itself on real scores of real models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from llm_labeler.backends.embedding import embeddings_available
from llm_labeler.cli import app
from llm_labeler.store import Store
from llm_labeler.store.combinations import get_combination

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "evals" / "20ng_sample.yaml"
runner = CliRunner()

pytestmark = pytest.mark.skipif(not embeddings_available(), reason="needs the embeddings extra")


def _suite(tmp_path: Path, split: str = "tune", **changes: Any) -> Path:
    data = yaml.safe_load(SAMPLE.read_text())
    data["taxonomy"] = str((SAMPLE.parent / data["taxonomy"]).resolve())
    for key in ("events", "gold_csv"):
        data["dataset"][key] = str((SAMPLE.parent / data["dataset"][key]).resolve())
    data["dataset"]["split"] = split
    data["backends"] = ["fake:echo"]
    data["combinations"] = [
        {"name": "three", "specs": [
            {"name": "llm", "weight": 1.0, "calibration": "batch"},
            {"name": "embedding", "weight": 1.0, "calibration": "none"},
            {"name": "multilingual", "weight": 1.0, "calibration": "batch"},
        ]},
        {"name": "embedding-only", "baseline": True, "specs": [{"name": "embedding", "weight": 1.0, "calibration": "none"}]},
    ]  # fmt: skip
    data["primary"] = "three"
    data.update(changes)
    path = tmp_path / f"suite_{split}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def tuned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("tune")
    db, suite = tmp / "tune.duckdb", _suite(tmp)
    result = runner.invoke(app, ["eval", "tune", str(suite), "--db", str(db), "--name", "mine", "--json"])
    assert result.exit_code == 0, result.output
    return db, suite, json.loads(result.stdout)


def test_tune_stores_a_fitted_combination_with_provenance(tuned: tuple[Path, Path, dict[str, Any]]) -> None:
    db, _, out = tuned
    assert out["name"] == "mine" and out["method"] == "logloss" and out["backend"] == "fake:echo"
    fitted = {s["name"]: s["weight"] for s in out["fitted"]}
    assert set(fitted) == {"llm", "embedding", "multilingual"} and max(fitted.values()) == 1.0
    # the fake LLM echoes no topic: the fit must not trust it over the real embedding model
    assert fitted["llm"] < fitted["embedding"]
    # fitted on its own users it can only do as well as the equal weights it started from, or better
    assert out["metrics"]["fitted"]["accuracy"] >= out["metrics"]["prior"]["accuracy"] - 1e-9
    with Store(str(db), read_only=True) as store:
        row = get_combination(store, "mine")
    assert row is not None and row["taxonomy_name"] == "20ng_coarse"
    prov = row["provenance"]
    assert (
        prov["suite"] == "20ng_sample" and prov["users"] == out["n_users"] and len(prov["users_sha256"]) == 64
    )
    assert set(prov["models"]) == {"llm", "embedding", "multilingual"} and prov["run_id"] == out["run_id"]


def test_rerun_pays_nothing_and_replaces(tuned: tuple[Path, Path, dict[str, Any]]) -> None:
    db, suite, first = tuned
    again = runner.invoke(app, ["eval", "tune", str(suite), "--db", str(db), "--name", "mine", "--json"])
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data["replaced"] is True and data["fitted"] == first["fitted"]
    with Store(str(db), read_only=True) as store:
        stats = store.con.execute("SELECT stats FROM runs WHERE run_id = ?", [data["run_id"]]).fetchone()
    assert json.loads(stats[0])["calls"] == 0


def test_label_with_the_combination_uses_its_weights(tuned: tuple[Path, Path, dict[str, Any]]) -> None:
    db, _, out = tuned
    result = runner.invoke(
        app,
        [
            "label",
            "--db",
            str(db),
            "--taxonomy",
            "20ng_coarse",
            "--combination",
            "mine",
            "--limit",
            "25",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    labels = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert len(labels) == 25
    with Store(str(db), read_only=True) as store:
        run = store.con.execute(
            "SELECT backend, config FROM runs ORDER BY started_at DESC LIMIT 1"
        ).fetchone()
    config = json.loads(run[1])
    assert run[0] == "fake:echo" and config["combination"] == "mine"  # the combination chose the backend
    assert {s["name"]: s["weight"] for s in config["scorers"]} == {
        s["name"]: s["weight"] for s in out["fitted"]
    }
    assert config["temperature"] == out["temperature"]


def test_a_suite_cell_can_use_the_stored_combination(
    tuned: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    db, _, _ = tuned
    suite = _suite(tmp_path, split="test", combinations=[
        {"name": "fitted", "fitted": "mine"},
        {"name": "embedding-only", "baseline": True, "specs": [{"name": "embedding", "weight": 1.0, "calibration": "none"}]},
    ], primary="fitted")  # fmt: skip
    result = runner.invoke(app, ["eval", "run", str(suite), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    cells = [c["cell"] for c in json.loads(result.stdout)["matrix"]]
    assert cells[0] == "fitted"


def test_bad_requests_are_clear_errors(tuned: tuple[Path, Path, dict[str, Any]], tmp_path: Path) -> None:
    db, _, _ = tuned
    held_out = _suite(tmp_path, split="test")
    result = runner.invoke(app, ["eval", "tune", str(held_out), "--db", str(db), "--name", "x"])
    assert result.exit_code == 2 and "tune split" in result.output
    result = runner.invoke(
        app, ["label", "--db", str(db), "--taxonomy", "20ng_coarse", "--combination", "nope"]
    )
    assert (
        result.exit_code == 2 and "no combination named 'nope'" in result.output and "mine" in result.output
    )
    result = runner.invoke(
        app, ["label", "--db", str(db), "--taxonomy", "20ng_fine", "--combination", "mine"]
    )
    assert result.exit_code == 2 and "fitted for taxonomy '20ng_coarse'" in result.output
    result = runner.invoke(
        app,
        [
            "label",
            "--db",
            str(db),
            "--taxonomy",
            "20ng_coarse",
            "--combination",
            "mine",
            "--backend",
            "fake:other",
        ],
    )
    assert result.exit_code == 2 and "fitted for backend fake:echo" in result.output
    result = runner.invoke(app, ["eval", "combinations", "--db", str(db), "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout.splitlines()[0])["name"] == "mine"


def test_label_model_combination_weighs_scorers_by_agreement(
    tuned: tuple[Path, Path, dict[str, Any]],
) -> None:
    db, suite, _ = tuned
    result = runner.invoke(
        app,
        ["eval", "tune", str(suite), "--db", str(db), "--name", "agree", "--method", "label-model", "--json"],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    est = out["details"]["accuracy"]
    # MiniLM and e5 agree with each other on these English users; the fake LLM agrees with neither
    assert est["llm"] < min(est["embedding"], est["multilingual"])
    weights = {s["name"]: s["weight"] for s in out["fitted"]}
    assert weights["llm"] < min(weights["embedding"], weights["multilingual"])


def test_a_suite_cell_fits_its_combination_on_first_use(
    tuned: tuple[Path, Path, dict[str, Any]], tmp_path: Path
) -> None:
    db, tune_suite, _ = tuned
    suite = _suite(tmp_path, split="test", combinations=[
        {"name": "auto", "fitted": "auto-fit", "tune": str(tune_suite), "tune_from": "three"},
        {"name": "embedding-only", "baseline": True, "specs": [{"name": "embedding", "weight": 1.0, "calibration": "none"}]},
    ], primary="auto")  # fmt: skip
    with Store(str(db), read_only=True) as store:
        assert get_combination(store, "auto-fit") is None
    result = runner.invoke(app, ["eval", "run", str(suite), "--db", str(db), "--json"])
    assert result.exit_code == 0, result.output
    with Store(str(db), read_only=True) as store:
        row = get_combination(store, "auto-fit")
    assert row is not None and row["provenance"]["suite"] == "20ng_sample" and row["method"] == "logloss"


def test_a_backend_nobody_fitted_gets_the_label_model(tuned: tuple[Path, Path, dict[str, Any]]) -> None:
    db, _, _ = tuned
    args = ["label", "--db", str(db), "--taxonomy", "20ng_coarse", "--limit", "25"]
    result = runner.invoke(app, [*args, "--backend", "fake:unfitted"])
    assert result.exit_code == 0, result.output
    assert "no combination was fitted for fake:unfitted" in result.output
    with Store(str(db), read_only=True) as store:
        run = store.con.execute("SELECT config, stats FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
    config, stats = json.loads(run[0]), json.loads(run[1])
    assert config["combination"] == "label-model"
    assert {s["name"] for s in config["scorers"]} == {"llm", "embedding", "multilingual"}
    # the weights it labeled with are the agreement's, and the fake LLM (which reads no topic) gets the least
    est = stats["label_model"]["accuracy"]
    assert est["llm"] == min(est.values())
    # the embedded default's own fitted weights are kept for a backend that has them
    result = runner.invoke(app, [*args, "--backend", "fake:echo"])
    assert result.exit_code == 0 and "no combination was fitted" not in result.output
