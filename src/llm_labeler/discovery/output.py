"""The proposed taxonomy as YAML that `label` accepts as is, with a comment block of evidence per segment."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml

from ..schemas import Taxonomy
from .config import ProposedSegment

__all__ = ["taxonomy_body", "taxonomy_yaml", "unique_ids"]


def unique_ids(segments: Sequence[ProposedSegment]) -> None:
    """Make segment ids unique in place (a second `sports` becomes `sports_2`), the reserved abstain id too."""
    seen: set[str] = {"unclassified"}
    for seg in segments:
        base, n = seg.id, 2
        while seg.id in seen:
            seg.id, n = f"{base}_{n}", n + 1
        seen.add(seg.id)


def taxonomy_body(name: str, description: str, segments: Sequence[ProposedSegment]) -> dict[str, Any]:
    """The taxonomy as a mapping (validated: the same checks `label` runs on the file)."""
    body = {
        "name": name,
        "description": description,
        "multi_label": False,
        "segments": [s.segment() for s in segments],
    }
    Taxonomy.model_validate(body)
    return body


def taxonomy_yaml(body: dict[str, Any], header: Sequence[str], segments: Sequence[ProposedSegment]) -> str:
    """YAML text: a header comment, the taxonomy's fields, then each segment after its evidence comment."""
    lines = [f"# {h}" for h in header]
    head = {k: v for k, v in body.items() if k != "segments"}
    lines += [_dump(head).rstrip("\n"), "segments:"]
    for seg, entry in zip(segments, body["segments"]):
        lines.append("")
        lines += ["  " + c for c in _comment(seg)]
        item = _dump([entry]).rstrip("\n")
        lines += ["  " + line for line in item.splitlines()]
    return "\n".join(lines) + "\n"


def _comment(seg: ProposedSegment) -> list[str]:
    how = {
        "llm": "named by the LLM",
        "terms": "named from its top terms "
        + ("(the model's answer was unusable)" if seg.call_error else "(--naming terms)"),
    }
    out = [
        f"# {seg.size} users ({seg.share:.1%}) · {how.get(seg.named_by, 'kept from --from')}",
        f"# top terms: {', '.join(seg.terms) or '(none)'}",
        f"# exemplar users: {', '.join(seg.exemplars) or '(none)'}",
    ]
    return [line.replace("\n", " ") for line in out]


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False, width=110, default_flow_style=False)
