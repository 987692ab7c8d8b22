"""Commands for evaluation suites: eval run / compare / report."""

from __future__ import annotations
