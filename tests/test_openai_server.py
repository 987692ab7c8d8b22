"""Hosted backends against llama-cpp-python's own OpenAI-compatible server on 127.0.0.1 (real HTTP, real JSON).

The server runs the embedded GGUF once per module; a fault-injecting proxy (real sockets) sits in front of it where
a test needs failures. No call leaves this machine. Users are few and answers short, to keep the suite fast.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from faultproxy import JUNK_ANSWER, FaultProxy, Rule
from hosted_server import LlamaServer
from typer.testing import CliRunner

from llm_labeler.backends import get_backend
from llm_labeler.cli import app
from llm_labeler.labeling import LabelConfig, label_users, plan_run
from llm_labeler.labeling.prepare import prepare_jobs
from llm_labeler.redaction import Redactor
from llm_labeler.schemas import Taxonomy
from llm_labeler.segments import JsonScorer, ScorerSpec
from llm_labeler.store import Store

JSON_ONLY = [ScorerSpec("json", 1.0, "none")]
EMAIL = re.compile(r"\b[\w.%+-]+@[\w-]+\.[\w.]+\b")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server() -> Iterator[LlamaServer]:
    """The real server with the embedded model (a few seconds to load); no logprobs, so prompts run faster."""
    with LlamaServer(logits_all=False) as srv:
        yield srv


def _config(backend: str, **kw: object) -> LabelConfig:
    """Small and fast: short histories and answers (an answer cut off in its rationale is closed and kept)."""
    opts: dict[str, object] = {"scorers": JSON_ONLY, "budget_tokens": 100, "max_tokens": 32, "timeout": 300.0}
    return LabelConfig(backend=backend, **(opts | kw))  # type: ignore[arg-type]


def _upstream(server: LlamaServer) -> str:
    return f"http://127.0.0.1:{server.port}"


def _json_calls(store: Store, run_id: str) -> list[dict[str, object]]:
    return store.query(
        "SELECT * FROM calls WHERE run_id = ? AND stage = 'segment_json' ORDER BY user_id", [run_id]
    )


def _snippet(store: Store, taxonomy: Taxonomy, backend: str, uid: str) -> str:
    """A plain phrase that only this user's (redacted) request contains, for a proxy rule."""
    scorer = JsonScorer(get_backend(backend), taxonomy, budget_tokens=100, max_tokens=32)
    jobs, _ = prepare_jobs(scorer, store.events_for([uid]), taxonomy.content_hash(), Redactor())
    history = jobs[uid].text.split("User activity:", 1)[1]
    return max(re.findall(r"[A-Za-z][A-Za-z ]{12,40}[A-Za-z]", history), key=len)


def test_openai_compatible_labels_real_users_and_reruns_for_free(
    server: LlamaServer, loaded_store: Store, coarse_taxonomy: Taxonomy
) -> None:
    # the default for a backend nobody fitted: the label-model combination of json + MiniLM (Latin script) + e5
    # (everyone), weighed by their agreement (3 users: too few, so equal weights)
    config = _config(server.backend_id(), scorers=None)
    first = label_users(loaded_store, coarse_taxonomy, config, limit=3)
    run_config = loaded_store.get_run(first.run_id)["config"]
    assert [s["name"] for s in run_config["scorers"]] == ["json", "embedding", "multilingual"]
    assert run_config["combination"] == "label-model" and "label-model" in " ".join(first.warnings)
    assert len(first.labels) == 3 and all(lab.primary_segment in coarse_taxonomy.ids for lab in first.labels)
    assert first.stats["failed_calls"] == 0 and first.stats["redaction"] is True
    assert first.stats["redactions"].get("email", 0) >= 1  # 20 Newsgroups quotes real 1993 addresses
    calls = _json_calls(loaded_store, first.run_id)
    assert len(calls) == 3 and all(c["prompt_tokens"] and c["transport_attempts"] == 1 for c in calls)
    assert all(
        c["model_id"] == "openai-compatible/gemma" and c["confidence_source"] == "self_reported"
        for c in calls
    )
    assert not any(EMAIL.search(str(c["request"])) for c in calls)  # nothing identifying left the machine
    again = label_users(loaded_store, coarse_taxonomy, config, limit=3)
    assert again.stats["calls"] == 0 and again.stats["cache_hits"] == 9  # json + MiniLM + e5, all stored
    assert [lab.primary_segment for lab in again.labels] == [lab.primary_segment for lab in first.labels]

    planned = plan_run(loaded_store, coarse_taxonomy, config, limit=4)
    json_part = next(p for p in planned.scorers if p.scorer == "json")
    assert (json_part.calls, json_part.cache_hits) == (1, 3) and json_part.basis.startswith("median of 3")
    assert planned.sample_prompt and not EMAIL.search(planned.sample_prompt)
    assert planned.totals["cost_usd"] is None  # a self-hosted model with no price: unknown, not zero

    runner = CliRunner()
    logs = runner.invoke(app, ["logs", "--db", loaded_store.path, "--run", first.run_id, "--json"])
    assert logs.exit_code == 0, logs.output
    rows = json.loads(logs.output)
    assert {r["stage"] for r in rows} == {"segment_json", "embed"} and len(rows) == 9  # json, MiniLM, e5


def test_openai_scheme_via_base_url_degrades_schema_and_reads_logprobs(
    loaded_store: Store, coarse_taxonomy: Taxonomy, monkeypatch: pytest.MonkeyPatch
) -> None:
    with LlamaServer(logits_all=True) as server:  # llama-cpp-python's default: logprobs on
        _openai_scheme(server, loaded_store, coarse_taxonomy, monkeypatch)


def _openai_scheme(
    server: LlamaServer, loaded_store: Store, coarse_taxonomy: Taxonomy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-local-test")
    backend = get_backend("openai:gemma", reuse=False)
    assert backend.capabilities.logprobs and backend.schema_mode == "json_schema"
    result = label_users(loaded_store, coarse_taxonomy, _config("openai:gemma"), limit=1)
    assert any("degraded to json_object" in w for w in result.warnings)  # llama.cpp rejects OpenAI's envelope
    (call,) = _json_calls(loaded_store, result.run_id)
    assert call["error"] is None and call["model_id"] == "openai/gemma"
    assert call["confidence_source"] == "logprobs"  # normalised over the allowed segments
    probs = result.labels[0].probabilities
    assert abs(sum(probs.values()) - 1) < 1e-4 and set(probs) == set(coarse_taxonomy.ids)


def test_langchain_chat_openai_and_any_chat_model_instance(
    server: LlamaServer, loaded_store: Store, coarse_taxonomy: Taxonomy
) -> None:
    from langchain_openai import ChatOpenAI

    from llm_labeler.backends.langchain_backend import use_chat_model

    by_id = f"langchain:openai:gemma?base_url={server.url}&schema=json_object"
    first = label_users(loaded_store, coarse_taxonomy, _config(by_id), limit=1)
    assert first.stats["failed_calls"] == 0 and all(lab.primary_segment for lab in first.labels)
    assert {c["model_id"] for c in _json_calls(loaded_store, first.run_id)} == {"langchain/openai/gemma"}
    chat = ChatOpenAI(model="gemma", base_url=server.url, api_key="unused", max_retries=0)  # type: ignore[arg-type]
    backend_id = use_chat_model(chat, "local-chat", schema_mode="json_object")
    second = label_users(loaded_store, coarse_taxonomy, _config(backend_id), users=[first.labels[0].user_id])
    assert second.stats["calls"] == 1 and second.labels[0].primary_segment in coarse_taxonomy.ids


def test_fault_proxy_recovers_and_stores_unrecoverable_rows(
    server: LlamaServer, loaded_store: Store, coarse_taxonomy: Taxonomy
) -> None:
    users = loaded_store.user_ids(limit=3)
    doomed = users[1]
    with FaultProxy(_upstream(server), ["429", "500", "truncate", "badjson", "reset", "junk"]) as proxy:
        backend = server.backend_id(proxy.url())
        proxy.rules.append(Rule("junk", _snippet(loaded_store, coarse_taxonomy, backend, doomed)))
        result = label_users(loaded_store, coarse_taxonomy, _config(backend, concurrency=2), users=users)
    assert proxy.stats.injected["junk"] >= 4  # 3 attempts of the doomed user + 1 scheduled
    assert all(proxy.stats.injected[f] == 1 for f in ("429", "500", "truncate", "badjson", "reset"))
    stats = result.stats
    assert stats["calls"] == 3 and stats["failed_calls"] == 1
    assert stats["failed_attempts"] == 5 and stats["retry_wait_s"] >= 1.0  # Retry-After: 1 honoured
    labels = {lab.user_id: lab for lab in result.labels}
    assert sorted(labels) == sorted(users)  # nothing lost
    assert labels[doomed].error == "every scorer failed" and labels[doomed].primary_segment is None
    assert all(labels[u].primary_segment in coarse_taxonomy.ids for u in users if u != doomed)
    calls = {c["user_id"]: c for c in _json_calls(loaded_store, result.run_id)}
    assert len(calls) == 3  # one stored call per user: retries and re-asks never duplicate a row
    assert calls[doomed]["raw_output"] == JUNK_ANSWER and calls[doomed]["attempts"] == 3
    assert "OutputValidationError" in str(calls[doomed]["error"])
    dupes = loaded_store.query(
        "SELECT user_id FROM labels WHERE run_id = ? GROUP BY user_id HAVING count(*) > 1", [result.run_id]
    )
    assert dupes == []
    rerun = label_users(loaded_store, coarse_taxonomy, _config(server.backend_id()), users=users)
    assert rerun.stats["calls"] == 1 and rerun.stats["cache_hits"] == 2  # only the failed row is asked again


def test_slow_answer_past_the_timeout_is_retried(server: LlamaServer) -> None:
    from pydantic import BaseModel

    from llm_labeler.structured import call_structured

    class Answer(BaseModel):
        topic: str

    # The proxy holds the first request until the client's 10 s timeout gives up on it (no wall-clock race).
    with FaultProxy(_upstream(server), ["slow"], slow_s=300.0) as proxy:
        backend = get_backend(server.backend_id(proxy.url()), reuse=False)
        result = call_structured(
            backend,
            [{"role": "user", "content": "Name the topic of 'my SCSI disk fails' in one word, as JSON."}],
            Answer,
            max_tokens=12,
            timeout=10.0,
            close_cut=True,
        )
    usage = result.usage
    assert proxy.stats.injected["slow"] == 1 and usage.transport_attempts >= 2  # more only on a crowded CPU
    assert usage.failed_attempts == usage.transport_attempts - 1
    assert usage.estimated_prompt_tokens > 0  # a timed-out request may still be billed
    assert result.value.topic


def test_a_bad_request_fails_its_row_without_retry(
    server: LlamaServer, loaded_store: Store, coarse_taxonomy: Taxonomy
) -> None:
    users = loaded_store.user_ids(limit=2)
    with FaultProxy(_upstream(server)) as proxy:
        backend = server.backend_id(proxy.url())
        proxy.rules.append(Rule("400", _snippet(loaded_store, coarse_taxonomy, backend, users[0])))
        result = label_users(loaded_store, coarse_taxonomy, _config(backend), users=users)
    assert proxy.stats.injected["400"] == 1  # a bad request is not retried ...
    bad = {lab.user_id: lab for lab in result.labels}
    assert (
        bad[users[0]].error == "every scorer failed" and bad[users[1]].primary_segment
    )  # ... nor fatal to the run


def test_max_cost_stops_before_crossing_and_resumes(
    server: LlamaServer, loaded_store: Store, coarse_taxonomy: Taxonomy, tmp_path: Path
) -> None:
    from llm_labeler.labeling.dispatch import worst_case_tokens
    from llm_labeler.labeling.pricing import Price

    prices = tmp_path / "prices.yaml"
    prices.write_text("gemma: {input: 1.0, output: 2.0}\n", encoding="utf-8")
    price = Price(1.0, 2.0)
    backend = server.backend_id()
    candidates = loaded_store.user_ids(limit=2)
    scorer = JsonScorer(get_backend(backend), coarse_taxonomy, budget_tokens=100, max_tokens=32)
    events = loaded_store.events_for(candidates)
    jobs, _ = prepare_jobs(scorer, events, coarse_taxonomy.content_hash(), Redactor())
    worst = {u: price.cost(*worst_case_tokens(j.text, 32, scorer.policy)) for u, j in jobs.items()}
    # Cheapest worst case first and a budget of exactly that: the first user fits, the second cannot.
    users = sorted(candidates, key=worst.__getitem__)
    max_cost = worst[users[0]] * (1 + 1e-9)

    result = label_users(
        loaded_store, coarse_taxonomy, _config(backend, max_cost=max_cost, prices=str(prices)), users=users
    )
    budget = result.stats["budget"]
    stopped = budget["stopped_before_user"]
    assert budget["stopped"] and stopped == users[1] and budget["spent_usd"] <= max_cost
    assert budget["spent_usd"] + worst[stopped] > max_cost  # the next call could have crossed it
    assert loaded_store.get_run(result.run_id)["status"] == "stopped_budget"
    labeled = {lab.user_id for lab in result.labels}
    assert labeled == set(users[: users.index(stopped)])  # labels for the users it reached, none for the rest
    assert any("--max-cost" in w and stopped in w for w in result.warnings)
    assert result.stats["cost_usd"] == pytest.approx(budget["spent_usd"], abs=1e-6)

    more = label_users(
        loaded_store, coarse_taxonomy, _config(backend, max_cost=100.0, prices=str(prices)), users=users
    )
    assert more.stats["cache_hits"] == len(labeled) and more.stats["calls"] == len(users) - len(labeled)
    assert len(more.labels) == len(users) and not more.stats["budget"]["stopped"]


def test_self_consistency_samples_when_there_are_no_logprobs(
    server: LlamaServer, loaded_store: Store, coarse_taxonomy: Taxonomy
) -> None:
    result = label_users(loaded_store, coarse_taxonomy, _config(server.backend_id(), samples=2), limit=1)
    assert not any("no logprobs" in w for w in result.warnings)  # sampling is the stated fallback
    (call,) = _json_calls(loaded_store, result.run_id)
    assert call["confidence_source"] == "self_consistency:2" and call["transport_attempts"] >= 2
    assert len(json.loads(str(call["raw_output"]))) >= 1 and str(call["parsed"]).count("votes") == 1
    assert result.labels[0].scorers["confidence"] == {"json": "self_consistency:2"}


KILL_SCRIPT = """
import sys
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.schemas import load_taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.store import Store

from llm_labeler.labeling import ledger

committed = ledger.Ledger.record_paid

def announce(self, call, *args, **kwargs):  # observation only: say when a call is committed
    cost = committed(self, call, *args, **kwargs)
    print("committed", call.user_id, flush=True)
    return cost

ledger.Ledger.record_paid = announce
store = Store(sys.argv[1])
config = LabelConfig(backend=sys.argv[3], scorers=[ScorerSpec("json", 1.0, "none")], budget_tokens=100,
                     max_tokens=32, timeout=300.0, concurrency=2)
label_users(store, load_taxonomy(sys.argv[2]), config, limit=int(sys.argv[4]))
"""


def test_sigkill_with_concurrent_calls_loses_nothing_committed(
    server: LlamaServer, tmp_path: Path, events_path: Path, coarse_taxonomy: Taxonomy
) -> None:
    db, n = tmp_path / "kill.duckdb", 3
    with Store(db) as store:
        store.ingest(events_path)
    # Two requests are answered, every later one is held; the kill comes once a call is committed, mid-run.
    with FaultProxy(_upstream(server), [None, None] + ["slow"] * 20, slow_s=600.0) as proxy:
        args = [
            str(db),
            str(ROOT / "taxonomies" / "20ng_coarse.yaml"),
            server.backend_id(proxy.url()),
            str(n),
        ]
        proc = subprocess.Popen(
            [sys.executable, "-c", KILL_SCRIPT, *args],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().startswith("committed")
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    with Store(db) as store:
        stored = store.query("SELECT user_id FROM calls WHERE NOT cache_hit AND error IS NULL")
        assert 1 <= len(stored) < n and len({r["user_id"] for r in stored}) == len(stored)
        rerun = label_users(store, coarse_taxonomy, _config(server.backend_id(), concurrency=2), limit=n)
        assert rerun.stats["cache_hits"] == len(stored) and rerun.stats["calls"] == n - len(stored)
        per_key = store.query("SELECT cache_key, count(*) AS n FROM calls WHERE NOT cache_hit GROUP BY 1")
        assert len(per_key) == n and all(r["n"] == 1 for r in per_key)  # nobody paid twice
        assert {r["status"] for r in store.query("SELECT status FROM runs")} == {"interrupted", "done"}
