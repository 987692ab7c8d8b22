"""labeling/pricing.py: price families, price files."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_labeler.errors import ConfigError
from llm_labeler.labeling.pricing import Price, load_prices


def test_prices_match_families_and_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    table = load_prices()
    assert table.get("gpt-4o-mini-2024-07-18") == table.get("gpt-4o-mini") != table.get("gpt-4o")
    assert table.get("openai/gpt-4o-mini") == table.get("gpt-4o-mini") and table.get("nope") is None
    assert Price(1.0, 2.0).cost(1_000_000, 500_000) == pytest.approx(2.0)
    path = tmp_path / "prices.yaml"
    path.write_text("'my-*': {input: 3, output: 4}\ngpt-4o-mini: {input: 9, output: 9}\n", encoding="utf-8")
    monkeypatch.setenv("LLM_LABELER_PRICES", str(path))
    table = load_prices()
    assert table.get("my-model") == Price(3, 4) and table.get("gpt-4o-mini") == Price(9, 9)
    path.write_text("m: {input: cheap}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="numeric"):
        load_prices()
