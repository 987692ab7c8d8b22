"""The local backend's speed paths are exact: prefix KV reuse, one forward pass, no repeated work, the bound."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pytest

from llm_labeler.backends import get_backend
from llm_labeler.schemas import load_taxonomy
from llm_labeler.segments import NextTokenScorer
from llm_labeler.settings import bundled_path

PREFIX = (
    "Each record below shows one user's posts, then the topic that fits the user best.\n\nUser activity:\n"
)
SUFFIX = "\n\nTopic:"
CHOICES = [" Computers", " Sports", " Religion", " Politics"]
A = "- [post] SCSI controller for a Mac IIsi — which one works with System 7?" + SUFFIX
B = "- [post] Playoffs — the Penguins will beat the Islanders in six games." + SUFFIX


def _scores(backend: Any, prefix: str, text: str, choices: list[str]) -> np.ndarray:
    return np.asarray(backend.score_choices(prefix, text, choices).logprobs)


def test_rewinding_to_the_cached_prefix_gives_the_same_scores_as_a_fresh_context(
    embedded_backend: Any,
) -> None:
    embedded_backend.reset_prefix()
    fresh_a = _scores(embedded_backend, PREFIX, A, CHOICES)  # prefix evaluated just now
    _scores(embedded_backend, PREFIX, B, CHOICES)  # another user's tokens go into the cache after the prefix
    again_a = _scores(embedded_backend, PREFIX, A, CHOICES)  # rewound to the prefix, A processed again
    np.testing.assert_allclose(again_a, fresh_a, atol=2e-3)
    assert (
        int(np.argmax(fresh_a)) == 0
    )  # and the scores mean something: a Mac SCSI question is about computers


def test_the_prefix_is_tokenized_and_evaluated_once_per_string(
    embedded_backend: Any, monkeypatch: Any
) -> None:
    prefix = PREFIX + "(a prefix no other test uses)\n"
    seen: list[str] = []
    tokenize = embedded_backend.tokenize

    def spy(text: str, bos: bool = False) -> list[int]:
        seen.append(text)
        return list(tokenize(text, bos))

    monkeypatch.setattr(embedded_backend, "tokenize", spy)
    for text in (A, B, A):
        _scores(embedded_backend, prefix, text, CHOICES)
    assert seen.count(prefix) == 1
    assert embedded_backend.scorer.n_tokens > len(embedded_backend.user_tokens(prefix, A, CHOICES))


def test_user_tokens_are_what_a_call_processes_and_long_texts_keep_their_end(embedded_backend: Any) -> None:
    tokens = embedded_backend.user_tokens(PREFIX, A, CHOICES)
    assert embedded_backend.score_choices(PREFIX, A, CHOICES).prompt_tokens == len(tokens)
    long = "word " * 2500 + SUFFIX
    kept = embedded_backend.user_tokens(PREFIX, long, CHOICES)
    room = embedded_backend.n_ctx - len(embedded_backend.tokenize(PREFIX, bos=True))
    assert len(kept) < room
    assert embedded_backend.scorer.detokenize(kept[-3:]).decode().endswith("Topic:")
    result = embedded_backend.score_choices(PREFIX, long, CHOICES)  # fits the context: no error
    assert result.prompt_tokens == len(kept)


def test_prefill_bound_times_the_same_tokens_and_leaves_the_cache_usable(embedded_backend: Any) -> None:
    before = _scores(embedded_backend, PREFIX, A, CHOICES)
    lists = [embedded_backend.user_tokens(PREFIX, t, CHOICES) for t in (A, B)]
    seconds = embedded_backend.prefill_seconds(PREFIX, lists)
    assert len(seconds) == 2 and all(s > 0 for s in seconds)
    np.testing.assert_allclose(_scores(embedded_backend, PREFIX, A, CHOICES), before, atol=2e-3)


@pytest.mark.parametrize("name", ["20ng_coarse", "20ng_fine", "ecommerce"])
def test_bundled_taxonomies_are_scored_from_one_forward_pass(embedded_backend: Any, name: str) -> None:
    taxonomy = load_taxonomy(bundled_path("taxonomies", f"{name}.yaml"))
    scorer = NextTokenScorer(embedded_backend, taxonomy)
    assert embedded_backend.single_pass(scorer.choices)  # distinct first tokens: no extra evals per user


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    return logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())


def _reference_sequence_logprobs(backend: Any, text: str, choices: list[str]) -> list[float]:
    """log P(choice | prefix + text), one token at a time from the same cached state (the slow, obvious way).

    Same batch structure as the backend (prefix, then the user's tokens): llama.cpp's results move by up to ~0.5
    nats when the same tokens are split into batches differently, so only like is compared with like.
    """
    llm = backend.scorer
    user = backend.user_tokens(PREFIX, text, choices)
    out = []
    for choice in choices:
        llm.n_tokens = len(backend.tokenize(PREFIX, bos=True))
        llm.eval(user)
        total = 0.0
        for tok in backend.tokenize(choice):
            total += float(_log_softmax(backend._last_logits(llm))[tok])
            llm.eval([tok])
        out.append(total)
    return out


def test_choices_sharing_a_first_token_are_scored_as_whole_sequences(embedded_backend: Any) -> None:
    choices = [" Computer graphics", " Computer hardware", " Baseball"]
    assert not embedded_backend.single_pass(choices)
    got = _scores(embedded_backend, PREFIX, A, choices)
    want = _reference_sequence_logprobs(embedded_backend, A, choices)
    np.testing.assert_allclose(got, want, atol=5e-3)
    assert got[0] != got[1]  # the shared first token no longer decides alone
    # ... and the cached prefix state is intact afterwards.
    np.testing.assert_allclose(
        _scores(embedded_backend, PREFIX, A, CHOICES),
        _scores(embedded_backend, PREFIX, A, CHOICES),
        atol=1e-6,
    )


def test_the_model_stays_loaded_and_uses_every_core(embedded_backend: Any) -> None:
    assert get_backend("llamacpp:default") is embedded_backend  # the registry reuses the loaded instance
    context = embedded_backend.scorer
    _scores(embedded_backend, PREFIX, B, CHOICES)
    assert embedded_backend.scorer is context  # no reload between users
    cores = int(os.environ.get("LLM_LABELER_THREADS", "0")) or len(os.sched_getaffinity(0))
    assert context.context_params.n_threads == cores  # token-by-token work
    assert context.context_params.n_threads_batch == cores  # prompt processing: where a label's time goes
