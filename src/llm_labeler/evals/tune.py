"""`eval tune`: fit a suite's combination on its tune users and store it under a name `label --combination` uses.

Two methods:
- logloss: the scorers' weights and the temperature that minimise the log-loss of the gold segments
  (segments.fit.fit_weights), on the suite's users, which must be a tune split;
- label-model: weights from the scorers' agreement alone (segments.fit.label_model), no gold used (the suite's
  gold is still used to report how the weights do).

Either way every scorer is run once on the suite's users (cached answers are reused), and the stored combination
records the suite, the labeling run, the scorers' models, the users it was fitted on and the fit's statistics.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..errors import InputError
from ..labeling import LABEL_MODEL, LabelConfig, LabelProgress, label_users
from ..labeling.combinations import combination_config
from ..metrics import classification_metrics
from ..schemas import Taxonomy, load_taxonomy
from ..segments import ScoreResult, ScorerSpec, combine
from ..segments.fit import fit_weights, stack_scores
from ..store import Store
from ..store.combinations import get_combination, save_combination
from .data import prepare
from .matrix import plan
from .suite import Combination, Suite, load_suite

__all__ = ["METHODS", "TuneResult", "ensure_fitted", "tune_suite"]

METHODS = ("logloss", "label-model")


@dataclass
class TuneResult:
    """A fitted, stored combination and how it does on the users it was fitted on."""

    name: str
    method: str
    backend: str
    run_id: str
    n_users: int
    prior: list[dict[str, Any]]  # the specs the fit started from
    fitted: list[dict[str, Any]]  # the stored specs
    temperature: float
    metrics: dict[str, dict[str, float]]  # on the fitted users: prior, fitted, each scorer alone
    details: dict[str, Any] = field(default_factory=dict)
    replaced: bool = False


def _base_config(suite: Suite, combination: str | None, backends: Sequence[str] | None) -> LabelConfig:
    cells = plan(suite, backends)
    name = combination or suite.primary_combination
    found = [c for c in cells if c.combination.name == name]
    if not found:
        known = ", ".join(dict.fromkeys(c.combination.name for c in cells))
        raise InputError(f"suite {suite.name} has no combination {name!r} (it has: {known})")
    return replace(found[0].config)


def tune_suite(
    store: Store,
    suite: Suite,
    name: str,
    method: str = "logloss",
    combination: str | None = None,
    backends: Sequence[str] | None = None,
    limit: int | None = None,
    progress: Callable[[LabelProgress], None] | None = None,
) -> TuneResult:
    """Run the suite's combination on its users, fit its weights, store it as `name`."""
    if method not in METHODS:
        raise InputError(f"unknown tuning method {method!r} (methods: {', '.join(METHODS)})")
    if name == LABEL_MODEL:
        raise InputError(
            f"{LABEL_MODEL!r} is the built-in agreement combination; store yours under another name"
        )
    if suite.dataset.split != "tune":
        raise InputError(
            f"suite {suite.name} reads the {suite.dataset.split!r} split: fit on a suite of the tune split (e.g. "
            "evals/20ng_coarse_tune.yaml), so the held-out half stays unseen by every choice"
        )
    taxonomy = load_taxonomy(suite.resolve(suite.taxonomy))
    if taxonomy.multi_label:
        raise InputError(f"eval tune fits single-label taxonomies; {taxonomy.name} is multi-label")
    data = prepare(store, suite, taxonomy, limit)
    config = _base_config(suite, combination, backends)
    if method == "label-model":
        config.combination = LABEL_MODEL
        if config.scorers is not None:
            config.scorers = [replace(s, weight=1.0) for s in config.scorers]
    users = sorted(data.gold)
    result = label_users(store, taxonomy, config, users, kind="tune", progress=progress)
    specs = [ScorerSpec(**s) for s in result.labels[0].scorers["specs"]] if result.labels else []
    if not specs:
        raise InputError(f"suite {suite.name}: no user was labeled, nothing to fit")
    calibration = {k: np.asarray(v) for k, v in result.stats.get("calibration", {}).items()}
    rows = [result.scores.get(u, {}) for u in users]
    ids = taxonomy.ids
    gold = [ids.index(data.gold[u][0]) for u in users]
    names = [s.name for s in specs]
    details: dict[str, Any] = {}
    if method == "logloss":
        prior = {s.name: s.weight for s in specs}
        z, mask = stack_scores(rows, names, calibration, {s.name: s.calibration for s in specs}, len(ids))
        fit = fit_weights(z, gold, names, prior, config.temperature)
        fitted = [replace(s, weight=fit.weights[s.name]) for s in specs]
        temperature = fit.temperature
        details = {
            "log_loss": fit.log_loss,
            "raw": fit.raw,
            "scored_users": dict(zip(names, mask.sum(axis=1).tolist())),
        }
        prior_specs = list(config.scorers or specs)
    else:
        fitted, temperature = specs, config.temperature
        details = dict(result.stats.get("label_model", {}))
        prior_specs = [replace(s, weight=1.0) for s in specs]
    metrics = _compare(taxonomy, rows, users, data.gold, calibration, prior_specs, fitted, temperature)
    stored = replace(config, scorers=fitted, temperature=temperature, combination=None)
    if method == "label-model":
        stored.route_by_script = False
    provenance = {
        "suite": suite.name,
        "suite_path": suite.path,
        "suite_hash": suite.content_hash(),
        "run_id": result.run_id,
        "models": result.labels[0].scorers.get("models", {}),
        "users": len(users),
        "users_sha256": hashlib.sha256("\n".join(users).encode()).hexdigest(),
        "source": data.source,
        "method": method,
        "prior": [asdict(s) for s in prior_specs],
        "metrics": metrics,
        "details": details,
    }
    replaced = save_combination(
        store,
        name,
        method.replace("-", "_"),
        config.backend,
        (taxonomy.name, taxonomy.content_hash()),
        combination_config(stored),
        provenance,
    )
    return TuneResult(
        name=name,
        method=method,
        backend=config.backend,
        run_id=result.run_id,
        n_users=len(users),
        prior=[asdict(s) for s in prior_specs],
        fitted=[asdict(s) for s in fitted],
        temperature=temperature,
        metrics=metrics,
        details=details,
        replaced=replaced,
    )


def _compare(
    taxonomy: Taxonomy,
    rows: Sequence[Mapping[str, Sequence[float]]],
    users: Sequence[str],
    gold: Mapping[str, Sequence[str]],
    calibration: Mapping[str, np.ndarray],
    prior: Sequence[ScorerSpec],
    fitted: Sequence[ScorerSpec],
    temperature: float,
) -> dict[str, dict[str, float]]:
    """Accuracy and macro-F1 on the fitted users: the prior weights, the fitted ones, and each scorer alone."""
    truth = [gold[u][0] for u in users]
    variants: dict[str, Sequence[ScorerSpec]] = {"prior": prior, "fitted": fitted}
    for s in fitted:
        variants[f"{s.name} alone"] = [replace(s, weight=1.0)]
    out = {}
    for label, specs in variants.items():
        pred = []
        for row in rows:
            results: dict[str, ScoreResult | None] = {n: ScoreResult("", list(v)) for n, v in row.items()}
            pred.append(combine(taxonomy, results, specs, calibration, temperature).primary)
        m = classification_metrics(truth, pred, taxonomy.ids)
        out[label] = {"accuracy": round(m["accuracy"], 4), "macro_f1": round(m["macro_f1"], 4)}
    return out


def ensure_fitted(store: Store, suite: Suite, combo: Combination) -> TuneResult | None:
    """Fit a suite cell's `fitted:` combination on its `tune:` suite when the store does not hold it yet
    (a stored one is reused as it is: refitting is `eval tune`'s job)."""
    if combo.fitted is None or combo.tune is None or get_combination(store, combo.fitted) is not None:
        return None
    tune = load_suite(suite.resolve(combo.tune))
    return tune_suite(store, tune, combo.fitted, combo.tune_method, combo.tune_from)
