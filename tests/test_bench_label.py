"""Smoke runs of the benchmark scripts on a handful of real users, so that they cannot rot."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--fixture", "--no-lock", *args],
        capture_output=True,
        text=True,
        timeout=1800,  # generous: a loaded 2-core machine is many times slower; this bounds a hang, not speed
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_bench_label_prints_every_path_the_ratios_and_memory(tmp_path: Path) -> None:
    out = _run(
        "bench_label.py",
        "--n",
        "2",
        "--memory-sizes",
        "2",
        "--naive-max-tokens",
        "8",
        "--sweep-embedding",
        "2",
        "--json",
        str(tmp_path / "bench.json"),
    )
    for row in (
        "1 naive",
        "2 product: default",
        "2 product: llm scorer only",
        "embedding scorer alone",
        "3 bound",
    ):
        line = next(x for x in out.splitlines() if x.startswith(row) or x.strip().startswith(row))
        # the first number after the path's name is its s/user (whatever its width on a slow machine)
        s_per_user = float(re.findall(r"\d+\.\d+", line.split(row, 1)[1].split(":", 1)[-1])[0])
        assert s_per_user > 0, line
    assert re.search(r"naive/product:\s+default [\d.]+x\s+llm-only [\d.]+x", out)
    assert re.search(r"product/bound:\s+default [\d.]+x\s+llm-only [\d.]+x", out)
    assert re.search(r"memory: label \(llm\+embedding\)\s+2 users: peak RSS [\d.]+ MiB", out)
    sweep = [x for x in out.splitlines() if x.startswith("sweep: embedding")]
    assert len(sweep) == 8 and sum("<- shipped" in x for x in sweep) == 1, sweep
    assert all(float(x.split("min cosine vs float32 batch 64 ")[1].split()[0]) > 0.999 for x in sweep), sweep
    figures = json.loads((tmp_path / "bench.json").read_text())
    paths = {p["name"]: p for p in figures["paths"]}
    naive = paths["1 naive: JSON generation"]
    product = paths["2 product: llm scorer only"]
    bound = paths["3 bound: llama_decode only"]
    assert naive["generated_tokens"] > 0 and product["generated_tokens"] == 0
    assert naive["prompt_tokens"] > product["prompt_tokens"]  # the full prompt every time vs the user's part
    assert (
        0 < bound["prompt_tokens"] <= product["prompt_tokens"]
    )  # the bound's tokens are the product's, sans prefix
    assert figures["memory"][0]["users"] == 2 and figures["memory"][0]["peak_kib"] > 0


def test_bench_budget_prints_a_curve() -> None:
    out = _run("bench_budget.py", "--n", "2", "--budgets", "60,120", "--no-default")
    rows = [x.split() for x in out.splitlines() if re.match(r"\s+\d+\s+[\d.]+", x)]
    assert [int(r[0]) for r in rows] == [60, 120]
    assert float(rows[0][3]) <= float(rows[1][3])  # prompt tokens/user grow with the budget
    assert "embedding scorer alone" in out
