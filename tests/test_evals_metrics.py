"""Eval metrics, gate and suite validation: pure functions, checked against hand-computed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_labeler import metrics as mk
from llm_labeler.errors import ConfigError, InputError
from llm_labeler.evals import BASELINE_NAME, check_gate, load_suite, parse_fail_under, plan, score_labels
from llm_labeler.labeling import LabelConfig
from llm_labeler.schemas import Taxonomy

ROOT = Path(__file__).resolve().parents[1]
SEGS = ["a", "b", "c"]


def _tax(multi: bool = False) -> Taxonomy:
    return Taxonomy(
        name="t",
        multi_label=multi,
        segments=[{"id": s, "name": s.upper(), "description": f"segment {s}"} for s in SEGS],  # type: ignore[misc]
    )


def test_abstention_counts_as_a_miss_and_covered_leaves_it_out() -> None:
    gold = ["a", "a", "b", "c"]
    pred = ["a", None, "b", "b"]
    head = mk.classification_metrics(gold, pred, SEGS)
    covered = mk.covered_metrics(gold, pred, SEGS)
    assert head["accuracy"] == pytest.approx(2 / 4)
    assert covered["accuracy"] == pytest.approx(2 / 3)
    assert covered["n"] == 3
    # a: P 1, R 1/2 -> F1 2/3; b: P 1/2, R 1 -> 2/3; c: 0  => macro 4/9
    assert head["macro_f1"] == pytest.approx(4 / 9)
    assert mk.coverage(pred) == {"coverage": 0.75, "abstain_rate": 0.25}
    matrix = mk.confusion(gold, pred, SEGS)
    assert matrix.shape == (4, 4)
    assert matrix[0, 3] == 1  # gold a, abstained
    assert matrix[2, 1] == 1  # gold c, predicted b


def test_kappa_is_zero_not_nan_when_everything_is_one_label() -> None:
    assert mk.classification_metrics(["a", "a"], ["a", "a"], SEGS)["kappa"] == 0.0


def test_ece_and_threshold_table() -> None:
    conf = [0.95, 0.95, 0.55, 0.55]
    correct = [True, True, True, False]
    cal = mk.calibration(conf, correct, thresholds=(0.0, 0.9))
    # bin (0.9, 1]: conf 0.95, acc 1 -> gap 0.05; bin (0.5, 0.6]: conf 0.55, acc 0.5 -> gap 0.05
    assert cal["ece"] == pytest.approx(0.05)
    assert [b["n"] for b in cal["bins"]] == [2, 2]
    assert cal["thresholds"] == [
        {"threshold": 0.0, "coverage": 1.0, "accuracy": 0.75, "n": 4},
        {"threshold": 0.9, "coverage": 0.5, "accuracy": 1.0, "n": 2},
    ]


def test_multilabel_jaccard_and_hamming() -> None:
    out = mk.multilabel_metrics([["a", "b"], ["c"]], [["a"], ["b", "c"]], SEGS)
    assert out["jaccard"] == pytest.approx((1 / 2 + 1 / 2) / 2)
    assert out["hamming"] == pytest.approx(2 / 6)


def test_score_labels_on_multi_label_gold() -> None:
    labels = [
        {"user_id": "u1", "primary_segment": "a", "segments": ["a", "b"], "confidence": 0.9},
        {"user_id": "u2", "primary_segment": None, "segments": [], "confidence": 0.1},
        {"user_id": "nogold", "primary_segment": "a", "segments": ["a"], "confidence": 0.9},
    ]
    out = score_labels(labels, {"u1": ["a", "b"], "u2": ["c"]}, _tax(multi=True))
    assert out["n"] == 2
    assert out["jaccard"] == pytest.approx(0.5)  # u1 exact, u2 abstained (empty set)
    assert out["abstain_rate"] == 0.5
    assert out["covered"]["accuracy"] == 1.0


def test_parse_fail_under() -> None:
    assert parse_fail_under(["macro_f1=0.8", "covered.accuracy = 0.9"]) == {
        "macro_f1": 0.8,
        "covered.accuracy": 0.9,
    }
    for bad in ("macro_f1", "=0.8", "macro_f1=high"):
        with pytest.raises(InputError, match="METRIC=VALUE"):
            parse_fail_under([bad])


def test_gate_names_the_failing_metric() -> None:
    metrics = {"accuracy": 0.8, "macro_f1": 0.7, "ece": 0.1, "covered": {"accuracy": 0.9}}
    ok = check_gate(metrics, {"accuracy": 0.8, "covered.accuracy": 0.85})
    assert ok.passed and not ok.failures
    bad = check_gate(metrics, {"macro_f1": 0.99})
    assert not bad.passed
    assert bad.failures == ["macro_f1 0.7000 is under 0.99"]
    with pytest.raises(InputError, match="unknown metric 'f1'"):
        check_gate(metrics, {"f1": 0.5})


def test_gate_baseline_regression_respects_direction_and_tolerance() -> None:
    before = {"accuracy": 0.80, "macro_f1": 0.75, "ece": 0.05}
    now = {"accuracy": 0.79, "macro_f1": 0.76, "ece": 0.04}
    strict = check_gate(now, {}, before, "eval_x", ("accuracy", "macro_f1", "ece"))
    assert not strict.passed
    assert len(strict.failures) == 1 and strict.failures[0].startswith("accuracy regressed")
    assert "eval_x" in strict.failures[0]
    assert check_gate(now, {}, before, "eval_x", ("accuracy", "ece"), tolerance=0.02).passed
    worse_ece = check_gate({"ece": 0.2}, {}, before, "eval_x", ("ece",))
    assert not worse_ece.passed  # lower is better for ECE


def test_suite_adds_the_embedding_baseline(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\ntaxonomy: t.yaml\ndataset: {loader: newsgroups, gold: fine}\n"
        "prompts: [segment_score@1]\nbackends: [fake:echo, llamacpp:default]\n"
        "combinations: [{name: default}, {name: llm, specs: [{name: llm}]}]\n"
    )
    suite = load_suite(path)
    names = [c.name for c in suite.combinations]
    assert names == ["default", "llm", BASELINE_NAME]
    cells = plan(suite)
    # 2 LLM combinations x 1 prompt x 2 backends, and the LLM-free baseline once
    assert [c.name for c in cells] == [
        "default|segment_score@1|fake:echo",
        "default|segment_score@1|llamacpp:default",
        "llm|segment_score@1|fake:echo",
        "llm|segment_score@1|llamacpp:default",
        BASELINE_NAME,
    ]
    assert [c.is_primary for c in cells] == [True, False, False, False, False]
    base = cells[-1].config
    assert base.scorers is not None and [(s.name, s.calibration) for s in base.scorers] == [
        ("embedding", "none")
    ]
    assert [c.name for c in plan(suite, ["fake:x"])][:1] == ["default|segment_score@1|fake:x"]


def test_a_combination_sets_the_history_budget(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\ntaxonomy: t.yaml\ndataset: {loader: newsgroups}\nbackends: [fake:echo]\n"
        "combinations: [{name: b100, budget_tokens: 100}, {name: plain}]\n"
    )
    budgets = {c.combination.name: c.config.budget_tokens for c in plan(load_suite(path))}
    assert budgets["b100"] == 100 and budgets["plain"] == LabelConfig().budget_tokens


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "name: s\ntaxonomy: t.yaml\ndataset: {loader: newsgroups}\n"
            "combinations: [{name: a, budget_tokens: 3}]\n",
            "budget_tokens",
        ),
        ("name: s\ntaxonomy: t.yaml\ndataset: {loader: files}\n", "needs 'events' and 'gold_csv'"),
        ("name: s\ntaxonomy: t.yaml\ndataset: {loader: newsgroups, gold: weird}\n", "coarse, fine or multi"),
        ("name: s\ntaxonomy: t.yaml\ndataset: {loader: newsgroups}\nprimary: nope\n", "primary 'nope'"),
        (
            "name: s\ntaxonomy: t.yaml\ndataset: {loader: newsgroups}\n"
            "combinations: [{name: a}, {name: a}]\n",
            "duplicate combination",
        ),
        ("name: s\ntaxonomy: t.yaml\ndataset: {loader: newsgroups}\nsample: 3\n", "sample"),
        ("- just a list\n", "a suite is a mapping"),
        (
            "name: s\ntaxonomy: t.yaml\ndataset: {loader: newsgroups}\nthresholds: {f1: 0.5}\n",
            "unknown metric(s) f1",
        ),
    ],
)
def test_invalid_suites_name_the_problem(tmp_path: Path, body: str, problem: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError, match=r"bad\.yaml") as err:
        load_suite(path)
    assert problem in str(err.value)


def test_shipped_suites_are_valid_and_hold_out_enough_users() -> None:
    suites = {p.stem: load_suite(p) for p in sorted((ROOT / "evals").glob("*.yaml"))}
    assert {"20ng_coarse", "20ng_fine"} <= set(suites)
    for name, suite in suites.items():
        assert any(c.baseline and c.name == BASELINE_NAME for c in suite.combinations), name
        assert suite.resolve(suite.taxonomy).is_file(), name
        if name in ("20ng_coarse", "20ng_fine"):  # the reported figures: held-out users only
            assert suite.dataset.split == "test" and (suite.dataset.n or 0) >= 300
        elif suite.dataset.loader == "newsgroups":  # everything else tunes, so never on the test half
            assert suite.dataset.split == "tune", name
    test, tune = suites["20ng_coarse"].dataset, suites["20ng_coarse_tune"].dataset
    assert (test.split_seed, test.test_fraction) == (
        tune.split_seed,
        tune.test_fraction,
    )  # the same two halves
