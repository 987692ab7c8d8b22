"""Settings resolved at the edge: the one module that reads environment variables and the config file.

Every `LLM_LABELER_*` variable (and the few third-party ones the package honours) is read by a function here;
library code calls these functions or takes the value as a parameter, and never touches os.environ itself.

The command line's defaults (`SETTINGS`) resolve as flag > environment variable > config file > built-in default.
The config file is `llm_labeler.toml` in the current directory, else the `[tool.llm_labeler]` table of
./pyproject.toml; an unknown key or a value of the wrong type is a ConfigError naming the file and the key.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: a config file then needs 3.11 (see config_file)
    tomllib = None  # type: ignore[assignment]

__all__ = [
    "CONFIG_FILE",
    "DEBUG_ENV",
    "DEFAULT_BACKEND",
    "DEFAULT_DB",
    "EMBEDDING_DTYPE_ENV",
    "PYPROJECT_TABLE",
    "SETTINGS",
    "ConfigFile",
    "Resolved",
    "Setting",
    "all_settings",
    "bundled_path",
    "config_file",
    "debug_enabled",
    "default_db_path",
    "embedding_dtype",
    "env_secret",
    "llama_threads",
    "newsgroups_dir",
    "openai_base_url",
    "prices_path",
    "prompts_dir",
    "redact_patterns_path",
    "resolve",
    "setting",
]

DEFAULT_DB = "llm_labeler.duckdb"
DEFAULT_BACKEND = "llamacpp:default"
_DATA = Path(__file__).resolve().parent / "data"


def _get(name: str) -> str | None:
    value = os.environ.get(name)
    return value if value else None


def default_db_path() -> str:
    """The store: `LLM_LABELER_DB`, else `db` in the config file, else ./llm_labeler.duckdb."""
    return str(setting("db"))


def prompts_dir() -> Path:
    """`LLM_LABELER_PROMPTS`, else the prompts shipped inside the package (the checkout's prompts/ links there)."""
    env = _get("LLM_LABELER_PROMPTS")
    return Path(env) if env else _DATA / "prompts"


def bundled_path(*parts: str) -> Path:
    """A file shipped inside the package: taxonomies/..., fixtures/20ng_sample/..., prompts/..."""
    return _DATA.joinpath(*parts)


def prices_path() -> str | None:
    """`LLM_LABELER_PRICES`: a price table YAML that extends the built-in one."""
    return _get("LLM_LABELER_PRICES")


def redact_patterns_path() -> str | None:
    """`LLM_LABELER_REDACT_PATTERNS`: extra PII patterns (YAML name -> regex)."""
    return _get("LLM_LABELER_REDACT_PATTERNS")


def llama_threads() -> int:
    """`LLM_LABELER_THREADS`: llama.cpp threads (0: the cores this process may run on)."""
    return int(_get("LLM_LABELER_THREADS") or 0)


EMBEDDING_DTYPE_ENV = "LLM_LABELER_EMBEDDING_DTYPE"
DEBUG_ENV = "LLM_LABELER_DEBUG"


def embedding_dtype() -> str | None:
    """`LLM_LABELER_EMBEDDING_DTYPE`: auto | float32 | bfloat16 for the embedding scorer."""
    return _get(EMBEDDING_DTYPE_ENV)


def newsgroups_dir(env_var: str) -> str | None:
    """Where the 20 Newsgroups tarball lies, when the environment says so."""
    return _get(env_var)


def openai_base_url() -> str | None:
    """`OPENAI_BASE_URL`, as the OpenAI client itself reads it."""
    return _get("OPENAI_BASE_URL")


def env_secret(name: str) -> str | None:
    """An API key from the environment variable a backend id names (default OPENAI_API_KEY)."""
    return _get(name)


def debug_enabled() -> bool:
    """`LLM_LABELER_DEBUG=1` (or true/yes/on): the command line shows tracebacks behind its one-line errors."""
    return (_get(DEBUG_ENV) or "").strip().lower() in ("1", "true", "yes", "on")


# -- the command line's defaults: flag > environment > config file > built-in ----------------------------------
CONFIG_FILE = "llm_labeler.toml"
PYPROJECT_TABLE = "tool.llm_labeler"


@dataclass(frozen=True)
class Setting:
    """One default the command line resolves: its config key, environment variable, type, bounds and default."""

    key: str
    env: str
    kind: type
    default: Any
    help: str
    minimum: float | None = None
    maximum: float | None = None


SETTINGS: tuple[Setting, ...] = (
    Setting("db", "LLM_LABELER_DB", str, DEFAULT_DB, "DuckDB file of every command (--db)"),
    Setting("backend", "LLM_LABELER_BACKEND", str, DEFAULT_BACKEND, "backend id of label / plan (--backend)"),
    Setting("taxonomy", "LLM_LABELER_TAXONOMY", str, None, "taxonomy file or shipped name of label / plan"),
    Setting("concurrency", "LLM_LABELER_CONCURRENCY", int, 1, "parallel calls of label (--concurrency)", 1),
    Setting("budget_tokens", "LLM_LABELER_BUDGET_TOKENS", int, 400, "history tokens per prompt", 1),
    Setting("threshold", "LLM_LABELER_THRESHOLD", float, 0.0, "abstain below this confidence", 0.0, 1.0),
    Setting("scorers", "LLM_LABELER_SCORERS", str, None, "scorer combination, e.g. llm=0.3,embedding=1"),
    Setting(
        "embedding",
        "LLM_LABELER_EMBEDDING",
        str,
        "embedding:default",
        "embedding model of Latin-script users (--embedding): embedding:default (MiniLM), nomic:default, e5:default",
    ),
    Setting(
        "multilingual",
        "LLM_LABELER_MULTILINGUAL",
        str,
        "e5:default",
        "embedding model of users of other scripts (--multilingual)",
    ),
    Setting(
        "combination", "LLM_LABELER_COMBINATION", str, None, "a stored combination of label (--combination)"
    ),
)
_BY_KEY = {s.key: s for s in SETTINGS}
_KIND_NAMES = {str: "a string", int: "an integer", float: "a number"}


@dataclass(frozen=True)
class ConfigFile:
    """The config file found in a folder: where it is and its (checked) values."""

    path: Path
    label: str  # how `config` names the source: the file, plus the table for pyproject.toml
    values: dict[str, Any]


@dataclass(frozen=True)
class Resolved:
    """A setting's value and where it came from: flag, env NAME, the config file, or default."""

    key: str
    value: Any
    source: str
    help: str


def config_file(folder: Path | None = None) -> ConfigFile | None:
    """The config of `folder` (default: the current directory), checked; None when there is none."""
    folder = Path.cwd() if folder is None else folder
    own, pyproject = folder / CONFIG_FILE, folder / "pyproject.toml"
    if own.is_file():
        return ConfigFile(own, str(own), _check(own, _read_toml(own), ""))
    if pyproject.is_file():
        table = _read_toml(pyproject).get("tool", {}).get("llm_labeler")
        if table is None:
            return None
        if not isinstance(table, dict):
            raise ConfigError(f"{pyproject}: [{PYPROJECT_TABLE}] must be a table")
        return ConfigFile(
            pyproject, f"{pyproject} [{PYPROJECT_TABLE}]", _check(pyproject, table, "tool.llm_labeler.")
        )
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    if tomllib is None:
        raise ConfigError(f"{path}: reading a config file needs Python 3.11 or newer (tomllib)")
    try:
        with path.open("rb") as fh:
            data: dict[str, Any] = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file: {exc.strerror or exc}") from exc
    return data


def _check(path: Path, table: dict[str, Any], prefix: str) -> dict[str, Any]:
    """Known keys of the right type only (`-` and `_` alike in key names)."""
    out = {}
    for raw_key, value in table.items():
        key = raw_key.replace("-", "_")
        spec = _BY_KEY.get(key)
        if spec is None:
            known = ", ".join(sorted(_BY_KEY))
            raise ConfigError(f"{path}: unknown key '{prefix}{raw_key}' (known keys: {known})")
        out[key] = _typed(spec, value, f"{path}: key '{prefix}{raw_key}'")
    return out


def _typed(spec: Setting, value: Any, where: str) -> Any:
    """The value as the setting's type, within its bounds; else a ConfigError that says `where`."""
    ok = isinstance(value, spec.kind) and not isinstance(value, bool)
    if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
        value, ok = float(value), True
    if not ok:
        raise ConfigError(f"{where} must be {_KIND_NAMES[spec.kind]}, not {value!r} ({type(value).__name__})")
    if spec.kind is str and not value.strip():
        raise ConfigError(f"{where} must not be empty")
    low, high = spec.minimum, spec.maximum
    if (low is not None and value < low) or (high is not None and value > high):
        bound = f"between {low:g} and {high:g}" if high is not None else f"at least {low:g}"
        raise ConfigError(f"{where} must be {bound}, not {value!r}")
    return value


def _from_env(spec: Setting) -> Any:
    text = _get(spec.env)
    if text is None:
        return None
    where = f"environment variable {spec.env}"
    if spec.kind is str:
        return text
    try:
        value = spec.kind(text.strip())
    except ValueError as exc:
        raise ConfigError(f"{where} must be {_KIND_NAMES[spec.kind]}, not {text!r}") from exc
    return _typed(spec, value, where)


def resolve(key: str, flag: Any = None, folder: Path | None = None) -> Resolved:
    """A setting's value and source: the flag when given, else its environment variable, else the config file,
    else the built-in default."""
    spec = _BY_KEY[key]
    if flag is not None and flag != "":
        return Resolved(key, flag, "flag", spec.help)
    env = _from_env(spec)
    if env is not None:
        return Resolved(key, env, f"env {spec.env}", spec.help)
    found = config_file(folder)
    if found is not None and key in found.values:
        return Resolved(key, found.values[key], found.label, spec.help)
    return Resolved(key, spec.default, "default", spec.help)


def setting(key: str, flag: Any = None) -> Any:
    """A setting's value (see `resolve`)."""
    return resolve(key, flag).value


def all_settings(folder: Path | None = None) -> list[Resolved]:
    """Every setting the command line resolves, with its value and source (for `llm-labeler config`)."""
    return [resolve(s.key, folder=folder) for s in SETTINGS]
