"""Eval suites end to end on the bundled fixture (real DuckDB file, real embeddings, real CLI).

The LLM is the deterministic `fake:echo` backend here (registered like the real ones) so the matrix stays fast;
tests/test_evals_real.py runs the embedded GGUF model through the same commands.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_report_layout import assert_fits, browser_args, chromium, probe_layout
from typer.testing import CliRunner

from llm_labeler.backends.embedding import embeddings_available
from llm_labeler.cli import app
from llm_labeler.evals import compare_runs, load_suite, run_suite
from llm_labeler.store import Store
from llm_labeler.store import evals as sql

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "evals" / "20ng_sample.yaml"
N = 20
runner = CliRunner()

pytestmark = pytest.mark.skipif(not embeddings_available(), reason="needs the embeddings extra")


def _eval(db: Path, *args: str) -> Any:
    return runner.invoke(app, ["eval", "run", str(SAMPLE), "--db", str(db), "--limit", str(N), *args])


def _sample_copy(tmp_path: Path, **changes: Any) -> Path:
    """The sample suite with absolute paths and some fields changed, written under tmp_path."""
    data = yaml.safe_load(SAMPLE.read_text())
    data["taxonomy"] = str((SAMPLE.parent / data["taxonomy"]).resolve())
    for key in ("events", "gold_csv"):
        data["dataset"][key] = str((SAMPLE.parent / data["dataset"][key]).resolve())
    data.update(changes)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _json(result: Any) -> dict[str, Any]:
    assert result.exit_code in (0, 1), result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    db = tmp_path_factory.mktemp("evals") / "evals.duckdb"
    result = _eval(db, "--backend", "fake:echo", "--json")
    assert result.exit_code == 0, result.output
    return db, _json(result)


def test_json_contract_and_matrix(first_run: tuple[Path, dict[str, Any]]) -> None:
    _, data = first_run
    assert {"run_id", "n", "calls", "cache_hits", "metrics"} <= set(data)
    assert data["n"] == N
    assert data["calls"] > 0
    assert {"accuracy", "macro_f1", "micro_f1", "kappa", "ece", "coverage"} <= set(data["metrics"])
    cells = [c["cell"] for c in data["matrix"]]
    assert cells == ["default|segment_score@1|fake:echo", "embedding-only"]
    assert data["baseline"]["cell"] == "embedding-only"
    assert data["primary"] == cells[0]
    assert 0.0 <= data["metrics"]["macro_f1"] <= 1.0


def test_second_run_is_all_cache_hits(first_run: tuple[Path, dict[str, Any]]) -> None:
    db, before = first_run
    again = _json(_eval(db, "--backend", "fake:echo", "--json"))
    assert again["calls"] == 0
    # default cell: llm + embedding per user; baseline: embedding per user
    assert again["cache_hits"] == 3 * N
    assert again["metrics"] == before["metrics"]
    assert again["run_id"] != before["run_id"]


def test_run_is_stored_with_cells_and_gold(first_run: tuple[Path, dict[str, Any]]) -> None:
    db, data = first_run
    with Store(db) as store:
        row = sql.get_eval(store, data["run_id"])
        cells = sql.eval_cells(store, data["run_id"])
        gold = sql.eval_gold(store, data["run_id"])
        assert row["status"] == "done" and row["n_users"] == N
        assert row["summary"]["primary"]["metrics"]["macro_f1"] == data["metrics"]["macro_f1"]
        assert len(gold) == N
        assert [c["is_baseline"] for c in cells] == [False, True]
        for cell in cells:
            run = store.get_run(cell["run_id"])
            assert run["kind"] == "eval" and run["status"] == "done"
            assert len(store.labels(cell["run_id"])) == N
            confusion = cell["metrics"]["confusion"]["matrix"]
            assert sum(map(sum, confusion)) == N


def test_fail_under_exits_nonzero_naming_the_metric(first_run: tuple[Path, dict[str, Any]]) -> None:
    db, data = first_run
    floor = data["metrics"]["macro_f1"] + 0.01
    result = _eval(db, "--backend", "fake:echo", "--fail-under", f"macro_f1={floor:.4f}")
    assert result.exit_code == 1
    assert "gate failed" in result.stderr and "macro_f1" in result.stderr
    ok = _eval(
        db, "--backend", "fake:echo", "--fail-under", f"macro_f1={data['metrics']['macro_f1'] - 0.01:.4f}"
    )
    assert ok.exit_code == 0, ok.output
    bad = _eval(db, "--fail-under", "macro_f1")
    assert bad.exit_code == 2 and "METRIC=VALUE" in bad.stderr


def test_baseline_gate_catches_a_regression(first_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db, data = first_run
    with Store(db) as store:
        base_cell = sql.eval_cells(store, data["run_id"])[1]
        default_cell = sql.eval_cells(store, data["run_id"])[0]
    # A suite whose primary is the embedding-only combination, gated against the default pipeline's run.
    suite = _sample_copy(tmp_path, primary="embedding-only")
    args = ["eval", "run", str(suite), "--db", str(db), "--limit", str(N), "--backend", "fake:echo"]
    worse = default_cell["metrics"]["macro_f1"] > base_cell["metrics"]["macro_f1"]
    result = runner.invoke(app, [*args, "--baseline", data["run_id"]])
    assert result.exit_code == (1 if worse else 0), result.output
    if worse:
        assert "macro_f1 regressed" in result.stderr and data["run_id"] in result.stderr
    same = runner.invoke(app, [*args, "--baseline", f"{data['run_id']}#embedding-only"])
    assert same.exit_code == 0, same.output
    unknown = runner.invoke(app, [*args, "--baseline", "eval_nope"])
    assert unknown.exit_code == 2 and "eval_nope" in unknown.stderr


def test_compare_shows_deltas_and_flips(first_run: tuple[Path, dict[str, Any]]) -> None:
    db, data = first_run
    a, b = f"{data['run_id']}#embedding-only", data["run_id"]
    with Store(db) as store:
        comp = compare_runs(store, a, b)
        cells = sql.eval_cells(store, data["run_id"])
        labels = [{r["user_id"]: r["primary_segment"] for r in store.labels(c["run_id"])} for c in cells]
        gold = sql.eval_gold(store, data["run_id"])
    flipped = {u for u in labels[0] if labels[0][u] != labels[1][u]}
    assert {f["user_id"] for f in comp.flips} == flipped
    assert comp.flip_rate == pytest.approx(len(flipped) / N)
    delta = {r["metric"]: r["delta"] for r in comp.metrics}
    assert delta["macro_f1"] == pytest.approx(
        cells[0]["metrics"]["macro_f1"] - cells[1]["metrics"]["macro_f1"]
    )
    right = [sum(lab[u] in gold[u] for u in gold) for lab in labels]
    assert comp.fixed - comp.broken == right[0] - right[1]
    result = runner.invoke(app, ["eval", "compare", a, b, "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "flip rate" in result.stdout and "macro_f1" in result.stdout
    as_json = json.loads(runner.invoke(app, ["eval", "compare", a, b, "--db", str(db), "--json"]).stdout)
    assert as_json["n_flips"] == len(flipped)


def test_report_is_self_contained(first_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db, data = first_run
    out = tmp_path / "report.html"
    result = runner.invoke(app, ["eval", "report", data["run_id"], "--html", str(out), "--db", str(db)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("<svg") == 4  # a heatmap and a reliability plot per cell
    assert "embedding-only" in page and "Confusion matrix" in page
    for external in ("<script", "<link", "src=", "https://", "url("):
        assert external not in page
    missing = runner.invoke(app, ["eval", "report", "eval_nope", "--html", str(out), "--db", str(db)])
    assert missing.exit_code == 2 and "no eval run 'eval_nope'" in missing.stderr


def test_run_suite_library_and_bad_gold(tmp_path: Path) -> None:
    gold = tmp_path / "gold.csv"
    gold.write_text("user_id,g\nu_06e8ce682a826059,computers\nu_08b99fd95cc33f82,cooking\n")
    suite = tmp_path / "s.yaml"
    suite.write_text(
        f"name: s\ntaxonomy: {ROOT / 'taxonomies' / '20ng_coarse.yaml'}\n"
        f"dataset: {{loader: files, events: {ROOT / 'tests/fixtures/20ng_sample/events.jsonl'}, "
        f"gold_csv: {gold}, gold: g}}\n"
    )
    from llm_labeler.errors import InputError

    with Store(tmp_path / "x.duckdb") as store, pytest.raises(InputError, match="cooking"):
        run_suite(store, load_suite(suite), ["fake:echo"])


def test_taxonomy_override_checks_gold(first_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db, _ = first_run
    tax = yaml.safe_load((ROOT / "taxonomies" / "20ng_coarse.yaml").read_text())
    tax["segments"] = [s for s in tax["segments"] if s["id"] != "marketplace"]
    path = tmp_path / "five.yaml"
    path.write_text(yaml.safe_dump(tax))
    result = _eval(db, "--backend", "fake:echo", "--taxonomy", str(path))
    assert result.exit_code == 2
    assert "marketplace" in result.stderr and "not in taxonomy" in result.stderr


@pytest.mark.skipif(
    chromium() is None, reason="headless Chromium not installed (apt-get install -y chromium)"
)
def test_report_renders_in_headless_chromium(first_run: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    db, data = first_run
    page = tmp_path / "report.html"
    runner.invoke(app, ["eval", "report", data["run_id"], "--html", str(page), "--db", str(db)])
    browser = browser_args(tmp_path)  # a 1400 px wide window
    dom = subprocess.run(
        [*browser, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180, check=True
    ).stdout
    # The browser parsed the page into a DOM holding both charts and the matrix.
    assert dom.count("<svg") == 4 and "<rect" in dom and "embedding-only" in dom
    # At 1400 px the page and its matrix need no horizontal scroll: the suite's metrics are shown, the rest sit
    # in a closed <details> that lays them out once opened.
    hidden = ["prompt", "backend", "coverage", "ece", "latency_p50_ms", "tokens_per_user", "covered.accuracy"]
    assert_fits(probe_layout(page, tmp_path), ["accuracy", "macro_f1", "micro_f1", "kappa"], hidden)
    shot = tmp_path / "shot.png"
    tall = browser_args(tmp_path, height=1600)
    subprocess.run(
        [*tall, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=180, check=True
    )
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000  # a blank page compresses to a few KB
