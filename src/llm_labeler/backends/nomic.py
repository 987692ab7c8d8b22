"""nomic-embed-text-v1.5 as an embedding model (`nomic:default`), run by llama.cpp in embedding mode (no torch).

The GGUF (F16, 137M parameters, 8192-token context, mean pooling, Apache-2.0) is assembled from PyPI pieces by
backends/models.py. Nomic's model is trained with task prefixes: a text is embedded as what it is for.
`nomic:default` embeds segment descriptions as `search_query: ` and a user's events as `search_document: `;
`nomic:default?task=classification` gives both `classification: ` (see the README for which won on the tune halves).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..settings import llama_threads
from . import register
from .base import file_sha256, parse_options
from .models import MODEL_FILES, model_path

__all__ = ["TASKS", "NomicEmbedder"]

MODEL = "nomic-ai/nomic-embed-text-v1.5"
# task -> (prefix of a user's texts, prefix of segment descriptions)
TASKS = {
    "search": ("search_document: ", "search_query: "),
    "classification": ("classification: ", "classification: "),
    "clustering": ("clustering: ", "clustering: "),
}
# Each event is cut to max_chars_per_event (500) by the scorer; 512 tokens hold it with room to spare. llama.cpp
# packs several events into one decode; a smaller batch is faster, since a packed batch's attention spans all of
# it (measured: 256-512 beat 1024-4096).
N_CTX = 512
MAX_TOKENS = 512


class NomicEmbedder:
    """Unit-length nomic-embed-text-v1.5 vectors from llama.cpp, thread-safe, loaded on first use."""

    def __init__(self, task: str = "search", n_threads: int | None = None) -> None:
        if task not in TASKS:
            raise ConfigError(f"unknown nomic task {task!r} (known: {', '.join(sorted(TASKS))})")
        self.task = task
        self.doc_prefix, self.query_prefix = TASKS[task]
        self.path = model_path("nomic")
        self.backend_id = "nomic:default" if task == "search" else f"nomic:default?task={task}"
        self.model_id = f"{MODEL}@{MODEL_FILES['nomic'].filename}#sha256:{file_sha256(self.path)[:16]}|{task}"
        self.n_threads = n_threads or llama_threads() or max(len(os.sched_getaffinity(0)), 1)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The llama.cpp context in embedding mode."""
        if self._model is None:
            from llama_cpp import Llama

            with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
                self._model = Llama(
                    model_path=str(self.path),
                    embedding=True,
                    n_ctx=N_CTX,
                    n_batch=N_CTX,
                    n_ubatch=N_CTX,
                    n_threads=self.n_threads,
                    n_threads_batch=self.n_threads,
                    verbose=False,
                )
        return self._model

    def _tokens(self, text: str) -> list[int]:
        tokens = self.model.tokenize(text.encode("utf-8"), add_bos=True, special=False)
        return list(tokens[:MAX_TOKENS])

    def encode(self, texts: Sequence[str], query: bool = False) -> np.ndarray:
        """Unit-length float32 vectors: a user's texts as documents unless `query` (segment descriptions)."""
        if not texts:
            return np.zeros((0, 768), dtype=np.float32)
        prefix = self.query_prefix if query else self.doc_prefix
        with self._lock:
            # truncate=True: a text longer than a batch is cut, not an error (the scorer cuts events long before)
            vectors = np.asarray(self.model.embed([prefix + t for t in texts], normalize=True, truncate=True))
        return vectors.astype(np.float32).reshape(len(texts), -1)

    @lru_cache(maxsize=32)  # noqa: B019 - one instance per process, kept for the run
    def encode_cached(self, texts: tuple[str, ...], query: bool = True) -> np.ndarray:
        """encode() for small fixed sets (segment descriptions, as queries), memoised."""
        return self.encode(list(texts), query=query)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text, with its task prefix and special tokens."""
        with self._lock:
            return [len(self._tokens(self.doc_prefix + t)) + 1 for t in texts]


@register("nomic")
def _factory(arg: str) -> NomicEmbedder:
    """nomic:default (search prefixes) or nomic:default?task=classification|clustering."""
    name, opts = parse_options(arg)
    if name not in ("", "default"):
        raise ConfigError(f"unknown nomic model {name!r} (nomic:default is the one)")
    unknown = sorted(set(opts) - {"task"})
    if unknown:
        raise ConfigError(f"unknown nomic backend option {unknown[0]!r} (nomic takes task=)")
    return NomicEmbedder(str(opts.get("task", "search")))
