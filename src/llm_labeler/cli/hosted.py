"""Commands for hosted backends: plan, logs (issue: hosted and pluggable backends)."""

from __future__ import annotations
