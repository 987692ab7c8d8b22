"""Commands for the student model: distill, score, export, review, explain."""

from __future__ import annotations
