"""Token prices per model, for `plan` estimates and `label --max-cost` budgets.

The built-in table holds list prices in USD per million tokens (as published by the providers in 2025; check
yours). Override or extend it with a YAML file (`$LLM_LABELER_PRICES` or an explicit path):

    gpt-4o-mini: {input: 0.15, output: 0.60}
    my-vllm-model: {input: 0, output: 0}

A model matches its exact name, else the longest table key it starts with (dated snapshots such as
gpt-4o-mini-2024-07-18 get their family's price), else a `*` glob key.

Only the run's own backend costs money (the embedding scorer runs here), and a local model whose price the table
does not know costs nothing: both rules live in CallPricing.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import ConfigError
from ..settings import prices_path

__all__ = ["BUILTIN_PRICES", "CallPricing", "Price", "PriceTable", "load_prices"]


@dataclass(frozen=True)
class Price:
    """USD per million input and output tokens."""

    input: float
    output: float

    def cost(self, prompt_tokens: float, completion_tokens: float) -> float:
        """USD for this many tokens."""
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


BUILTIN_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "o4-mini": Price(1.10, 4.40),
    "gpt-3.5-turbo": Price(0.50, 1.50),
}


class PriceTable:
    """Model name -> Price lookup with prefix and glob matching."""

    def __init__(self, prices: dict[str, Price]) -> None:
        self.prices = dict(prices)

    def get(self, model: str) -> Price | None:
        """The price of a model, or None when the table does not know it."""
        name = model.rsplit("/", 1)[-1] if model not in self.prices else model
        if name in self.prices:
            return self.prices[name]
        prefixes = [k for k in self.prices if "*" not in k and name.startswith(k)]
        if prefixes:
            return self.prices[max(prefixes, key=len)]
        globs = [k for k in self.prices if "*" in k and fnmatch.fnmatchcase(name, k)]
        return self.prices[max(globs, key=len)] if globs else None

    def cost(self, model: str, prompt_tokens: float, completion_tokens: float) -> float | None:
        """USD for this many tokens of a model, None when its price is unknown."""
        price = self.get(model)
        return None if price is None else price.cost(prompt_tokens, completion_tokens)


@dataclass(frozen=True)
class CallPricing:
    """How one run prices its calls: the run's backend at its table price; every other scorer is free."""

    backend_id: str
    model: str  # the name the price table is searched with
    table: PriceTable
    local: bool

    def price(self) -> Price | None:
        """The backend's price; a local model the table does not know costs nothing; None: unknown."""
        found = self.table.get(self.model)
        return Price(0.0, 0.0) if found is None and self.local else found

    def price_or_fail(self) -> Price:
        """The backend's price, or a ConfigError that says how to give one."""
        found = self.price()
        if found is None:
            raise ConfigError(
                f"--max-cost needs the price of {self.model!r}: add it to a price table YAML "
                "($LLM_LABELER_PRICES), e.g. `my-model: {input: 0.15, output: 0.60}` (USD per million tokens)"
            )
        return found

    def cost(self, backend_id: str, prompt_tokens: float, completion_tokens: float) -> float | None:
        """USD of a call to `backend_id`: 0 for other (local) scorers, None when the price is unknown."""
        if backend_id != self.backend_id:
            return 0.0
        found = self.price()
        return None if found is None else found.cost(prompt_tokens, completion_tokens)


def load_prices(path: str | Path | None = None) -> PriceTable:
    """The built-in table, overridden by a YAML file (`path`, else $LLM_LABELER_PRICES)."""
    prices = dict(BUILTIN_PRICES)
    source = path or prices_path()
    if source:
        prices.update(_read(Path(source)))
    return PriceTable(prices)


def _read(path: Path) -> dict[str, Price]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the price table: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a price table maps model -> {{input: USD/Mtok, output: USD/Mtok}}")
    out = {}
    for model, entry in data.items():
        try:
            out[str(model)] = Price(float(entry["input"]), float(entry["output"]))
        except (TypeError, KeyError, ValueError) as exc:
            raise ConfigError(
                f"{path}: price of {model!r} needs numeric 'input' and 'output' (USD per million tokens)"
            ) from exc
    return out
