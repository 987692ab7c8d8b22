"""A fault-injecting HTTP proxy on 127.0.0.1 (real sockets) for the hosted-backend tests and benchmarks.

It forwards requests to an upstream server and, on a deterministic schedule (by request number, or by a string
the request body contains), answers with a fault instead:

    429       HTTP 429 with Retry-After              500 / 503  a server error
    slow      holds the request until the client gives up (its own timeout), then drops it; forwards only if the
              client is still there after `slow_s` (a safety cap). No race with the client's clock: however slow
              the machine, the client's timeout is what ends the wait
    truncate  forwards, then sends half the body under the full Content-Length and closes
    badjson   forwards, then sends a 200 whose body is not JSON
    reset     closes the connection with a TCP reset before answering
    junk      answers a well-formed chat completion whose content never validates (the model is not asked)
    401 / 400 a client error that must not be retried

It stops by itself after `lifetime_s` seconds, so a failed test never leaves it running.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

__all__ = ["FAULTS", "FaultProxy", "Rule"]

FAULTS = ("429", "500", "503", "slow", "truncate", "badjson", "reset", "junk", "401", "400")
JUNK_ANSWER = "I think this user likes many things."


@dataclass
class Rule:
    """Inject `fault` into requests whose body contains `match`, at most `times` times (None: always)."""

    fault: str
    match: str
    times: int | None = None
    used: int = 0


@dataclass
class ProxyStats:
    """What the proxy saw and did."""

    requests: int = 0
    forwarded: int = 0
    injected: Counter[str] = field(default_factory=Counter)

    @property
    def faults(self) -> int:
        """Faults injected, all kinds."""
        return sum(self.injected.values())


class FaultProxy:
    """Forwards POST/GET to `upstream` (http://host:port), injecting faults on a fixed schedule.

    `schedule[i]` is the fault for the i-th POST that no rule claimed (None: forward); rules match body text.
    """

    def __init__(
        self,
        upstream: str,
        schedule: Sequence[str | None] = (),
        rules: Sequence[Rule] = (),
        retry_after: float = 1.0,
        slow_s: float = 5.0,
        lifetime_s: float = 900.0,
    ) -> None:
        unknown = [f for f in [*schedule, *(r.fault for r in rules)] if f and f not in FAULTS]
        if unknown:
            raise ValueError(f"unknown fault(s) {unknown}; faults: {', '.join(FAULTS)}")
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.schedule, self.rules = list(schedule), list(rules)
        self.retry_after, self.slow_s, self.lifetime_s = retry_after, slow_s, lifetime_s
        self.stats = ProxyStats()
        self._scheduled = 0
        self._lock = threading.Condition()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.stopped = threading.Event()
        self._timer = threading.Timer(lifetime_s, self.stop)
        self._timer.daemon = True

    @property
    def port(self) -> int:
        """The port the proxy listens on."""
        return int(self._server.server_address[1])

    def url(self, path: str = "/v1") -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> FaultProxy:
        """Serve in a daemon thread."""
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self._timer.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent); requests held by a `slow` fault are dropped, never forwarded late."""
        self.stopped.set()
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def decide(self, body: bytes) -> str | None:
        """The fault for the next request (None: forward untouched); counts it."""
        text = body.decode("utf-8", "replace")
        with self._lock:
            self.stats.requests += 1
            fault = self._rule_fault(text)
            if fault is None:  # the schedule counts only requests no rule claimed, so it stays deterministic
                index, self._scheduled = self._scheduled, self._scheduled + 1
                fault = self.schedule[index] if index < len(self.schedule) else None
            if fault:
                self.stats.injected[fault] += 1
            else:
                self.stats.forwarded += 1
            self._lock.notify_all()
            return fault

    def wait_for_requests(self, n: int, timeout: float) -> bool:
        """Block until `n` POST requests have arrived (True) or `timeout` passed (False)."""
        with self._lock:
            return self._lock.wait_for(lambda: self.stats.requests >= n, timeout)

    def _rule_fault(self, text: str) -> str | None:
        for rule in self.rules:
            if rule.match in text and (rule.times is None or rule.used < rule.times):
                rule.used += 1
                return rule.fault
        return None

    def forward(
        self, method: str, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        """Send the request upstream; (status, headers, body)."""
        conn = http.client.HTTPConnection(*self.upstream, timeout=600)
        try:
            conn.request(method, path, body=body or None, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


def _handler(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

        def do_GET(self) -> None:
            self._serve(b"")

        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            self._serve(self.rfile.read(length) if length else b"")

        def _serve(self, body: bytes) -> None:
            fault = proxy.decide(body) if self.command == "POST" else None
            # The client may give up (a timeout): that is the point of some faults.
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                _act(proxy, self, fault, body)

    return Handler


def _act(proxy: FaultProxy, h: BaseHTTPRequestHandler, fault: str | None, body: bytes) -> None:
    if fault == "reset":
        h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        h.connection.close()
        h.close_connection = True
        return
    if fault in ("429", "500", "503", "401", "400"):
        _error(proxy, h, int(fault))
        return
    if fault == "junk":
        body = _junk_completion(body)
        _send(h, 200, "application/json", body, len(body))
        return
    if fault == "slow" and _hold_until_client_leaves(proxy, h):
        return  # the client timed out and left: forwarding now would only load the server with a dead request
    headers = {
        k: v for k, v in h.headers.items() if k.lower() not in ("host", "connection", "content-length")
    }
    status, up_headers, payload = proxy.forward(h.command, h.path, body, headers)
    if fault == "badjson":
        payload = b"<html><body>502 Bad Gateway (upstream sent garbage)</body></html>"
    declared = len(payload)
    if fault == "truncate":
        payload = payload[: len(payload) // 2]
    _send(h, status, up_headers.get("content-type", "application/json"), payload, declared)
    if fault == "truncate":
        h.close_connection = True


def _hold_until_client_leaves(proxy: FaultProxy, h: BaseHTTPRequestHandler) -> bool:
    """Wait until the client hangs up (True), the proxy stops (True) or `slow_s` passes (False: forward)."""
    deadline = time.monotonic() + proxy.slow_s
    while time.monotonic() < deadline:
        if proxy.stopped.wait(0.05) or _client_gone(h):
            return True
    return _client_gone(h)


def _client_gone(h: BaseHTTPRequestHandler) -> bool:
    """Whether the client closed its end (readable with nothing to read)."""
    readable, _, _ = select.select([h.connection], [], [], 0)
    if not readable:
        return False
    try:
        return h.connection.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def _junk_completion(request_body: bytes) -> bytes:
    """A chat completion in OpenAI's format whose answer is prose, not the JSON asked for."""
    model = json.loads(request_body or b"{}").get("model", "unknown")
    return json.dumps(
        {
            "id": "chatcmpl-junk",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": JUNK_ANSWER},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 100, "completion_tokens": 9, "total_tokens": 109},
        }
    ).encode()


def _error(proxy: FaultProxy, h: BaseHTTPRequestHandler, status: int) -> None:
    messages = {
        429: ("Rate limit reached for requests", "rate_limit_exceeded"),
        500: ("The server had an error while processing your request", "server_error"),
        503: ("The engine is currently overloaded", "overloaded"),
        401: ("Incorrect API key provided", "invalid_api_key"),
        400: ("Invalid request", "invalid_request_error"),
    }
    msg, code = messages[status]
    body = json.dumps({"error": {"message": msg, "type": code, "code": code}}).encode()
    extra = {"retry-after": f"{proxy.retry_after:g}"} if status == 429 else {}
    _send(h, status, "application/json", body, len(body), extra)


def _send(
    h: BaseHTTPRequestHandler,
    status: int,
    ctype: str,
    payload: bytes,
    declared: int,
    extra: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    h.send_header("content-type", ctype)
    h.send_header("content-length", str(declared))
    h.send_header("connection", "close")
    for k, v in (extra or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(payload)
    h.wfile.flush()
    h.close_connection = True
