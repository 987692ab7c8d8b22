"""Keeps the layers of shared/docs/design.md true: no module imports one above it; each SDK in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "llm_labeler"

# Module (or package prefix) -> layer. A new module must be placed here.
LAYERS: dict[str, int] = {
    "errors": 0,
    "schemas": 1,
    "settings": 1,
    "pricing": 1,
    "prompts": 2,
    "history": 2,
    "redaction": 2,
    "backends": 2,
    "store": 2,
    "datasets": 2,
    "mlkit": 2,
    "structured": 3,
    "profiles": 4,
    "segments": 4,
    "confidence": 4,
    "labeling": 5,
    "dispatch": 5,
    "ledger": 5,
    "labelrun": 5,
    "planning": 5,
    "demo": 5,
    "evals": 5,
    "distill": 5,
    "scoring": 5,
    "review": 5,
    "bench": 5,
    "cli": 6,
}
# Third-party SDK -> the one module (or package) allowed to import it.
SDK_HOME = {
    "duckdb": "store",
    "llama_cpp": "backends.llamacpp",
    "openai": "backends.openai_backend",
    "langchain": "backends.langchain_backend",
    "langchain_core": "backends.langchain_backend",
    "langchain_openai": "backends.langchain_backend",
    "sklearn": "mlkit",
    "skops": "mlkit",
    "sentence_transformers": "backends.embedding",
    "torch": "backends.embedding",
    "typer": "cli",
}
EXEMPT = {"__init__", "__main__"}  # the package's public re-exports


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def _layer(module: str) -> int | None:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    return None


def _imports(module: str, path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module or "")
                continue
            anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
            if node.module:
                names.append("llm_labeler." + target if target else "llm_labeler")
            else:
                names += ["llm_labeler." + ".".join([*anchor, a.name]).strip(".") for a in node.names]
    return names


@pytest.mark.parametrize(("module", "path"), _modules(), ids=[m for m, _ in _modules()])
def test_module_respects_layers(module: str, path: Path) -> None:
    if module in EXEMPT:
        return
    own = _layer(module)
    assert own is not None, f"{module} has no layer: add it to LAYERS in tests/test_architecture.py"
    for name in _imports(module, path):
        top = name.split(".")[0]
        if top == "llm_labeler":
            target = name.removeprefix("llm_labeler").lstrip(".")
            if not target or target in EXEMPT:
                continue
            their = _layer(target)
            if their is None and "." in target:  # `from .pkg import name` resolved to pkg.name
                their = _layer(target.rsplit(".", 1)[0])
            assert their is not None, f"{module} imports unknown module {target}"
            same_area = target.split(".")[0] == module.split(".")[0]
            assert their <= own or same_area, f"{module} (L{own}) imports {target} (L{their}), a higher layer"
        elif top in SDK_HOME:
            home = SDK_HOME[top]
            assert module == home or module.startswith(home + "."), (
                f"{module} imports the SDK {top}; only {home} may"
            )


def test_every_sdk_home_exists() -> None:
    modules = {m for m, _ in _modules()}
    for sdk, home in SDK_HOME.items():
        assert home in modules, f"{sdk}'s home module {home} is missing"
