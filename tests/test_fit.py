"""Fitting combinations on real scores: the stored answers of real models for the 300 tune-half 20 Newsgroups
authors of evals/20ng_coarse_models_tune.yaml (exported by scripts/export_tune_scores.py; no model runs here).

- the log-loss fit gives a known-bad scorer (real scores, shuffled onto the wrong users) no weight, and gives the
  scorer that is measured more accurate the larger weight;
- the label model, which never sees the gold, ranks the scorers the way their measured accuracy does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llm_labeler.segments.fit import fit_weights, label_model, stack_scores

FIXTURE = Path(__file__).parent / "fixtures" / "tune_scores" / "20ng_coarse_tune.json"
# How each scorer is calibrated in the default combination (segments.base.DEFAULT_CALIBRATION): the LLMs' and e5's
# scores have their batch mean subtracted, the other embedding models' cosines are used as they are.
BATCH = {"gemma", "qwen", "e5"}


@pytest.fixture(scope="module")
def real() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(FIXTURE.read_text())
    users = sorted(data["gold"])
    names = sorted(data["scorers"])
    rows = [{n: data["scorers"][n]["scores"].get(u) for n in names} for u in users]
    cal = {n: np.mean([r[n] for r in rows if r[n]], axis=0) for n in names}
    calibrate = {n: "batch" if n.split("-")[0] in BATCH else "none" for n in names}
    z, mask = stack_scores(rows, names, cal, calibrate, len(data["segments"]))
    y = np.asarray([data["segments"].index(data["gold"][u][0]) for u in users])
    accuracy = {n: float((z[s].argmax(axis=1) == y)[mask[s]].mean()) for s, n in enumerate(names)}
    return {"names": names, "z": z, "mask": mask, "y": y, "accuracy": accuracy, "k": len(data["segments"])}


def test_the_fixture_holds_every_candidate(real: dict[str, Any]) -> None:
    assert {"gemma", "minilm", "e5"} <= set(real["names"]) and len(real["y"]) == 300
    assert real["mask"].all(axis=1).sum() >= 3  # at least three scorers scored every user


def test_a_shuffled_scorer_gets_no_weight(real: dict[str, Any]) -> None:
    names, z = real["names"], real["z"]
    good = max(names, key=lambda n: real["accuracy"][n])
    # real scores of a real model, each given to the next user: right format, no information
    bad = np.roll(z[names.index(good)], 1, axis=0)
    stacked = np.concatenate([z, bad[None]], axis=0)
    fit = fit_weights(stacked, real["y"], [*names, "shuffled"], {}, 1.5)
    assert fit.weights["shuffled"] < 0.05
    assert fit.weights[good] == 1.0


def test_the_more_accurate_of_two_scorers_gets_the_larger_weight(real: dict[str, Any]) -> None:
    names, z, acc = real["names"], real["z"], real["accuracy"]
    ranked = sorted(names, key=lambda n: acc[n])
    worst, best = ranked[0], ranked[-1]
    assert acc[best] - acc[worst] > 0.1  # a real gap, or the test would prove nothing
    pair = [worst, best]
    fit = fit_weights(z[[names.index(n) for n in pair]], real["y"], pair, {}, 1.5)
    assert fit.weights[best] == 1.0 and fit.weights[worst] < 0.7
    # and the fit is no worse than the better scorer alone on the users it was fitted on
    assert fit.accuracy >= acc[best] - 0.01


def test_the_label_model_ranks_scorers_by_their_measured_accuracy(real: dict[str, Any]) -> None:
    names, z, mask = real["names"], real["z"], real["mask"]
    votes = np.where(mask, z.argmax(axis=2), -1)
    found = label_model(votes, real["k"], names)
    measured = real["accuracy"]
    by_estimate = sorted(names, key=lambda n: found.accuracy[n])
    by_measure = sorted(names, key=lambda n: measured[n])
    assert by_estimate[0] == by_measure[0]  # the worst is found without gold
    assert by_estimate[-1] in by_measure[-2:]  # and the best is one of the two best
    # estimated accuracies are close to the measured ones: within 0.15 each
    assert max(abs(found.accuracy[n] - measured[n]) for n in names) < 0.15
    assert found.weights[by_estimate[0]] < found.weights[by_estimate[-1]]


def test_label_model_needs_three_scorers(real: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="at least three scorers"):
        label_model(np.zeros((2, 5), dtype=np.int64), real["k"], ["a", "b"])


def test_snorkels_label_model_agrees_on_the_worst_scorer(real: dict[str, Any]) -> None:
    """The well-kept implementation (snorkel's LabelModel, a dev dependency) as a reference: same data, the
    same scorer found worst, and our one-coin estimates at least as close to the measured accuracies."""
    pytest.importorskip("snorkel")
    import warnings

    from snorkel.labeling.model import LabelModel

    names, z, mask = real["names"], real["z"], real["mask"]
    votes = np.where(mask, z.argmax(axis=2), -1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = LabelModel(cardinality=real["k"], verbose=False)
        reference.fit(votes.T, n_epochs=500, seed=0, progress_bar=False)
    theirs = dict(zip(names, (float(w) for w in reference.get_weights())))
    ours = label_model(votes, real["k"], names).accuracy
    measured = real["accuracy"]
    assert (
        min(theirs, key=theirs.__getitem__)
        == min(ours, key=ours.__getitem__)
        == min(measured, key=measured.__getitem__)
    )
    gap = {n: abs(ours[n] - measured[n]) - abs(theirs[n] - measured[n]) for n in names}
    assert np.mean(list(gap.values())) < 0.05


def test_a_scorer_stuck_on_one_segment_is_not_crowned() -> None:
    """On Chinese readers MiniLM (an English model) gives most users the same segment; a fitted segment prior would
    let it explain itself as always right. The label model must still find e5 the best and MiniLM not."""
    data = json.loads((FIXTURE.parent / "zh_news_tune.json").read_text())
    users, names = sorted(data["gold"]), ["gemma", "minilm", "e5"]
    rows = [{n: data["scorers"][n]["scores"].get(u) for n in names} for u in users]
    cal = {n: np.mean([r[n] for r in rows], axis=0) for n in names}
    z, mask = stack_scores(
        rows, names, cal, {"gemma": "batch", "minilm": "none", "e5": "batch"}, len(data["segments"])
    )
    votes = np.where(mask, z.argmax(axis=2), -1)
    top_share = max(np.bincount(votes[1], minlength=len(data["segments"]))) / len(users)
    assert top_share > 0.4  # MiniLM really does pile users onto one segment here
    found = label_model(votes, len(data["segments"]), names)
    y = np.asarray([data["segments"].index(data["gold"][u][0]) for u in users])
    measured = {n: float((votes[s] == y).mean()) for s, n in enumerate(names)}
    assert (
        max(found.accuracy, key=found.accuracy.__getitem__) == "e5" == max(measured, key=measured.__getitem__)
    )
    assert found.weights["minilm"] < 0.5 and abs(found.accuracy["minilm"] - measured["minilm"]) < 0.1
