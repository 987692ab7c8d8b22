"""One exception tree for the whole package.

LabelerError
├── ConfigError            bad settings, unknown backend id, missing model file
├── InputError             bad user input
│   ├── IngestError        a data file that cannot be loaded (names file, row, problem)
│   ├── TaxonomyError      an invalid taxonomy file
│   └── UnknownUserError   user ids that are not in the store
├── BackendError           an LLM call failed
│   ├── TransientBackendError   worth retrying (429, 5xx, timeout, dropped connection)
│   └── FatalBackendError       not worth retrying (bad key, bad request)
├── OutputValidationError  the model's answer never validated; carries raw output and attempts
├── BudgetExceeded         a run stopped before crossing its cost budget
└── StoreError             the DuckDB store is unusable (locked, newer schema, corrupt)

RunInterrupted (a KeyboardInterrupt, not an error): a run stopped by Ctrl-C after storing what it had answered.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BackendError",
    "BudgetExceeded",
    "ConfigError",
    "FatalBackendError",
    "IngestError",
    "InputError",
    "LabelerError",
    "OutputValidationError",
    "RunInterrupted",
    "StoreError",
    "TaxonomyError",
    "TransientBackendError",
    "UnknownUserError",
]


class LabelerError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(LabelerError):
    """Settings, backend ids or model paths that cannot work."""


class InputError(LabelerError):
    """Input supplied by the user is invalid."""


class IngestError(InputError):
    """A data file cannot be ingested; the message names the file, the row and the problem."""

    def __init__(self, path: str, problem: str, row: int | None = None) -> None:
        where = f"{path}" + (f", row {row}" if row is not None else "")
        super().__init__(f"{where}: {problem}")
        self.path = path
        self.row = row
        self.problem = problem


class TaxonomyError(InputError):
    """A taxonomy file is invalid."""


class UnknownUserError(InputError):
    """Requested user ids are not in the store."""

    def __init__(self, user_ids: list[str]) -> None:
        shown = ", ".join(user_ids[:10]) + (" ..." if len(user_ids) > 10 else "")
        super().__init__(f"unknown user id(s), not in the store: {shown}")
        self.user_ids = user_ids


class BackendError(LabelerError):
    """An LLM backend call failed.

    Carries `status_code` (the HTTP status, where there was one), `maybe_billed` (the server may have done, and
    billed, the work: a timeout, a dropped connection after sending, a cut-off body), `usage` (what every
    attempt of the call cost, a structured.Usage, set by the retry loop when the call gives up) and `raw_output`
    (the last answer received before it gave up, if any).
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, maybe_billed: bool = False, usage: Any = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.maybe_billed = maybe_billed
        self.usage = usage
        self.raw_output = ""


class TransientBackendError(BackendError):
    """A failure worth retrying: rate limits, server errors, timeouts, dropped connections."""

    def __init__(self, message: str, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class FatalBackendError(BackendError):
    """A failure not worth retrying: authentication, bad request, unsupported feature."""


class OutputValidationError(LabelerError):
    """The model's output did not validate after every allowed re-ask; carries the raw output, the attempt
    count and `usage` (what the attempts cost, a structured.Usage)."""

    def __init__(self, message: str, raw_output: str, attempts: int, usage: Any = None) -> None:
        super().__init__(f"{message} (after {attempts} attempt(s))")
        self.raw_output = raw_output
        self.attempts = attempts
        self.usage = usage


class BudgetExceeded(LabelerError):
    """A run stopped cleanly before crossing its cost budget."""


class StoreError(LabelerError):
    """The store cannot be opened or migrated."""


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: every answer so far is stored, and the labels of the users fully answered."""

    def __init__(self, run_id: str, labeled: int, total: int) -> None:
        super().__init__(
            f"run {run_id} interrupted: {labeled} of {total} users labeled and stored; rerun to resume"
        )
        self.run_id = run_id
        self.labeled = labeled
        self.total = total
