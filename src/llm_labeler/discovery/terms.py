"""A segment's distinctive terms: class-based TF-IDF (BERTopic's c-TF-IDF) over its members' histories.

Each cluster is one document (its members' texts joined); a term's weight in a cluster is its frequency there
(L1-normalised) times log(1 + A / f), A the mean number of term occurrences per cluster and f the term's count over
every cluster: frequent in this segment, rare across the others. Counting is scikit-learn's CountVectorizer with
our analyzer: Latin-script words (English stop words, numbers, e-mail addresses and URLs dropped) and, for
scripts written without spaces (Chinese, Japanese), character bigrams, so Chinese histories need no segmenter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS, CountVectorizer

__all__ = ["MAX_USER_SHARE", "analyze", "class_tfidf"]

_NOISE = re.compile(r"\S+@\S+|https?://\S+|www\.\S+")
_WORD = re.compile(r"[^\W\d_][\w-]*[^\W_]", re.UNICODE)
# Han, kana and Hangul (the history module's CJK ranges, less punctuation and full-width forms)
_CJK_RUN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]+")
# English stop words, contraction stems ("doesn't" -> "doesn") and the verbs every discussion uses
_STOP = ENGLISH_STOP_WORDS | {
    "re", "don", "doesn", "didn", "isn", "wasn", "aren", "won", "can", "couldn", "wouldn", "shouldn", "ll", "ve",
    "does", "just", "like", "know", "think", "use", "used", "did", "say", "said", "want", "way", "really", "thing",
    "things", "going", "got", "make", "sure", "good", "time", "people", "right", "need", "let", "yes",
}  # fmt: skip
MAX_USER_SHARE = 0.6  # a term more than this share of all users write says nothing about any one segment


def analyze(text: str) -> list[str]:
    """Terms of a text: lower-cased Latin-script words of 3+ letters, and CJK character bigrams."""
    text = _NOISE.sub(" ", text)
    out: list[str] = []
    for run in _CJK_RUN.findall(text):
        out += [run[i : i + 2] for i in range(len(run) - 1)] if len(run) > 1 else [run]
    for word in _WORD.findall(_CJK_RUN.sub(" ", text)):
        w = word.lower().strip("-")
        if len(w) >= 3 and w not in _STOP:
            out.append(w)
    return out


def class_tfidf(
    docs: Sequence[str], labels: np.ndarray, n_terms: int, min_users: int = 2
) -> dict[int, list[str]]:
    """The top `n_terms` c-TF-IDF terms of every cluster (labels >= 0), each term used by >= min_users users."""
    clusters = [int(c) for c in np.unique(labels) if c >= 0]
    if not clusters:
        return {}
    vectorizer = CountVectorizer(analyzer=analyze, min_df=min(min_users, len(docs)), max_df=MAX_USER_SHARE)
    try:
        counts = vectorizer.fit_transform(docs)
    except ValueError:  # no term at all (every history is digits and punctuation)
        return {c: [] for c in clusters}
    per_class = np.vstack([np.asarray(counts[labels == c].sum(axis=0)).ravel() for c in clusters])
    tf = per_class / np.maximum(per_class.sum(axis=1, keepdims=True), 1)
    mean_words = per_class.sum() / len(clusters)
    idf = np.log1p(mean_words / np.maximum(per_class.sum(axis=0), 1))
    weights = tf * idf
    vocab = vectorizer.get_feature_names_out()
    out = {}
    for row, c in enumerate(clusters):
        order = np.argsort(-weights[row], kind="stable")
        out[c] = [str(vocab[i]) for i in order[:n_terms] if weights[row, i] > 0]
    return out
