"""A fleet of endpoints serving one model behind one backend id: least-outstanding-requests routing, per-endpoint
rate limits, health.

    openai-compatible:URL1,URL2,...#MODEL[?OPTIONS]

Every request goes to the healthy endpoint with the fewest requests in flight (equally loaded ones take turns).
`rpm` / `tpm` hold for each endpoint separately: one at its limit is passed over
while another has room, and a request waits only when all are full. An endpoint that fails `eject_after` times in a
row (transient failures only: refused or dropped connections, 5xx, timeouts) is taken out for `cooldown` seconds
(doubling on each ejection, at most 10 minutes), then tried again with one request. A request that never reached
its endpoint (connection refused) or that the endpoint refused without doing the work (5xx) goes straight to
another one; a failure after which the work may have been done (a timeout, a connection dropped mid-answer) is
raised, so that structured.py retries it and counts what it may have cost: the retry lands elsewhere. What each
endpoint did, and which were taken out, is in `endpoint_stats()` and in `warnings` (reported with the run).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError, ConfigError, TransientBackendError
from ..history import approx_tokens
from .base import BackendBase, Capabilities, Completion, Request

__all__ = ["Endpoint", "EndpointFleet"]

_MAX_COOLDOWN_S = 600.0
_WINDOW_S = 60.0


@dataclass
class Endpoint:
    """One endpoint's backend, load, limits and health."""

    backend: Any  # a Backend
    rpm: int | None = None
    tpm: int | None = None
    in_flight: int = 0
    answered: int = 0
    failed: int = 0
    consecutive_failures: int = 0
    ejections: int = 0
    out_until: float = 0.0
    last_error: str = ""
    picked: int = 0  # when it was last chosen (a counter): the tie-break among equally loaded endpoints
    _sent: deque[tuple[float, int]] = field(default_factory=deque)

    def room_in(self, now: float, tokens: int) -> float:
        """Seconds until one more request of `tokens` fits this endpoint's limits (0: now)."""
        while self._sent and now - self._sent[0][0] >= _WINDOW_S:
            self._sent.popleft()
        if not self._sent:
            return 0.0
        over_rpm = self.rpm is not None and len(self._sent) >= self.rpm
        over_tpm = self.tpm is not None and sum(t for _, t in self._sent) + tokens > self.tpm
        return self._sent[0][0] + _WINDOW_S - now + 0.01 if over_rpm or over_tpm else 0.0

    def stats(self, now: float) -> dict[str, Any]:
        """What this endpoint did, for reports."""
        return {
            "endpoint": self.backend.backend_id,
            "answered": self.answered,
            "failed": self.failed,
            "in_flight": self.in_flight,
            "ejections": self.ejections,
            "healthy": self.out_until <= now,
            "last_error": self.last_error,
        }


class EndpointFleet(BackendBase):
    """Several backends serving the same model, used as one (see the module docstring)."""

    def __init__(
        self,
        backend_id: str,
        endpoints: Sequence[Any],  # Backend objects
        rpm: int | None = None,
        tpm: int | None = None,
        eject_after: int = 3,
        cooldown_s: float = 30.0,
    ) -> None:
        if not endpoints:
            raise ConfigError(f"{backend_id}: a fleet needs at least one endpoint")
        if len({e.model_id for e in endpoints}) > 1:
            raise ConfigError(f"{backend_id}: every endpoint of a fleet must serve the same model")
        self.backend_id = backend_id
        self.endpoints = [Endpoint(e, rpm, tpm) for e in endpoints]
        self.model_id = endpoints[0].model_id
        caps = endpoints[0].capabilities
        self.capabilities = Capabilities(
            json_schema=caps.json_schema,
            json_mode=caps.json_mode,
            logprobs=caps.logprobs,
            next_token_scores=False,
            concurrency=sum(e.capabilities.concurrency for e in endpoints),
            local=caps.local,
        )
        self.eject_after, self.cooldown_s = max(1, eject_after), cooldown_s
        self._lock = threading.Condition()
        self._picks = 0

    @property
    def price_name(self) -> str:
        """The model name a price table is searched with (the endpoints')."""
        return self.endpoints[0].backend.price_name

    @property
    def warnings(self) -> list[str]:  # type: ignore[override]
        """The endpoints' own degradations, then every endpoint that failed: how often, whether it was taken out."""
        out = [w for e in self.endpoints for w in e.backend.warnings]
        now = time.monotonic()
        for e in self.endpoints:
            if not e.failed:
                continue
            state = ""
            if e.ejections:
                where = "still out" if e.out_until > now else "back in"
                state = (
                    f"; taken out {e.ejections} time(s) after {self.eject_after} failures in a row ({where})"
                )
            out.append(
                f"endpoint {e.backend.backend_id}: {e.failed} failed call(s), {e.answered} answered{state}; "
                f"last error: {e.last_error}"
            )
        return out

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per endpoint: answered, failed, in flight, ejections, healthy now, last error."""
        now = time.monotonic()
        with self._lock:
            return [e.stats(now) for e in self.endpoints]

    def complete(self, request: Request) -> Completion:
        """Send to the least-loaded healthy endpoint with room; fail over where no work was done."""
        tokens = _request_tokens(request)
        tried: set[int] = set()
        while True:
            index = self._acquire(tokens, tried)
            endpoint = self.endpoints[index]
            try:
                completion = endpoint.backend.complete(request)
            except BackendError as exc:
                self._failed(index, exc)
                if not isinstance(exc, TransientBackendError) or exc.maybe_billed:
                    raise
                tried.add(index)
                if len(tried) == len(self.endpoints):
                    raise
                continue
            self._answered(index)
            return completion

    def _acquire(self, tokens: int, tried: set[int]) -> int:
        """Block until an endpoint not yet tried for this request can take it; reserve it."""
        with self._lock:
            while True:
                now = time.monotonic()
                choice, wait_s = self._choose(now, tokens, tried)
                if choice is not None:
                    e = self.endpoints[choice]
                    e.in_flight += 1
                    self._picks += 1
                    e.picked = self._picks  # idle endpoints take turns
                    e._sent.append((now, tokens))
                    return choice
                if wait_s is None:
                    raise TransientBackendError(
                        f"{self.backend_id}: every endpoint is out after repeated failures "
                        f"({'; '.join(e.last_error for e in self.endpoints)})",
                        retry_after=max(min(e.out_until for e in self.endpoints) - now, 0.1),
                    )
                self._lock.wait(wait_s)

    def _choose(self, now: float, tokens: int, tried: set[int]) -> tuple[int | None, float | None]:
        """(endpoint to use, None) or (None, seconds to wait for room; None when every endpoint is out)."""
        live = [i for i, e in enumerate(self.endpoints) if i not in tried and e.out_until <= now]
        if not live:
            return None, None
        waits = {i: self.endpoints[i].room_in(now, tokens) for i in live}
        ready = [i for i in live if waits[i] <= 0]
        if not ready:
            return None, min(waits.values())
        best = min(ready, key=lambda i: (self.endpoints[i].in_flight, self.endpoints[i].picked, i))
        return best, None

    def _answered(self, index: int) -> None:
        with self._lock:
            e = self.endpoints[index]
            e.in_flight -= 1
            e.answered += 1
            e.consecutive_failures = 0
            self._lock.notify_all()

    def _failed(self, index: int, exc: BackendError) -> None:
        with self._lock:
            e = self.endpoints[index]
            e.in_flight -= 1
            e.failed += 1
            e.last_error = str(exc)[:300]
            if isinstance(exc, TransientBackendError):
                e.consecutive_failures += 1
                if e.consecutive_failures >= self.eject_after:
                    cooldown = min(self.cooldown_s * 2**e.ejections, _MAX_COOLDOWN_S)
                    e.ejections += 1
                    e.out_until = time.monotonic() + cooldown
            self._lock.notify_all()


def _request_tokens(request: Request) -> int:
    """What a request can cost in tokens at most: its prompt (estimated) plus max_tokens."""
    return sum(approx_tokens(m.get("content", "")) + 4 for m in request.messages) + request.max_tokens
