"""SIGKILL in the middle of a real labeling run loses nothing stored; the rerun pays only for the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from llm_labeler.store import Store

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import sys
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.schemas import load_taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.store import Store

PAUSE_AT = int(sys.argv[4]) if len(sys.argv) > 4 else 0

def progress(p):
    print(f"done {p.done}", flush=True)
    if PAUSE_AT and p.done >= PAUSE_AT:
        sys.stdin.readline()  # hold here (the test kills us now): the kill point is a state, not a moment

store = Store(sys.argv[1])
config = LabelConfig(backend="llamacpp:default", scorers=[ScorerSpec("llm", 1.0)], chunk_size=2)
result = label_users(store, load_taxonomy(sys.argv[2]), config, limit=int(sys.argv[3]), progress=progress)
print(f"calls {result.stats['calls']} hits {result.stats['cache_hits']}", flush=True)
store.close()
"""


def _start(db: Path, n: int, pause_at: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            SCRIPT,
            str(db),
            str(ROOT / "taxonomies" / "20ng_coarse.yaml"),
            str(n),
            str(pause_at),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def test_sigkill_then_rerun_resumes_without_paying_twice(tmp_path: Path, events_path: Path) -> None:
    db = tmp_path / "resume.duckdb"
    with Store(db) as store:
        store.ingest(events_path)
    n = 10
    proc = _start(db, n, pause_at=4)
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:  # the child holds once at least 4 users are stored; then kill -9
        seen += line
        if line.startswith("done") and float(line.split()[1]) >= 4:
            break
    else:
        raise AssertionError(f"the labeling child ended before storing 4 users:\n{seen}")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    if proc.stdin is not None:
        proc.stdin.close()
    assert proc.returncode == -signal.SIGKILL

    with Store(db) as store:
        stored = store.query("SELECT count(*) AS n FROM calls WHERE NOT cache_hit AND error IS NULL")[0]["n"]
        assert 4 <= stored < n
    rerun = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(db), str(ROOT / "taxonomies" / "20ng_coarse.yaml"), str(n)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    calls, hits = (int(x) for x in rerun.stdout.strip().splitlines()[-1].split()[1::2])
    assert hits == stored and calls == n - stored
    with Store(db) as store:
        per_key = store.query(
            "SELECT cache_key, count(*) AS n FROM calls WHERE NOT cache_hit GROUP BY cache_key"
        )
        assert len(per_key) == n and all(r["n"] == 1 for r in per_key)  # nobody paid twice
        runs = {r["status"] for r in store.query("SELECT status FROM runs")}
        assert runs == {"interrupted", "done"}
        assert store.query("SELECT count(*) AS n FROM labels")[0]["n"] == n


def test_only_runs_of_other_processes_are_marked_interrupted(tmp_path: Path) -> None:
    db = tmp_path / "r.duckdb"
    with Store(db) as store:
        dead = store.start_run("label", "fake:echo", "m", "t", "h", {})
    with Store(db) as store:  # a later process: the first one's running run is stale
        mine = store.start_run("score", "student", "m", "t", "h", {})
        assert store.mark_interrupted_runs() == 1
        status = {r["run_id"]: r["status"] for r in store.query("SELECT run_id, status FROM runs")}
    assert status == {dead: "interrupted", mine: "running"}
