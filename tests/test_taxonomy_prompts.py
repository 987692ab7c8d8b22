"""Taxonomy validation and versioned prompt files."""

from __future__ import annotations

from pathlib import Path

import pytest

from llm_labeler.errors import ConfigError, TaxonomyError
from llm_labeler.prompts import load_prompt, split_prompt
from llm_labeler.schemas import Taxonomy, load_taxonomy

MINIMAL = """\
name: shopping-interests
multi_label: false
segments:
  - id: tech
    name: Tech enthusiasts
    description: Buys and reads about gadgets, computers and software.
  - id: home
    name: Home and garden
    description: Furniture, decoration, gardening and DIY.
"""


def _tax(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "t.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_form_works_and_hash_is_stable(tmp_path: Path) -> None:
    tax = load_taxonomy(_tax(tmp_path, MINIMAL))
    assert tax.ids == ["tech", "home"] and not tax.multi_label and tax.abstain.id == "unclassified"
    assert tax.content_hash() == load_taxonomy(_tax(tmp_path, MINIMAL)).content_hash()
    changed = load_taxonomy(_tax(tmp_path, MINIMAL.replace("Furniture", "Sofas")))
    assert changed.content_hash() != tax.content_hash()


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.replace("id: home", "id: tech"), "duplicate segment id"),
        (
            lambda t: t.replace("Furniture, decoration, gardening and DIY.", "'  '"),
            "description must not be empty",
        ),
        (lambda t: t.replace("id: home", "id: unclassified"), "reserved"),
        (lambda t: t.replace("name: shopping-interests\n", ""), "name"),
        (lambda t: t + "colour: blue\n", "colour"),
        (lambda t: "segments: [", "not valid YAML"),
    ],
)
def test_invalid_taxonomies_are_clear_errors(tmp_path: Path, edit, match: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TaxonomyError, match=match) as info:
        load_taxonomy(_tax(tmp_path, edit(MINIMAL)))
    assert "t.yaml" in str(info.value)


def test_shipped_taxonomies_load() -> None:
    root = Path(__file__).resolve().parents[1] / "taxonomies"
    for path in root.glob("*.yaml"):
        assert isinstance(load_taxonomy(path), Taxonomy)


def test_prompts_are_versioned_and_split_at_the_history(coarse_taxonomy: Taxonomy) -> None:
    prompt = load_prompt("segment_score@1")
    assert (prompt.name, prompt.version, prompt.stage) == ("segment_score", "1", "segment")
    assert len(prompt.hash) == 64 and load_prompt("segment_score").version >= "1"
    prefix, suffix = split_prompt(prompt, taxonomy=coarse_taxonomy)
    assert "Computers and technology" in prefix and "Interest category:" in suffix
    with pytest.raises(ConfigError, match="not found"):
        load_prompt("no_such_prompt")
    with pytest.raises(ConfigError, match="failed to render"):
        prompt.render()  # taxonomy and history missing
