"""The sentence-embedding backend: precision choice, its provenance, and bf16 agreeing with fp32 on real text."""

from __future__ import annotations

import numpy as np
import pytest

from llm_labeler.backends import embedding as emb
from llm_labeler.backends import get_backend
from llm_labeler.backends.embedding import DTYPE_ENV, EmbeddingModel, embeddings_available
from llm_labeler.errors import ConfigError


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DTYPE_ENV, raising=False)


@pytest.mark.parametrize(
    ("asked", "native", "expected"),
    [
        ("auto", True, "bfloat16"),
        ("auto", False, "float32"),
        (None, True, "bfloat16"),
        ("fp32", True, "float32"),
        ("float32", True, "float32"),
        ("BF16", False, "bfloat16"),
    ],
)
def test_precision_choice(
    monkeypatch: pytest.MonkeyPatch, asked: str | None, native: bool, expected: str
) -> None:
    monkeypatch.setattr(emb, "native_bf16", lambda: native)
    assert emb._resolve_dtype(asked) == expected


def test_environment_sets_the_precision_and_a_bad_value_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DTYPE_ENV, "float32")
    assert emb._resolve_dtype(None) == "float32"
    monkeypatch.setenv(DTYPE_ENV, "int4")
    with pytest.raises(ConfigError, match=r"'int4'.*LLM_LABELER_EMBEDDING_DTYPE"):
        emb._resolve_dtype(None)


def test_the_model_id_names_the_weights_and_the_precision(tmp_path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "model"
    folder.mkdir()
    assert EmbeddingModel(folder, dtype="float32").model_id == "sentence-transformers/all-MiniLM-L6-v2@model"
    assert EmbeddingModel(folder, dtype="bfloat16").model_id.endswith("@model+bf16")
    (folder / "model.safetensors").write_bytes(b"weights v1")
    v1 = EmbeddingModel(folder, dtype="float32").model_id
    assert (
        v1.startswith("sentence-transformers/all-MiniLM-L6-v2@model#sha256:") and len(v1.split(":")[-1]) == 16
    )
    (folder / "model.safetensors").write_bytes(b"weights v2")  # other weights in the same folder: another id
    assert EmbeddingModel(folder, dtype="float32").model_id != v1


def test_backend_id_options(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = get_backend(f"embedding:{tmp_path}?dtype=float32", reuse=False)
    assert model.dtype == "float32" and model.path == tmp_path
    with pytest.raises(ConfigError, match="unknown embedding backend option 'bits'"):
        get_backend(f"embedding:{tmp_path}?bits=8", reuse=False)


@pytest.mark.skipif(not embeddings_available(), reason="needs the embeddings extra")
def test_bf16_vectors_agree_with_fp32_on_real_text() -> None:
    texts = [
        "Re: clutch slipping on my 1992 Civic, new flywheel or just the plate?",
        "The Orioles bullpen blew another lead in the ninth; trade the closer.",
        "Is there any evidence that the resurrection accounts were written by eyewitnesses?",
        "SCSI-2 controller drops off the bus when the second drive spins up",
    ]
    fp32 = EmbeddingModel(dtype="float32")
    bf16 = EmbeddingModel(dtype="bfloat16")
    bf16._model = fp32.model  # same weights; the precision is applied per encode() call
    a, b = fp32.encode(texts), bf16.encode(texts, batch_size=2)
    assert a.dtype == b.dtype == np.float32 and a.shape == b.shape == (4, 384)
    assert np.allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-4)
    cosine = (a * b).sum(axis=1)
    assert cosine.min() > 0.999, cosine
    # Both precisions match each text to itself, not to another text.
    assert (np.argmax(a @ b.T, axis=1) == np.arange(4)).all()
    # Padding to a multiple of 16 tokens (bounded shapes, flat memory) leaves the vectors as they were.
    module = fp32.model[0]
    assert module.processing_kwargs["text"]["pad_to_multiple_of"] == emb.PAD_MULTIPLE
    padded = module.processing_kwargs
    module.processing_kwargs = {}
    try:
        unpadded = fp32.encode(texts, batch_size=1)
    finally:
        module.processing_kwargs = padded
    assert ((a * unpadded).sum(axis=1) > 0.99999).all()


@pytest.mark.skipif(not embeddings_available(), reason="needs the embeddings extra")
def test_embedding_calls_report_their_time_and_tokens(coarse_taxonomy) -> None:  # type: ignore[no-untyped-def]
    from llm_labeler.schemas import Event
    from llm_labeler.segments import EmbeddingScorer

    model = get_backend("embedding:default")
    scorer = EmbeddingScorer(model, coarse_taxonomy)  # type: ignore[arg-type]
    users = [
        ("a", [Event(user_id="a", item_title="My SCSI disk fails")]),
        (
            "b",
            [
                Event(user_id="b", item_title="Hockey playoffs tonight"),
                Event(user_id="b", item_title="Goalie trade rumours"),
            ],
        ),
    ]
    a, b = list(scorer.score(users))
    assert a.usage.prompt_tokens > 0 and b.usage.prompt_tokens > a.usage.prompt_tokens
    assert a.usage.latency_ms > 0 and b.usage.latency_ms > a.usage.latency_ms  # b had two texts of the batch
    assert "#sha256:" in model.model_id
