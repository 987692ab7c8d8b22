"""Several OpenAI-compatible endpoints in one backend id: least-outstanding routing, per-endpoint limits, health;
then two real llama-cpp-python servers on 127.0.0.1, one killed mid-run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hosted_server import LlamaServer, free_port

from llm_labeler.backends import Capabilities, Completion, Request, get_backend
from llm_labeler.backends.fleet import EndpointFleet
from llm_labeler.errors import TransientBackendError
from llm_labeler.labeling import LabelConfig, label_users
from llm_labeler.schemas import Taxonomy
from llm_labeler.segments import ScorerSpec
from llm_labeler.store import Store

REQUEST = Request(messages=[{"role": "user", "content": "hello"}], max_tokens=8)


class Scripted:
    """A backend of this test: answers after `delay` seconds, or fails the way it is told to."""

    model_id = "m"
    capabilities = Capabilities(json_mode=True, concurrency=4)
    limits = (None, None)
    warnings: tuple[str, ...] = ()
    price_name = "m"

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.backend_id, self.delay = name, delay
        self.fail: TransientBackendError | None = None
        self.calls = 0

    def complete(self, request: Request) -> Completion:
        self.calls += 1
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        return Completion(text=self.backend_id)


def test_least_outstanding_routing_and_per_endpoint_limits() -> None:
    slow, fast = Scripted("slow", delay=0.3), Scripted("fast", delay=0.01)
    fleet = EndpointFleet("fleet", [slow, fast])
    assert fleet.capabilities.concurrency == 8
    answers: list[str] = []
    threads = [
        threading.Thread(target=lambda: answers.append(fleet.complete(REQUEST).text)) for _ in range(10)
    ]
    for t in threads:
        t.start()
        time.sleep(0.02)
    for t in threads:
        t.join()
    assert len(answers) == 10 and slow.calls == 1 and fast.calls == 9  # the busy one is passed over
    limited = EndpointFleet("limited", [Scripted("a"), Scripted("b")], rpm=2)
    texts = [limited.complete(REQUEST).text for _ in range(4)]
    assert sorted(texts) == ["a", "a", "b", "b"]  # 2 a minute each: the fifth would wait
    assert [s["answered"] for s in limited.endpoint_stats()] == [2, 2]


def test_failing_endpoint_is_taken_out_reported_and_retried_later() -> None:
    good, bad = Scripted("good"), Scripted("bad")
    bad.fail = TransientBackendError("bad: connection failed (refused)", maybe_billed=False)
    fleet = EndpointFleet("fleet", [bad, good], eject_after=2, cooldown_s=0.2)
    assert all(fleet.complete(REQUEST).text == "good" for _ in range(4))  # never-sent failures fail over
    stats = {s["endpoint"]: s for s in fleet.endpoint_stats()}
    assert stats["bad"]["ejections"] == 1 and not stats["bad"]["healthy"] and stats["good"]["answered"] == 4
    assert bad.calls == 2  # out after two in a row: not asked again while out
    assert any("endpoint bad: 2 failed call(s)" in w and "still out" in w for w in fleet.warnings)
    time.sleep(0.25)
    bad.fail = None
    fleet.endpoints[1].in_flight = 5  # good looks busy: the recovered endpoint gets the next request
    assert fleet.complete(REQUEST).text == "bad"
    billed = Scripted("timeout")
    billed.fail = TransientBackendError("timeout: no answer", maybe_billed=True)
    with pytest.raises(
        TransientBackendError, match="no answer"
    ):  # may have done the work: the caller retries
        EndpointFleet("f", [billed, Scripted("other")]).complete(REQUEST)
    down = Scripted("down")
    down.fail = TransientBackendError("down: refused")
    with pytest.raises(TransientBackendError, match="refused"):
        EndpointFleet("f", [down], eject_after=1).complete(REQUEST)


def test_fleet_id_parses_into_endpoints() -> None:
    fleet = get_backend(
        "openai-compatible:http://127.0.0.1:1/v1,http://127.0.0.1:2/v1#gemma?schema=json_object&rpm=5&eject_after=4",
        reuse=False,
    )
    assert isinstance(fleet, EndpointFleet)
    assert [e.backend.backend_id for e in fleet.endpoints] == [
        "openai-compatible:http://127.0.0.1:1/v1#gemma",
        "openai-compatible:http://127.0.0.1:2/v1#gemma",
    ]
    assert fleet.model_id == "openai-compatible/gemma" and fleet.limits == (None, None)
    assert fleet.endpoints[0].rpm == 5 and fleet.eject_after == 4


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[LlamaServer, LlamaServer]]:
    """Two real servers of the embedded model, one thread each (the second is killed by the test)."""
    a, b = LlamaServer(n_threads=1, logits_all=False), LlamaServer(n_threads=1, logits_all=False)
    with a, b:
        yield a, b


def test_two_real_servers_one_killed_mid_run(
    servers: tuple[LlamaServer, LlamaServer], loaded_store: Store, coarse_taxonomy: Taxonomy
) -> None:
    a, b = servers
    backend_id = f"openai-compatible:{a.url},{b.url}#{a.alias}?schema=json_object"
    fleet = get_backend(backend_id)
    assert isinstance(fleet, EndpointFleet)
    killed: list[dict[str, Any]] = []

    def kill_b_once_it_answered(_: object) -> None:
        stats = fleet.endpoint_stats()
        if not killed and stats[1]["answered"] >= 1:
            b.stop()  # mid-run: a request of this run may be in flight on it
            killed.append(stats[1])

    config = LabelConfig(
        backend=backend_id,
        scorers=[ScorerSpec("json", 1.0, "none")],
        budget_tokens=100,
        max_tokens=32,
        timeout=300.0,
        concurrency=2,
    )
    users = loaded_store.user_ids(limit=5)
    result = label_users(loaded_store, coarse_taxonomy, config, users=users, progress=kill_b_once_it_answered)
    assert killed, "server b never answered, so it was never killed"
    labeled = [lab.user_id for lab in result.labels]
    assert sorted(labeled) == sorted(users)  # every user labeled once, none lost
    assert all(lab.error is None for lab in result.labels)
    stats = fleet.endpoint_stats()
    assert stats[0]["answered"] + killed[0]["answered"] >= len(users)
    assert any(b.url in w and "failed call" in w for w in result.warnings), result.warnings
    assert free_port()  # the test leaves no port bound
