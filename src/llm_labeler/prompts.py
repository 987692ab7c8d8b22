"""Prompts are versioned Jinja files under prompts/; every stored label records the prompt's hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from .errors import ConfigError
from .settings import prompts_dir

__all__ = [
    "HISTORY_SLOT",
    "USER_LANGUAGE",
    "Prompt",
    "answer_language_phrase",
    "load_prompt",
    "split_prompt",
]

# Rendering with this sentinel in place of the history splits a prompt into the shared prefix (instructions and
# taxonomy, evaluated once and cached) and the per-user part.
HISTORY_SLOT = "\x00HISTORY\x00"
_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)


@dataclass(frozen=True)
class Prompt:
    """A prompt file: front matter (name, version, stage) and a Jinja template."""

    name: str
    version: str
    stage: str
    template: str
    path: str
    # Front-matter keys beyond name/version/stage that change how a scorer reads the prompt (segment_score:
    # `choices: letters` answers with one letter per segment, `chat: true` wraps it in the model's chat template).
    options: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def hash(self) -> str:
        """sha256 of name, version and template text (and the options, when the prompt has any)."""
        extra = f"\n{sorted(self.options.items())!r}" if self.options else ""
        return hashlib.sha256(f"{self.name}\n{self.version}\n{self.template}{extra}".encode()).hexdigest()

    @property
    def ref(self) -> str:
        """name@version, for humans."""
        return f"{self.name}@{self.version}"

    def render(self, **context: Any) -> str:
        """Render the template; a missing variable is an error, not an empty string."""
        try:
            return _ENV.from_string(self.template).render(**context)
        except jinja2.TemplateError as exc:
            raise ConfigError(f"prompt {self.ref} ({self.path}) failed to render: {exc}") from exc


USER_LANGUAGE = "the language most of the user's activity is written in"


def answer_language_phrase(value: str | None) -> str:
    """What a prompt's {{ answer_language }} says: English (the default), the user's own language ('user'), or a
    language named as given ('Chinese', '中文')."""
    if not value or value.strip().lower() in ("en", "english"):
        return "English"
    if value.strip().lower() == "user":
        return USER_LANGUAGE
    return value.strip()


def split_prompt(prompt: Prompt, **context: Any) -> tuple[str, str]:
    """Render around the history slot: (shared prefix, suffix after the history)."""
    text = prompt.render(history=HISTORY_SLOT, **context)
    if text.count(HISTORY_SLOT) != 1:
        raise ConfigError(f"prompt {prompt.ref} must use {{{{ history }}}} exactly once")
    prefix, suffix = text.split(HISTORY_SLOT)
    return prefix, suffix


@lru_cache(maxsize=64)
def load_prompt(name_or_path: str, base_dir: str | None = None) -> Prompt:
    """Load `name` (newest version in prompts/), `name@version`, or a file path."""
    path = _resolve(name_or_path, Path(base_dir) if base_dir else prompts_dir())
    raw = path.read_text(encoding="utf-8")
    if not raw.startswith("---\n"):
        raise ConfigError(f"{path}: a prompt file starts with '---' front matter (name, version, stage)")
    head, _, body = raw[4:].partition("\n---\n")
    meta = yaml.safe_load(head) or {}
    missing = [k for k in ("name", "version", "stage") if k not in meta]
    if missing:
        raise ConfigError(f"{path}: front matter lacks {', '.join(missing)}")
    options = {k: v for k, v in meta.items() if k not in ("name", "version", "stage")}
    return Prompt(str(meta["name"]), str(meta["version"]), str(meta["stage"]), body, str(path), options)


def _resolve(name_or_path: str, base: Path) -> Path:
    candidate = Path(name_or_path)
    if candidate.suffix == ".j2" and candidate.exists():
        return candidate
    name, _, version = name_or_path.partition("@")
    if version:
        path = base / f"{name}.v{version}.j2"
        if not path.exists():
            raise ConfigError(f"prompt {name_or_path!r} not found ({path})")
        return path
    found = sorted(base.glob(f"{name}.v*.j2"), key=lambda p: _version_key(p.name))
    if not found:
        available = sorted({p.name.split(".v")[0] for p in base.glob("*.j2")})
        raise ConfigError(f"prompt {name!r} not found in {base}; available: {', '.join(available) or 'none'}")
    return found[-1]


def _version_key(filename: str) -> tuple[int, ...]:
    version = filename.rsplit(".v", 1)[1].removesuffix(".j2")
    return tuple(int(x) if x.isdigit() else 0 for x in version.split("."))
