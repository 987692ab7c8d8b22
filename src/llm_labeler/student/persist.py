"""Saving and loading the student with skops: no pickle, no code runs on load, only known types are built."""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["FORMAT", "library_versions", "load_student", "model_version", "save_student"]

FORMAT = "llm_labeler.student/1"
# The only types a student file may contain; anything else is refused before a single object is built.
_TRUSTED_PREFIXES = ("llm_labeler.student.", "sklearn.linear_model.", "numpy.", "builtins.", "scipy.sparse.")


def library_versions() -> dict[str, str]:
    """Versions that decide whether a saved student behaves the same when loaded."""
    import numpy
    import scipy
    import sklearn
    import skops

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "scikit-learn": sklearn.__version__,
        "skops": skops.__version__,
    }


def save_student(estimator: Any, metadata: dict[str, Any], path: str | Path) -> str:
    """Write estimator + metadata in skops format; returns the model version (file sha256, 16 hex)."""
    import skops.io as sio

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    sio.dump({"format": FORMAT, "metadata": metadata, "estimator": estimator}, p)
    return model_version(p)


def model_version(path: str | Path | bytes) -> str:
    """The sha256 of the model file (or of its bytes), first 16 hex digits."""
    data = path if isinstance(path, bytes) else Path(path).read_bytes()
    return hashlib.sha256(data).hexdigest()[:16]


def load_student(path: str | Path | bytes) -> tuple[Any, dict[str, Any]]:
    """(estimator, metadata) from a skops file or its bytes; refuses files with unexpected types or another format."""
    import skops.io as sio

    data = path if isinstance(path, bytes) else _read(Path(path))
    p = "model bytes" if isinstance(path, bytes) else str(path)
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises zipfile/JSON errors of several kinds on a foreign file
        raise InputError(f"{p} is not a skops student model: {exc}") from exc
    if any(t.startswith("llm_labeler.mlkit.") for t in untrusted):
        raise InputError(
            f"{p} was written by an llm-labeler from before the student moved to llm_labeler.student; "
            "distill it again (`llm-labeler distill --run RUN --out ...`)"
        )
    foreign = [t for t in untrusted if not t.startswith(_TRUSTED_PREFIXES)]
    if foreign:
        raise InputError(f"{p} contains types a student model never has, refusing to load: {foreign}")
    obj = sio.loads(data, trusted=untrusted)
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise InputError(f"{p} is a skops file but not an llm-labeler student ({FORMAT})")
    meta = dict(obj["metadata"])
    meta["model_version"] = model_version(data)
    return obj["estimator"], meta


def _read(p: Path) -> bytes:
    if not p.is_file():
        raise InputError(f"model file not found: {p}")
    return p.read_bytes()
