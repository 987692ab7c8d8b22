"""segments/confidence.py: logprob and vote distributions over the allowed segments."""

from __future__ import annotations

import math

import pytest

from llm_labeler.segments.confidence import logprob_distribution, token_logprobs, vote_distribution

IDS = ["computers", "recreation", "science", "politics", "religion", "marketplace"]


def test_logprob_confidence_is_normalised_over_allowed_segments() -> None:
    text = '{ "primary": "computers", "confidence": 0.5}'
    tokens = [
        {"token": t, "logprob": -0.1, "top_logprobs": []} for t in ["{", " ", '"', "primary", '":', ' "']
    ]
    tokens.append(
        {
            "token": "comp",
            "logprob": -0.5,
            "top_logprobs": [
                {"token": "comp", "logprob": -0.5},
                {"token": "re", "logprob": -1.5},  # shared by recreation and religion
                {"token": "science", "logprob": -2.0},
                {"token": "xyz", "logprob": -3.0},
            ],
        }
    )
    tokens.append({"token": 'uters", "confidence": 0.5}', "logprob": -0.1, "top_logprobs": []})
    dist = logprob_distribution(text, tokens, IDS)
    assert dist is not None and dist.covered == 4
    probs = [math.exp(x) for x in dist.logprobs]
    assert sum(probs) == pytest.approx(1.0) and max(range(6), key=probs.__getitem__) == 0
    assert probs[1] == pytest.approx(probs[4]) and probs[3] == probs[5] < probs[2]  # unseen get the floor
    assert (
        logprob_distribution('{"primary": "computers"}', tokens, IDS) is None
    )  # tokens do not spell the text
    assert token_logprobs({"logprobs": tokens}) == tokens and token_logprobs(None) is None


def test_vote_distribution() -> None:
    probs = [math.exp(x) for x in vote_distribution(["science", "science", "politics"], IDS)]
    assert sum(probs) == pytest.approx(1.0) and probs[2] > probs[3] > probs[0]
