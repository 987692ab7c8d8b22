"""Named combinations: a stored, fitted mix of scorers that `label --combination NAME` applies, and the built-in
`label-model`, whose weights come from how the run's own scorers agree (no gold).

A stored combination fixes everything that decides its labels: the scorer specs (weights, calibrations), the
temperature, the LLM backend and prompt, and both embedding models. It was fitted for one backend and one
taxonomy; applying it elsewhere is an error that says so, since its weights describe those scorers only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any

import numpy as np

from ..errors import ConfigError, InputError
from ..schemas import Taxonomy
from ..segments import ScoreResult, ScorerSpec
from ..segments.fit import first_choices, label_model, stack_scores
from ..store import Store
from ..store.combinations import get_combination, list_combinations
from .config import LabelConfig

__all__ = [
    "LABEL_MODEL",
    "MIN_USERS_FOR_LABEL_MODEL",
    "combination_config",
    "label_model_specs",
    "resolve_combination",
    "stored_backend",
]

LABEL_MODEL = "label-model"
# Below this many users the agreement statistics are too noisy to weigh scorers by: the run keeps its weights.
MIN_USERS_FOR_LABEL_MODEL = 20


def combination_config(config: LabelConfig) -> dict[str, Any]:
    """What a stored combination records of a config (what `resolve_combination` puts back)."""
    return {
        "backend": config.backend,
        "scorers": [asdict(s) for s in config.scorers or []],
        "temperature": config.temperature,
        "embedding_backend": config.embedding_backend,
        "multilingual_backend": config.multilingual_backend,
        "route_by_script": config.route_by_script,
        "prompt_segment": config.prompt_segment,
        "prompt_json": config.prompt_json,
    }


def stored_backend(store: Store, name: str) -> str | None:
    """The backend a stored combination was fitted for (None for the built-in label-model)."""
    if name == LABEL_MODEL:
        return None
    return str(_stored(store, name)["backend"])


def _stored(store: Store, name: str) -> dict[str, Any]:
    found = get_combination(store, name)
    if found is None:
        known = [c["name"] for c in list_combinations(store)]
        raise InputError(
            f"no combination named {name!r} in this store (known: {', '.join(known) or 'none'}; "
            f"fit one with `llm-labeler eval tune SUITE --name {name}`, or use {LABEL_MODEL!r})"
        )
    return found


def resolve_combination(store: Store, config: LabelConfig, taxonomy: Taxonomy) -> LabelConfig:
    """The config with its named combination applied (unchanged without one)."""
    name = config.combination
    if not name or name == LABEL_MODEL:
        return config
    found = _stored(store, name)
    if found["taxonomy_hash"] != taxonomy.content_hash():
        raise InputError(
            f"combination {name!r} was fitted for taxonomy {found['taxonomy_name']!r} "
            f"({found['taxonomy_hash'][:12]}), not for {taxonomy.name!r} ({taxonomy.content_hash()[:12]}): "
            "its weights describe those segments only; fit one for this taxonomy"
        )
    if found["backend"] != config.backend:
        raise InputError(
            f"combination {name!r} was fitted for backend {found['backend']}, not {config.backend}: "
            f"run with --backend {found['backend']}, or fit a combination for {config.backend}"
        )
    c = found["config"]
    return replace(
        config,
        scorers=[ScorerSpec(**s) for s in c["scorers"]],
        temperature=float(c["temperature"]),
        embedding_backend=c["embedding_backend"],
        multilingual_backend=c["multilingual_backend"],
        route_by_script=bool(c.get("route_by_script", True)),
        prompt_segment=c.get("prompt_segment"),
        prompt_json=c.get("prompt_json"),
    )


def label_model_specs(
    specs: Sequence[ScorerSpec],
    results: Mapping[str, Mapping[str, ScoreResult]],
    calibration: Mapping[str, np.ndarray],
    n_segments: int,
) -> tuple[list[ScorerSpec], dict[str, Any]]:
    """Specs re-weighted by a label model fitted on this run's users (their first choices), and what it found."""
    names = [s.name for s in specs if s.weight > 0]
    if len(names) < 3:
        raise ConfigError(
            f"the {LABEL_MODEL} combination needs at least three scorers to weigh them by agreement; this run "
            f"has {', '.join(names) or 'none'}: add scorers (--scorers llm,embedding,multilingual)"
        )
    rows = [{n: r.scores for n, r in got.items()} for got in results.values()]
    z, mask = stack_scores(rows, names, calibration, {s.name: s.calibration for s in specs}, n_segments)
    votes = first_choices(z, mask)
    if len(results) < MIN_USERS_FOR_LABEL_MODEL:
        return list(specs), {"skipped": f"{len(results)} users (< {MIN_USERS_FOR_LABEL_MODEL}): weights kept"}
    found = label_model(votes, n_segments, names)
    new = [replace(s, weight=found.weights.get(s.name, s.weight)) for s in specs]
    return new, {"accuracy": found.accuracy, "weights": found.weights, "users": found.n_users}
