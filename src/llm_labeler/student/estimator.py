"""The student: hashed word/char n-gram TF-IDF plus event-meta counts, and a class-weighted linear model.

Text in scripts written without spaces (Chinese, Japanese, Korean, Thai...) is featurized as character n-grams
(`cjk_ngrams`), any other text as words, in the same featurizer: see hashing.py.

Both classes follow the scikit-learn contract (parameters only in __init__, fit returns self, learned state ends
in `_`), so they work in cross_val_score, GridSearchCV and Pipeline. X is a list of history texts, an (n, 2)
object array of (history text, meta tokens), or an Arrow table/batch with `doc` and `meta` columns (bulk scoring).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.linear_model import LogisticRegression
from sklearn.utils.validation import check_is_fitted

from . import fastpath
from .hashing import HashSpec, columns_as_docs, count_matrix, ngram_texts

__all__ = ["CJK_NGRAMS", "HashedTfidf", "StudentClassifier", "cross_val_predict_student"]

# Character n-gram sizes for unspaced scripts in a new model. A model saved before the option existed loads with
# (0, 0), the featurization it was fitted with.
CJK_NGRAMS = (1, 2)
_LEGACY = {"cjk_ngrams": (0, 0)}


class HashedTfidf(TransformerMixin, BaseEstimator):
    """Hashed n-gram counts -> sublinear TF x IDF, L2-normalised per block (words, chars, meta), blocks weighted."""

    def __init__(
        self,
        word_bits: int = 18,
        word_ngrams: int = 1,
        char_bits: int = 18,
        char_ngrams: tuple[int, int] = (0, 0),
        meta_bits: int = 12,
        char_weight: float = 1.0,
        meta_weight: float = 0.3,
        sublinear_tf: bool = True,
        cjk_ngrams: tuple[int, int] = CJK_NGRAMS,
    ) -> None:
        self.word_bits = word_bits
        self.word_ngrams = word_ngrams
        self.char_bits = char_bits
        self.char_ngrams = char_ngrams
        self.meta_bits = meta_bits
        self.char_weight = char_weight
        self.meta_weight = meta_weight
        self.sublinear_tf = sublinear_tf
        self.cjk_ngrams = cjk_ngrams

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Loading (skops, pickle): a file from before a parameter existed gets the value it was fitted with."""
        super().__setstate__({**_LEGACY, **state})

    def _spec(self) -> HashSpec:
        return HashSpec(
            word_bits=self.word_bits,
            word_ngrams=self.word_ngrams,
            char_bits=self.char_bits,
            char_ngrams=_pair(self.char_ngrams),
            meta_bits=self.meta_bits,
            cjk_ngrams=_pair(self.cjk_ngrams),
        )

    def _counts(self, X: Any) -> sp.csr_matrix:
        docs, metas = columns_as_docs(X)
        spec = self._spec()
        if fastpath.AVAILABLE and not spec.char_ngrams[0]:
            return fastpath.count_matrix_fast(docs, metas, spec)
        return count_matrix(docs, metas, spec)

    def fit(self, X: Any, y: Any = None) -> HashedTfidf:
        """Learn smoothed IDF weights over the hashed columns."""
        counts = self._counts(X)
        n = counts.shape[0]
        df = np.bincount(counts.indices, minlength=counts.shape[1])
        self.idf_ = (np.log((1.0 + n) / (1.0 + df)) + 1.0).astype(np.float32)
        self.spec_ = self._spec()
        self.n_features_out_ = counts.shape[1]
        return self

    def transform(self, X: Any) -> sp.csr_matrix:
        """TF-IDF rows; an empty history is an all-zero row."""
        check_is_fitted(self, "idf_")
        return self.weigh(self._counts(X))

    def weigh(self, counts: sp.csr_matrix) -> sp.csr_matrix:
        """Counts -> weighted, normalised features (split out so bulk scoring can time it)."""
        data = np.log1p(counts.data) + 1.0 if self.sublinear_tf else counts.data.copy()
        data = (data * self.idf_[counts.indices]).astype(np.float32)
        rows = np.repeat(np.arange(counts.shape[0]), np.diff(counts.indptr))
        block = self.spec_.block_of(counts.indices)
        slot = rows * 3 + block
        norms = np.sqrt(
            np.bincount(slot, weights=data.astype(np.float64) ** 2, minlength=counts.shape[0] * 3)
        )
        weights = np.array([1.0, self.char_weight, self.meta_weight], dtype=np.float64)
        data = (data / norms[slot] * weights[block]).astype(np.float32)
        return sp.csr_matrix((data, counts.indices, counts.indptr), shape=counts.shape)


class StudentClassifier(ClassifierMixin, BaseEstimator):
    """HashedTfidf + multinomial logistic regression with balanced class weights; sample weights = confidence.

    Defaults (word unigrams, 2^18 buckets, no char n-grams) are what measured best on 20 Newsgroups: bigrams and
    char 3-5-grams scored no better and cost 2x and 14x at predict time (benchmarks/quality_distill.py). Chinese,
    Japanese, Korean and Thai text gets character uni+bigrams (`cjk_ngrams`, measured on the Chinese gold by
    `quality_distill.py --zh`); it changes nothing for text without those scripts.
    """

    def __init__(
        self,
        word_bits: int = 18,
        word_ngrams: int = 1,
        char_ngrams: tuple[int, int] = (0, 0),
        meta_weight: float = 0.3,
        C: float = 10.0,
        class_weight: str | dict[str, float] | None = "balanced",
        min_df: int = 2,
        max_iter: int = 1000,
        cjk_ngrams: tuple[int, int] = CJK_NGRAMS,
    ) -> None:
        self.word_bits = word_bits
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.meta_weight = meta_weight
        self.C = C
        self.class_weight = class_weight
        self.min_df = min_df
        self.max_iter = max_iter
        self.cjk_ngrams = cjk_ngrams

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Loading (skops, pickle): a file from before a parameter existed gets the value it was fitted with."""
        super().__setstate__({**_LEGACY, **state})

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> StudentClassifier:
        """Fit features and the linear model; returns self."""
        self.features_ = HashedTfidf(
            word_bits=self.word_bits,
            word_ngrams=self.word_ngrams,
            char_ngrams=_pair(self.char_ngrams),
            meta_weight=self.meta_weight,
            cjk_ngrams=_pair(self.cjk_ngrams),
        ).fit(X)
        F = self.features_.transform(X)
        # Columns no training user has get weight zero anyway (zero gradient, L2 penalty), and n-grams seen in a
        # single history are mostly noise (like TfidfVectorizer's min_df): the model is fitted on the rest only.
        # Newton-CG: on 200k+ columns scipy's L-BFGS-B spends most of each step in its own bookkeeping.
        df = np.bincount(F.indices, minlength=F.shape[1])
        active = np.flatnonzero(df >= min(self.min_df, F.shape[0]))
        lr = LogisticRegression(
            C=self.C, class_weight=self.class_weight, solver="newton-cg", max_iter=self.max_iter
        )
        lr.fit(F[:, active], np.asarray(y), sample_weight=sample_weight)
        self.classes_ = lr.classes_
        self.coef_ = np.zeros((F.shape[1], lr.coef_.shape[0]), dtype=np.float32)
        self.coef_[active] = lr.coef_.T
        self.intercept_ = lr.intercept_.astype(np.float32)
        self.n_iter_ = int(np.max(lr.n_iter_))
        return self

    def transform_features(self, X: Any) -> sp.csr_matrix:
        """The feature matrix the linear model sees."""
        check_is_fitted(self, "coef_")
        return self.features_.transform(X)

    def _scores(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "coef_")
        f = self.features_
        if fastpath.AVAILABLE and not f.spec_.char_ngrams[0]:
            # compiled: counts, then TF-IDF + norms + dot product in one pass, no weighted matrix built
            return fastpath.decision_scores(f._counts(X), f, self.coef_, self.intercept_)
        return np.asarray(self.transform_features(X) @ self.coef_) + self.intercept_

    def decision_function(self, X: Any) -> np.ndarray:
        """Per-class linear scores (one column for a two-class model, as in scikit-learn)."""
        scores = self._scores(X)
        return scores[:, 0] if scores.shape[1] == 1 else scores

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in `classes_` order (softmax; logistic for two classes)."""
        scores = self._scores(X)
        if scores.shape[1] == 1:
            p = 1.0 / (1.0 + np.exp(-scores[:, 0]))
            return np.c_[1.0 - p, p]
        scores -= scores.max(axis=1, keepdims=True)
        np.exp(scores, out=scores)
        return scores / scores.sum(axis=1, keepdims=True)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class."""
        proba = self.predict_proba(X)
        return np.asarray(self.classes_[np.argmax(proba, axis=1)])

    def top_features(self, doc: str, meta: str, label: str, k: int = 10) -> list[tuple[str, float]]:
        """The n-grams of one history that push it hardest towards `label` (feature value x weight)."""
        row = self.transform_features([[doc, meta]]).tocsr()
        j = list(self.classes_).index(label)
        # multinomial keeps one column per class; two classes keep one column for the second class
        w = (
            self.coef_[:, j]
            if self.coef_.shape[1] > 1
            else (self.coef_[:, 0] if j == 1 else -self.coef_[:, 0])
        )
        contrib = dict(zip(row.indices.tolist(), (row.data * w[row.indices]).tolist()))
        names: dict[int, str] = {}
        for col, text in ngram_texts(doc, meta, self.features_.spec_):
            names.setdefault(col, text)
        ranked = sorted(contrib.items(), key=lambda kv: -kv[1])[:k]
        return [(names.get(col, f"#{col}"), float(v)) for col, v in ranked if v > 0]


def _pair(value: Any) -> tuple[int, int]:
    """(lo, hi) as plain ints, whether given as a tuple, a list (JSON metadata) or numpy ints."""
    lo, hi = value
    return int(lo), int(hi)


def cross_val_predict_student(
    est: Any, X: Any, y: np.ndarray, sample_weight: np.ndarray, folds: int, seed: int = 0
) -> np.ndarray | None:
    """Out-of-fold predictions with stratified folds (fewer when a class is small); None if a class has one user."""
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    smallest = min(np.unique(y, return_counts=True)[1])
    k = min(folds, int(smallest))
    if k < 2:
        return None
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return np.asarray(cross_val_predict(est, X, y, cv=cv, params={"sample_weight": sample_weight}))
