"""llama-cpp-python's own OpenAI-compatible server on 127.0.0.1 with the embedded model (tests and benchmarks)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

__all__ = ["LlamaServer", "free_port"]


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LlamaServer:
    """`python -m llama_cpp.server` in its own process group; stopped (and its group killed) on exit."""

    def __init__(
        self,
        model_path: Path | None = None,
        n_threads: int = 2,
        n_ctx: int = 2048,
        alias: str = "gemma",
        lifetime_s: int = 3600,
        logits_all: bool = True,
    ) -> None:
        if model_path is None:
            from llm_labeler.backends.llamacpp import default_model_path

            model_path = default_model_path()
        self.model_path, self.alias, self.port = model_path, alias, free_port()
        self.args = [
            "--model", str(model_path), "--host", "127.0.0.1", "--port", str(self.port),
            "--n_threads", str(n_threads), "--n_threads_batch", str(n_threads), "--n_ctx", str(n_ctx),
            "--model_alias", alias,
            # llama-cpp-python's default; without it no logprobs, but prompts evaluate faster (no logits per token)
            "--logits_all", str(logits_all),
        ]  # fmt: skip
        self.lifetime_s = lifetime_s
        self.log = Path(tempfile.mkstemp(prefix="llama_server_", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the OpenAI-compatible API."""
        return f"http://127.0.0.1:{self.port}/v1"

    def backend_id(self, url: str | None = None, **options: object) -> str:
        """An `openai-compatible:` id for this server (or a proxy in front of it); json_object by default."""
        opts = {"schema": "json_object", **options}
        query = "&".join(f"{k}={v}" for k, v in opts.items())
        return f"openai-compatible:{url or self.url}#{self.alias}?{query}"

    def start(self, timeout: float = 180.0) -> LlamaServer:
        """Start and wait until /v1/models answers; the server exits by itself after `lifetime_s`."""
        cmd = ["timeout", str(self.lifetime_s), sys.executable, "-m", "llama_cpp.server", *self.args]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=log, start_new_session=True, env=os.environ.copy()
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2):
                    return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(
            f"llama_cpp.server did not answer within {timeout:g} s: {self.log.read_text()[-2000:]}"
        )

    def stop(self) -> None:
        """Stop the server's process group."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
