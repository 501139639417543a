"""Lexical stage: character n-gram TF-IDF over the embedded text (title plus lead).

Names, places and numbers that one story repeats across outlets are caught by character
n-grams in any script, without a tokenizer per language. Vectors are hashed (no vocabulary to
store); document frequencies are counted at build time, saved with the build, and grow as
articles are added.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import HashingVectorizer

N_FEATURES = 2**20
NGRAMS = (3, 5)


def _hasher() -> HashingVectorizer:
    return HashingVectorizer(
        analyzer="char_wb", ngram_range=NGRAMS, n_features=N_FEATURES,
        alternate_sign=False, norm=None, lowercase=True, dtype=np.float32,
    )


class LexicalStats:
    """Document frequencies of hashed n-grams; grows as articles arrive, rebuilt by `recsys build`."""

    def __init__(self, df: np.ndarray | None = None, n_docs: int = 0) -> None:
        self.df = np.zeros(N_FEATURES, dtype=np.int64) if df is None else df
        self.n_docs = n_docs
        self._idf: np.ndarray | None = None
        self._lock = threading.Lock()

    def add(self, texts: Iterable[str], batch: int = 5000) -> None:
        """Count the n-grams of more documents."""
        hasher = _hasher()
        chunk: list[str] = []
        for text in [*texts, None]:
            if text is not None:
                chunk.append(text)
            if chunk and (text is None or len(chunk) == batch):
                counts = hasher.transform(chunk).tocsc()
                with self._lock:
                    self.df += np.diff(counts.indptr)
                    self.n_docs += len(chunk)
                    self._idf = None
                chunk = []

    @property
    def idf(self) -> np.ndarray:
        """Smoothed IDF, log((1 + n) / (1 + df)) + 1, as in scikit-learn."""
        with self._lock:
            if self._idf is None:
                self._idf = (np.log((1.0 + self.n_docs) / (1.0 + self.df)) + 1.0).astype(np.float32)
            return self._idf

    def save(self, path: Path) -> None:
        np.savez_compressed(path, df=self.df, n_docs=np.array([self.n_docs]))

    @classmethod
    def load(cls, path: Path) -> LexicalStats:
        with np.load(path) as data:
            return cls(data["df"].astype(np.int64), int(data["n_docs"][0]))


def vectors(texts: Sequence[str], idf: np.ndarray) -> sparse.csr_matrix:
    """L2-normalised TF-IDF rows (sublinear tf) for the given texts."""
    counts = _hasher().transform(list(texts)).tocsr()
    counts.data = 1.0 + np.log(counts.data)  # sublinear tf, as scikit-learn's sublinear_tf
    weighted = counts.multiply(idf.reshape(1, -1)).tocsr()
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms).dot(weighted).tocsr()


def similarities(query: str, texts: Sequence[str], idf: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cosine of each text to the query, cosine between every pair of texts)."""
    rows = vectors([query, *texts], idf)
    gram = (rows @ rows.T).toarray()
    return gram[0, 1:], gram[1:, 1:]
