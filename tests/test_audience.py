"""Segment shares (naive, classical, prediction-powered) and the audience report.

The statistics are checked against the published estimator computed by hand and in small simulations; the commands
run on a real DuckDB file holding the 20NG fixture users, a noisy labeler's runs, a real `review import` of a random
sample and a real distilled student. The report is rendered in headless Chromium when it is installed.
"""

from __future__ import annotations

import csv
import json
import random
import subprocess
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_report_layout import browser_args, chromium
from typer.testing import CliRunner

from llm_labeler.audience import estimate_shares, render_audience_report, run_population, shares
from llm_labeler.audience.shares import classical_interval, naive_interval, power_tuning, ppi_interval
from llm_labeler.audience.terms import distinctive_terms, tokens
from llm_labeler.cli import app
from llm_labeler.errors import InputError
from llm_labeler.schemas import load_taxonomy
from llm_labeler.settings import bundled_path
from llm_labeler.store import LabelRecord, Store
from llm_labeler.student.distill import distill

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "20ng_sample"
runner = CliRunner()


# -- the statistics --------------------------------------------------------------------------------------------
def test_ppi_on_a_worked_example() -> None:
    """Ten users, four reviewed, worked by hand (the difference estimator with power tuning):
    labels of all ten: mean 0.4, variance 0.24; reviewed rows 0, 3, 5, 8: Y = 1 1 0 1, Yhat = 1 0 0 1.
    lambda = Cov(Y, Yhat) / Var(labels) = 0.125 / 0.24 = 0.520833; rectifier Y - lambda Yhat = .479167 1 0 .479167,
    mean 0.489583; estimate = 0.520833 * 0.4 + 0.489583 = 0.697917. The rectifier's variance 0.125109 is below that
    with the pseudo-errors 1 and -lambda added (0.290039), so se = sqrt((1 - 4/10) * 0.290039 / 4) = 0.208581 and
    the 95% interval is 0.697917 -+ 1.959964 * 0.208581 = [0.289106, 1.106727], clipped to 1."""
    predicted = np.array([1, 1, 1, 0, 0, 0, 0, 0, 1, 0], float)
    rows = [0, 3, 5, 8]
    y = np.array([1, 1, 0, 1], float)
    assert power_tuning(y, predicted[rows], predicted) == pytest.approx(0.520833, abs=1e-6)
    iv = ppi_interval(y, predicted[rows], predicted, 0.95)
    assert (iv.estimate, iv.lo, iv.hi) == pytest.approx((0.697917, 0.289106, 1.0), abs=2e-6)
    # lambda = 0 is the gold-only interval; lambda = 1 the original PPI: labels' share + mean error on the gold.
    assert ppi_interval(y, predicted[rows], predicted, 0.95, lam=0.0) == classical_interval(y, 0.95, 10)
    assert ppi_interval(y, predicted[rows], predicted, 0.95, lam=1.0).estimate == pytest.approx(0.4 + 0.25)


def test_the_point_estimate_is_the_one_of_the_papers_package() -> None:
    """ppi_py (the authors' package, the dev extra) on the same numbers: its point estimate for a fixed lambda is
    ours (its interval is for an infinite population, see audience/shares.py)."""
    with warnings.catch_warnings():
        ppi_py = pytest.importorskip("ppi_py")
    rng = np.random.default_rng(3)
    truth = (rng.random(400) < 0.3).astype(float)
    labels = np.where(rng.random(400) < 0.8, truth, 1 - truth)
    rows = rng.choice(400, 60, replace=False)
    for lam in (0.0, 0.4, 1.0):
        theirs = ppi_py.ppi_mean_pointestimate(truth[rows], labels[rows], labels, lam=lam)
        ours = ppi_interval(truth[rows], labels[rows], labels, 0.95, lam=lam).estimate
        assert ours == pytest.approx(float(np.ravel(theirs)[0]), abs=1e-12)


def test_perfect_labels_give_the_exact_share_and_constant_ones_the_gold_share() -> None:
    rng = np.random.default_rng(1)
    truth = (rng.random(1000) < 0.3).astype(float)
    gold = np.arange(0, 1000, 10)
    perfect = ppi_interval(truth[gold], truth[gold], truth, 0.95)
    assert perfect.estimate == pytest.approx(truth.mean())
    assert perfect.width < classical_interval(truth[gold], 0.95, 1000).width / 2
    flat = ppi_interval(truth[gold], np.zeros(100), np.zeros(1000), 0.95)
    assert flat == classical_interval(truth[gold], 0.95, 1000)
    # Every user reviewed: the share is known exactly.
    assert ppi_interval(truth, truth, truth, 0.95).width == 0


def test_a_biased_labeler_misleads_the_counts_but_not_ppi() -> None:
    """A labeler that misses a third of the segment: label counts are off and their interval never covers; the
    prediction-powered interval covers about 95% of the time."""
    rng = np.random.default_rng(7)
    truth = (rng.random(3000) < 0.25).astype(float)
    pred = truth * (rng.random(3000) > 0.33) + (1 - truth) * (rng.random(3000) < 0.03)
    covered_ppi = covered_naive = 0
    reps = 300
    for _ in range(reps):
        gold = rng.choice(3000, 150, replace=False)
        covered_ppi += ppi_interval(truth[gold], pred[gold], pred, 0.95).covers(truth.mean())
        covered_naive += naive_interval(pred, 0.95).covers(truth.mean())
    assert covered_naive == 0
    assert 0.91 <= covered_ppi / reps <= 0.98


def test_multi_label_shares_are_prevalences_and_bad_input_is_refused() -> None:
    predicted = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 1], [0, 0, 1], [1, 0, 0]], float)
    out = shares(["a", "b", "c"], predicted, np.array([0, 2, 4]), predicted[[0, 2, 4]], 0.95)
    assert [s.naive.estimate for s in out] == pytest.approx([4 / 6, 3 / 6, 3 / 6])  # they add up past 1
    assert [s.classical.estimate for s in out] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    assert all(0 <= s.ppi.lo <= s.ppi.estimate <= s.ppi.hi <= 1 for s in out)
    assert set(out[0].as_json()) == {"segment", "n", "n_gold", "naive", "classical", "ppi"}
    with pytest.raises(InputError, match="at least 2 reviewed users"):
        shares(["a", "b", "c"], predicted, np.array([1]), predicted[[1]], 0.95)
    with pytest.raises(InputError, match="--level"):
        shares(["a", "b", "c"], predicted, np.array([0, 1]), predicted[[0, 1]], 1.5)


def test_distinctive_terms_rank_what_sets_a_group_apart() -> None:
    docs = {f"s{i}": "engine bikes riding helmet the" for i in range(6)}
    docs |= {f"c{i}": "windows driver graphics card the" for i in range(6)}
    docs |= {"z": "中文新闻阅读"}
    terms = distinctive_terms(docs, {u: u[0] for u in docs})
    assert {t for t, _ in terms["s"]} == {"engine", "bikes", "riding", "helmet"}
    assert "the" not in tokens("the THE windows") and "windows" in tokens("the THE windows")
    assert {"中文", "新闻"} <= tokens("中文新闻")


# -- a real store: the fixture users, two runs of a noisy labeler, a reviewed random sample ----------------------
def _labels(
    run_id: str, gold: dict[str, str], ids: list[str], tax: Any, flip: float, seed: int
) -> list[LabelRecord]:
    rng = random.Random(seed)
    out = []
    for u in sorted(gold):
        seg = gold[u] if rng.random() > flip else rng.choice(ids)
        conf = round(rng.uniform(0.3, 0.99), 3)
        out.append(
            LabelRecord(
                run_id,
                u,
                seg,
                [seg],
                {seg: conf},
                conf,
                False,
                "test-model",
                "segment_score",
                "v1",
                "p" * 64,
                tax.name,
                tax.content_hash(),
                evidence=[],
            )
        )
    return out


@pytest.fixture(scope="module")
def store_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("audience")
    db = tmp / "shares.duckdb"
    tax = load_taxonomy(bundled_path("taxonomies", "20ng_coarse.yaml"))
    with FIXTURE.joinpath("gold.csv").open(encoding="utf-8") as fh:
        gold = {r["user_id"]: r["gold_coarse"] for r in csv.DictReader(fh)}
    runs = {}
    with Store(db) as store:
        store.ingest(FIXTURE / "events.jsonl")
        store.remember_taxonomy(tax.content_hash(), tax.name, tax.model_dump(mode="json"))
        for name, flip, seed in (("base", 0.4, 1), ("now", 0.2, 2)):
            run_id = store.start_run(
                "label", "test", "test-model", tax.name, tax.content_hash(), {}, f"run_{name}"
            )
            store.write_labels(_labels(run_id, gold, tax.ids, tax, flip, seed))
            store.finish_run(run_id, "done", {})
            runs[name] = run_id
    # A reviewer checks a random sample of 30 users of the current run (review export --sample random).
    review = tmp / "review.csv"
    result = runner.invoke(
        app,
        [
            "review",
            "export",
            "--run",
            runs["now"],
            "--out",
            str(review),
            "--n",
            "30",
            "--sample",
            "random",
            "--db",
            str(db),
        ],
    )
    assert result.exit_code == 0, result.output
    with review.open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["correct_segment"] = gold[row["user_id"]]
    with review.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert runner.invoke(app, ["review", "import", str(review), "--db", str(db)]).exit_code == 0
    return {
        "db": db,
        "runs": runs,
        "gold": gold,
        "tax": tax,
        "tmp": tmp,
        "reviewed": {r["user_id"] for r in rows},
    }


def _shares_json(db: Path, *args: str) -> list[dict[str, Any]]:
    result = runner.invoke(app, ["shares", "--db", str(db), *args, "--json"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_shares_json_is_one_object_per_segment(store_db: dict[str, Any]) -> None:
    rows = _shares_json(store_db["db"], "--run", store_db["runs"]["now"])
    tax, gold = store_db["tax"], store_db["gold"]
    assert [r["segment"] for r in rows] == tax.ids
    for r in rows:
        assert list(r) == ["segment", "n", "n_gold", "naive", "classical", "ppi"]
        assert r["n"] == len(gold) and r["n_gold"] == 30
        reviewed = [u for u in store_db["reviewed"]]
        expected = sum(gold[u] == r["segment"] for u in reviewed) / 30
        assert r["classical"]["estimate"] == pytest.approx(expected, abs=1e-6)
        for key in ("classical", "ppi"):
            assert list(r[key]) == ["estimate", "lo", "hi"]
            assert 0 <= r[key]["lo"] <= r[key]["estimate"] <= r[key]["hi"] <= 1
    table = runner.invoke(app, ["shares", "--db", str(store_db["db"]), "--run", store_db["runs"]["now"]])
    assert table.exit_code == 0 and "30 gold (reviewed)" in table.stdout and "recreation" in table.stdout


def test_shares_take_gold_by_condition_and_a_level(store_db: dict[str, Any]) -> None:
    narrow = _shares_json(store_db["db"], "--run", store_db["runs"]["now"], "--level", "0.8")
    wide = _shares_json(store_db["db"], "--run", store_db["runs"]["now"], "--gold", "source LIKE 'review:%'")
    for a, b in zip(narrow, wide):
        assert a["ppi"]["hi"] - a["ppi"]["lo"] < b["ppi"]["hi"] - b["ppi"]["lo"]


def test_shares_errors_are_one_clear_line(store_db: dict[str, Any]) -> None:
    db, now = str(store_db["db"]), store_db["runs"]["now"]
    cases = [
        (["--run", now, "--gold", "source = 'nobody'"], "no gold users"),
        (["--run", now, "--method", "bayes"], "--method must be one of"),
        ([], "exactly one of --run RUN or --scores"),
        (["--run", now, "--gold", "nonsense_column = 1"], "--gold filter"),
        (["--run", "run_missing"], "no run 'run_missing'"),
    ]
    for args, message in cases:
        result = runner.invoke(app, ["shares", "--db", db, *args])
        assert result.exit_code == 2, (args, result.output)
        assert message in result.stderr, (args, result.stderr)


def test_gold_outside_the_run_and_foreign_segments_are_refused(
    tmp_path: Path, store_db: dict[str, Any]
) -> None:
    db = tmp_path / "copy.duckdb"
    db.write_bytes(store_db["db"].read_bytes())
    tax = store_db["tax"]
    with Store(db) as store:
        store.set_gold(tax.name, {"u_stranger": ["science"]}, "review:extra.csv")
    result = runner.invoke(app, ["shares", "--db", str(db), "--run", store_db["runs"]["now"]])
    assert result.exit_code == 2 and "1 of 31 gold users are not in run run_now: u_stranger" in result.stderr
    with Store(db) as store:
        store.con.execute("DELETE FROM gold WHERE user_id = 'u_stranger'")
        some = sorted(store_db["reviewed"])[0]
        store.set_gold(tax.name, {some: ["astrology"]}, "review:extra.csv")
    result = runner.invoke(app, ["shares", "--db", str(db), "--run", store_db["runs"]["now"]])
    assert result.exit_code == 2 and "taxonomy mismatch: gold segments astrology" in result.stderr


def test_shares_of_a_students_scores(store_db: dict[str, Any], tmp_path: Path) -> None:
    db = tmp_path / "scored.duckdb"
    db.write_bytes(store_db["db"].read_bytes())
    model = tmp_path / "student.skops"
    with Store(db) as store:
        distill(store, store_db["runs"]["now"], model)  # it trains on the 30 review corrections
    assert runner.invoke(app, ["score", "--model", str(model), "--db", str(db)]).exit_code == 0
    # Its scores of the users it trained on are in-sample: PPI would trust them blindly.
    bad = runner.invoke(app, ["shares", "--db", str(db), "--scores"])
    assert bad.exit_code == 2 and "distilled on the review corrections of 30 of these 30" in bad.stderr
    # A fresh random sample of users it did not see is fine.
    fresh = sorted(set(store_db["gold"]) - store_db["reviewed"])[:20]
    with Store(db) as store:
        store.set_gold(store_db["tax"].name, {u: [store_db["gold"][u]] for u in fresh}, "review:fresh.csv")
    rows = _shares_json(db, "--scores", "--gold", "source = 'review:fresh.csv'")
    assert [r["segment"] for r in rows] == store_db["tax"].ids
    assert all(r["n"] == len(store_db["gold"]) and r["n_gold"] == 20 for r in rows)
    assert sum(r["naive"] for r in rows) == pytest.approx(1.0, abs=1e-6)
    bad = runner.invoke(app, ["shares", "--db", str(db), "--scores", "--model", "nope"])
    assert bad.exit_code == 2 and "no distilled model 'nope'" in bad.stderr


def test_a_multi_label_run_gets_one_prevalence_per_segment(tmp_path: Path) -> None:
    tax = load_taxonomy(bundled_path("taxonomies", "ecommerce.yaml"))
    assert tax.multi_label
    a, b, c = tax.ids[:3]
    labels = {f"m{i:02d}": [a, b] if i % 2 else [b] for i in range(40)}  # a: half the users, b: all of them
    gold = {f"m{i:02d}": [a, c] if i % 2 else [b] for i in range(0, 40, 3)}  # reviewed: 14 users, 7 odd
    with Store(tmp_path / "multi.duckdb") as store:
        store.remember_taxonomy(tax.content_hash(), tax.name, tax.model_dump(mode="json"))
        run = store.start_run("label", "test", "test-model", tax.name, tax.content_hash(), {}, "run_multi")
        store.write_labels(
            [
                LabelRecord(
                    run, u, segs[0], segs, {}, 0.9, False, "m", "p", "v1", "h", tax.name, tax.content_hash()
                )
                for u, segs in labels.items()
            ]
        )
        store.set_gold(tax.name, gold, "review:multi.csv")
        result = {s.segment: s for s in estimate_shares(store, run_population(store, run)).segments}
    assert (
        result[a].naive.estimate == 0.5 and result[b].naive.estimate == 1.0 and result[c].naive.estimate == 0
    )
    assert [result[x].classical.estimate for x in (a, b, c)] == [0.5, 0.5, 0.5]
    assert all(result[x].n_gold == 14 for x in (a, b, c))
    assert sum(s.naive.estimate for s in result.values()) == 1.5  # prevalences, not a partition


# -- the report ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report_page(store_db: dict[str, Any]) -> dict[str, Any]:
    db, runs = store_db["db"], store_db["runs"]
    with Store(db) as store:
        distill(store, runs["now"], store_db["tmp"] / "student.skops")
    page = store_db["tmp"] / "audience.html"
    result = runner.invoke(
        app,
        ["report", "--run", runs["now"], "--baseline", runs["base"], "--html", str(page), "--db", str(db)],
    )
    assert result.exit_code == 0, result.output
    return {**store_db, "page": page, "html": page.read_text(encoding="utf-8"), "stdout": result.stdout}


def test_report_holds_sizes_segments_exemplars_confidence_and_changes(report_page: dict[str, Any]) -> None:
    html, tax = report_page["html"], report_page["tax"]
    assert "http://" not in html.replace("http://www.w3.org", "") and "<script" not in html
    for seg in tax.segments:
        assert f"id='seg-{seg.id}'" in html and seg.description[:40] in html
    assert html.count("<div class='user'>") == 3 * len(tax.segments)
    assert "distinctive terms:" in html and "student features:" in html
    assert "What moved since the baseline" in html and "Users that switched segment" in html
    assert "30 reviewed users" in html and "PPI" in html
    with Store(report_page["db"], read_only=True) as store:
        result = estimate_shares(store, run_population(store, report_page["runs"]["now"]))
    first = result.segments[0].ppi
    assert f"{first.estimate:.1%} [{first.lo:.1%}, {first.hi:.1%}]" in html


def test_report_without_gold_shows_counts_and_says_so(report_page: dict[str, Any]) -> None:
    with Store(report_page["db"], read_only=True) as store:
        page = render_audience_report(store, report_page["runs"]["base"], gold="source = 'nobody'")
    assert any("label counts only" in n for n in page.notes)
    assert "no reviewed users: sizes are label counts" in page.html


@pytest.mark.skipif(
    chromium() is None, reason="headless Chromium not installed (apt-get install -y chromium)"
)
def test_report_renders_in_headless_chromium(report_page: dict[str, Any], tmp_path: Path) -> None:
    page = report_page["page"]
    dom = subprocess.run(
        [*browser_args(tmp_path), "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    ).stdout
    # Parsed into a DOM with the two charts (sizes, confidence), the tables and a card per segment.
    assert dom.count("<svg") == 2 and dom.count("<circle") == len(report_page["tax"].ids)
    assert 'class="sizes"' in dom and 'class="changes"' in dom and 'class="switchers"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run(
        [*browser_args(tmp_path, height=1800), f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=180,
        check=True,
    )
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 40_000  # a blank page compresses to a few KB
