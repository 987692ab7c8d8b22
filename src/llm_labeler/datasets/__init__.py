"""Public data sets turned into users with histories and gold segments (one module each)."""

from __future__ import annotations

__all__: list[str] = []
