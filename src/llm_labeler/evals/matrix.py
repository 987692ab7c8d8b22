"""The matrix of a suite: every prompt x backend x scorer combination as one cell with its LabelConfig."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..labeling import LabelConfig
from ..prompts import load_prompt
from .suite import Combination, Suite

__all__ = ["Cell", "plan"]


@dataclass
class Cell:
    """One cell of the matrix: a scorer combination with a prompt and a backend."""

    name: str
    combination: Combination
    prompt: str  # prompt ref shown in the matrix ('-' when the combination uses no LLM)
    backend: str
    config: LabelConfig
    is_primary: bool = False


def _prompt_kwargs(ref: str) -> tuple[dict[str, str], str]:
    prompt = load_prompt(ref)
    key = "prompt_json" if prompt.name.startswith("segment_json") else "prompt_segment"
    return {key: ref}, prompt.ref


def plan(suite: Suite, backends: Sequence[str] | None = None) -> list[Cell]:
    """The matrix: LLM combinations vary over prompts x backends; LLM-free ones (the baseline) appear once."""
    cells: list[Cell] = []
    primary = suite.primary_combination
    for combo in suite.combinations:
        pairs = [
            (p, b)
            for p in ([combo.prompt] if combo.prompt else suite.prompts)
            for b in ([combo.backend] if combo.backend else (backends or suite.backends))
        ]
        for prompt_ref, backend in pairs if combo.uses_llm else pairs[:1]:
            kwargs, shown = _prompt_kwargs(prompt_ref) if combo.uses_llm else ({}, "-")
            config = LabelConfig(backend=backend, scorers=combo.scorer_specs(), **kwargs)  # type: ignore[arg-type]
            if combo.temperature is not None:
                config.temperature = combo.temperature
            if combo.threshold is not None:
                config.threshold = combo.threshold
            if combo.budget_tokens is not None:
                config.budget_tokens = combo.budget_tokens
            if combo.embedding is not None:
                config.embedding_backend = combo.embedding
            if combo.multilingual is not None:
                config.multilingual_backend = combo.multilingual
            if combo.fitted is not None:
                config.combination = combo.fitted
            shown_backend = (
                backend
                if combo.uses_llm
                else f"fitted:{combo.fitted}"
                if combo.fitted
                else config.embedding_backend
            )
            name = f"{combo.name}|{shown}|{shown_backend}" if combo.uses_llm else combo.name
            cells.append(Cell(name, combo, shown, shown_backend, config, combo.name == primary))
    first = next(c for c in cells if c.is_primary)
    for c in cells:  # only one primary cell: the first prompt x backend of the primary combination
        c.is_primary = c is first
    return cells
