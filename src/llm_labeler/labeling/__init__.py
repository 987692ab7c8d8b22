"""The label run: a LabelConfig is resolved once into a RunSetup (prepare), run start to finish (run), and turned
into labels (labels); `plan_run` shows what a run would do and cost without calling a model.

    config -> prepare.RunSetup -> run.LabelRun.execute -> labels.make_labels -> store

For hosted backends the generated (json) scorer's calls run concurrently (`concurrency`), paced by a
requests/tokens-per-minute limiter, within a cost budget (`max_cost`), with PII redacted before any text leaves the
machine; each call is committed as it arrives, so a killed run keeps everything it paid for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..schemas import Taxonomy
from ..store import Store
from .combinations import LABEL_MODEL, resolve_combination, stored_backend
from .config import LabelConfig, LabelProgress, RunResult, check_limit
from .plan import Plan, ScorerPlan, plan_run
from .prepare import RunSetup, default_specs, prepare
from .run import LabelRun

__all__ = [
    "LABEL_MODEL",
    "LabelConfig",
    "LabelProgress",
    "Plan",
    "RunResult",
    "RunSetup",
    "ScorerPlan",
    "default_specs",
    "label_users",
    "plan_run",
    "prepare",
    "resolve_combination",
    "stored_backend",
]


def label_users(
    store: Store,
    taxonomy: Taxonomy,
    config: LabelConfig | None = None,
    users: Sequence[str] | None = None,
    limit: int | None = None,
    kind: str = "label",
    progress: Callable[[LabelProgress], None] | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Label users (all, a list, or the first N): cached answers are reused, new ones stored as they arrive.

    With `max_cost` the run stops before a call could cross the budget: users labeled so far keep their labels,
    the rest are left for the next run (stats["budget"] and the warnings say where it stopped).
    """
    check_limit(limit)
    user_ids = store.user_ids(users, limit)
    store.mark_interrupted_runs()
    setup = prepare(resolve_combination(store, config or LabelConfig(), taxonomy), taxonomy)
    return LabelRun(store, setup, kind, run_id).execute(user_ids, progress or (lambda p: None))
