"""The segment stage: several scorers each give a distribution over segments; the stage combines them.

Scorers
    llm        next-token log-probabilities of each segment name after the prompt, one forward pass (local models)
    embedding  cosine between a user's mean post embedding and each segment's description (sentence-transformers)
    json       a schema-constrained generated answer (any backend; logprobs where the backend returns them)

Each scorer's raw output is cached per user (calls table). Labels are computed from raw outputs by `combine`, which
calibrates each scorer (subtracting its mean score over a batch of users removes a tiny model's label bias), z-scores
it within the user, weights, and turns the sum into probabilities with a softmax.
"""

from __future__ import annotations

from .base import JsonScoreResult, Scorer, ScoreResult, ScorerSpec, cache_key
from .combine import combine, zscore
from .embedding import EmbeddingScorer
from .json_answer import JsonScorer
from .next_token import NextTokenScorer

__all__ = [
    "EmbeddingScorer",
    "JsonScoreResult",
    "JsonScorer",
    "NextTokenScorer",
    "ScoreResult",
    "Scorer",
    "ScorerSpec",
    "cache_key",
    "combine",
    "zscore",
]
