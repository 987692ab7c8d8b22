"""llm_labeler: label recommender-system users into taxonomy segments with an LLM, then distill the labels."""

from __future__ import annotations

from .backends import get_backend, register
from .errors import (
    BackendError,
    ConfigError,
    IngestError,
    InputError,
    LabelerError,
    OutputValidationError,
    StoreError,
    TaxonomyError,
    UnknownUserError,
)
from .labeling import LabelConfig, RunResult, label_users
from .schemas import InterestProfile, SegmentAssignment, Taxonomy, load_taxonomy
from .store import Store

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "ConfigError",
    "IngestError",
    "InputError",
    "InterestProfile",
    "LabelConfig",
    "LabelerError",
    "OutputValidationError",
    "RunResult",
    "SegmentAssignment",
    "Store",
    "StoreError",
    "Taxonomy",
    "TaxonomyError",
    "UnknownUserError",
    "__version__",
    "get_backend",
    "label_users",
    "load_taxonomy",
    "register",
]
