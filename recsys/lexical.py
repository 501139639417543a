"""Lexical stage: character n-gram TF-IDF over the embedded text (title plus lead).

Names, places and numbers that one story repeats across outlets are caught by character
n-grams in any script, without a tokenizer per language. Vectors are hashed (no vocabulary to
store); document frequencies are counted at build time, saved with the build, and grow as
articles are added.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
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


def tf_rows(texts: Sequence[str]) -> sparse.csr_matrix:
    """Hashed n-gram counts with sublinear tf (1 + log tf, as scikit-learn's sublinear_tf)."""
    counts = _hasher().transform(list(texts)).tocsr()
    counts.data = 1.0 + np.log(counts.data)
    return counts


def weigh(tf: sparse.csr_matrix, idf: np.ndarray) -> sparse.csr_matrix:
    """TF-IDF rows scaled to unit length."""
    weighted = tf.copy()
    weighted.data = weighted.data * idf[weighted.indices]
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sparse.diags(1.0 / norms).dot(weighted).tocsr()


def vectors(texts: Sequence[str], idf: np.ndarray) -> sparse.csr_matrix:
    """L2-normalised TF-IDF rows (sublinear tf) for the given texts."""
    return weigh(tf_rows(texts), idf)


def similarities(query: str, texts: Sequence[str], idf: np.ndarray) -> tuple[np.ndarray, LazyGram]:
    """(cosine of each text to the query, cosine between every pair of texts)."""
    return row_similarities(tf_rows([query]), tf_rows(texts), idf)


def row_similarities(query_tf: sparse.csr_matrix, tf: sparse.csr_matrix, idf: np.ndarray) -> tuple[np.ndarray, LazyGram]:
    """As `similarities`, from precomputed tf rows."""
    rows = weigh(sparse.vstack([query_tf, tf]).tocsr(), idf)
    to_query = (rows[1:] @ rows[0].T).toarray().ravel()
    return to_query, LazyGram(rows[1:])


class LazyGram:
    """Pairwise cosines, one column computed on first use: ranking compares items with a few
    group leaders only, so the full n x n product would be mostly wasted."""

    def __init__(self, rows: sparse.csr_matrix, block: int = 64) -> None:
        self.rows = rows
        self._columns: dict[int, np.ndarray] = {}
        # Leaders are mostly near the top of the pool: one product for the first columns is cheap.
        first = (rows @ rows[:block].T).toarray() if rows.shape[0] else np.zeros((0, 0))
        self._columns.update({j: first[:, j] for j in range(first.shape[1])})

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows.shape[0], self.rows.shape[0])

    def __getitem__(self, index: tuple[int, int]) -> float:
        i, j = index
        column = self._columns.get(j)
        if column is None:
            # a dense right-hand side makes this one O(nnz) pass instead of a sparse product
            column = self._columns[j] = self.rows @ self.rows[j].toarray().ravel()
        return float(column[i])


class TfCache:
    """tf rows by vector id (a vid's text never changes), least recently used dropped first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._rows: OrderedDict[int, sparse.csr_matrix] = OrderedDict()
        self._lock = threading.Lock()

    def rows(self, vids: Sequence[int], text_of: Callable[[int], str]) -> sparse.csr_matrix:
        with self._lock:
            missing = [v for v in vids if v not in self._rows]
        fresh = tf_rows([text_of(v) for v in missing]) if missing else None
        with self._lock:
            for i, vid in enumerate(missing):
                self._rows[vid] = fresh[i]
            out = [self._rows[v] for v in vids]
            for vid in vids:
                self._rows.move_to_end(vid)
            while len(self._rows) > self.capacity:
                self._rows.popitem(last=False)
        return sparse.vstack(out).tocsr() if out else sparse.csr_matrix((0, N_FEATURES), dtype=np.float32)
