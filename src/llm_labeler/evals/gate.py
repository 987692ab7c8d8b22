"""The CI gate: absolute floors (--fail-under, suite thresholds) and no regression against a baseline run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from .metrics import HEADLINE, LOWER_IS_BETTER

__all__ = ["GateResult", "check_gate", "metric_value", "parse_fail_under"]


@dataclass
class GateResult:
    """Whether a run passes, and one line per failed check naming the metric."""

    passed: bool = True
    failures: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {"passed": self.passed, "failures": self.failures, "checks": self.checks}


def parse_fail_under(items: Sequence[str]) -> dict[str, float]:
    """'macro_f1=0.8' items -> {metric: floor}; malformed items are an error naming them."""
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise InputError(f"--fail-under expects METRIC=VALUE (e.g. macro_f1=0.8), got {item!r}")
    return out


def metric_value(metrics: Mapping[str, Any], name: str) -> float:
    """A metric by name; dotted names reach nested ones ('covered.accuracy', 'per_segment.politics.f1')."""
    node: Any = metrics
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            known = ", ".join([*HEADLINE, "covered.<metric>", "per_segment.<segment>.f1"])
            raise InputError(f"unknown metric {name!r}; metrics: {known}")
        node = node[part]
    if not isinstance(node, int | float):
        raise InputError(f"metric {name!r} is not a number")
    return float(node)


def check_gate(
    metrics: Mapping[str, Any],
    floors: Mapping[str, float],
    baseline: Mapping[str, Any] | None = None,
    baseline_name: str = "",
    gated: Sequence[str] = ("accuracy", "macro_f1"),
    tolerance: float = 0.0,
) -> GateResult:
    """Every floor must hold; with a baseline, no gated metric may be worse by more than the tolerance."""
    result = GateResult()
    for name, floor in floors.items():
        value = metric_value(metrics, name)
        ok = value >= floor
        result.checks.append({"metric": name, "value": value, "floor": floor, "passed": ok})
        if not ok:
            result.failures.append(f"{name} {value:.4f} is under {floor:g}")
    for name in gated if baseline is not None else ():
        assert baseline is not None
        value, before = metric_value(metrics, name), metric_value(baseline, name)
        worse = value - before if name.split(".")[-1] in LOWER_IS_BETTER else before - value
        ok = worse <= tolerance + 1e-12
        result.checks.append({"metric": name, "value": value, "baseline": before, "passed": ok})
        if not ok:
            result.failures.append(
                f"{name} regressed: {value:.4f} vs {before:.4f} in baseline {baseline_name} "
                f"(tolerance {tolerance:g})"
            )
    result.passed = not result.failures
    return result
