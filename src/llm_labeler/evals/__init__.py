"""Eval suites: gold sets, a prompt x backend x scorer matrix, metrics, run comparison, a CI gate, HTML reports.

suite = load_suite("evals/20ng_coarse.yaml")
result = run_suite(store, suite, fail_under={"macro_f1": 0.8})
compare_runs(store, result.eval_id, "eval_...")      # metric deltas and label flips
render_report(store, result.eval_id)                 # self-contained HTML
"""

from __future__ import annotations

from .compare import Comparison, compare_runs
from .gate import GateResult, check_gate, parse_fail_under
from .matrix import Cell, plan
from .metrics import HEADLINE, run_metrics, score_labels
from .report import render_report
from .runner import EvalResult, flat_metrics, run_suite
from .suite import BASELINE_NAME, Combination, DatasetSpec, Suite, load_suite

__all__ = [
    "BASELINE_NAME",
    "HEADLINE",
    "Cell",
    "Combination",
    "Comparison",
    "DatasetSpec",
    "EvalResult",
    "GateResult",
    "Suite",
    "check_gate",
    "compare_runs",
    "flat_metrics",
    "load_suite",
    "parse_fail_under",
    "plan",
    "render_report",
    "run_metrics",
    "run_suite",
    "score_labels",
]
