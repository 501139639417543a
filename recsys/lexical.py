"""Lexical stage: character n-gram TF-IDF over the embedded text (title plus lead).

Names, places and numbers that one story repeats across outlets are caught by character
n-grams in any script, without a tokenizer per language. The n-grams are those of
scikit-learn's `char_wb` analyser (3 to 5 characters inside each space-padded, lowercased
word), hashed into 2^20 features with a polynomial hash computed for a whole batch of texts at
once in numpy (scikit-learn hashes n-gram by n-gram in Python, ten times slower). Document
frequencies are counted at build time and saved with the build. Each vector's row is weighed
once, with the IDF of the build that was live when it arrived, and kept (normalised) beside the
dense vector: a request only multiplies rows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from scipy import sparse

N_FEATURES = 2**20
NGRAMS = (3, 5)
_SEP = "\x00"  # ends each padded word: no n-gram spans it
_BASE = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def _ngram_hashes(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(document index, feature) of every n-gram occurrence in the texts."""
    padded = ["".join(f" {w} {_SEP}" for w in (t or "").lower().split()) for t in texts]
    codes = np.frombuffer("".join(padded).encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    doc_of = np.repeat(np.arange(len(texts)), [len(p) for p in padded])
    seps = np.concatenate([[0], np.cumsum(codes == ord(_SEP))])
    docs, feats = [], []
    with np.errstate(over="ignore"):  # the hash works modulo 2^64 on purpose
        for n in range(NGRAMS[0], NGRAMS[1] + 1):
            starts = np.arange(max(0, len(codes) - n + 1))
            starts = starts[seps[starts + n] == seps[starts]]  # windows inside one padded word
            h = np.full(len(starts), np.uint64(n))
            for i in range(n):
                h = h * _BASE + codes[starts + i]
            docs.append(doc_of[starts])
            feats.append(((h * _MIX) >> np.uint64(44)).astype(np.int64))  # top 20 bits
    return np.concatenate(docs), np.concatenate(feats)


def count_rows(texts: Sequence[str]) -> sparse.csr_matrix:
    """Raw n-gram counts, one row per text."""
    docs, feats = _ngram_hashes(texts)
    counts = sparse.csr_matrix((np.ones(len(docs), dtype=np.float32), (docs, feats)),
                               shape=(len(texts), N_FEATURES))
    counts.sum_duplicates()
    return counts


class LexicalStats:
    """Document frequencies of hashed n-grams; grows as articles arrive, rebuilt by `recsys build`."""

    def __init__(self, df: np.ndarray | None = None, n_docs: int = 0) -> None:
        self.df = np.zeros(N_FEATURES, dtype=np.int64) if df is None else df
        self.n_docs = n_docs
        self._idf: np.ndarray | None = None
        self._lock = threading.Lock()

    def add(self, texts: Iterable[str], batch: int = 5000) -> None:
        """Count the n-grams of more documents."""
        chunk: list[str] = []
        for text in [*texts, None]:
            if text is not None:
                chunk.append(text)
            if chunk and (text is None or len(chunk) == batch):
                counts = count_rows(chunk)
                with self._lock:
                    self.df += np.bincount(counts.indices, minlength=N_FEATURES)
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
    counts = count_rows(texts)
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


def fit_rows(texts: Sequence[str], batch: int = 20_000) -> tuple[LexicalStats, sparse.csr_matrix]:
    """Document frequencies of the texts and their normalised TF-IDF rows, hashing each text once."""
    tfs = [tf_rows(texts[start : start + batch]) for start in range(0, len(texts), batch)]
    stats = LexicalStats()
    for tf in tfs:
        stats.df += np.bincount(tf.indices, minlength=N_FEATURES)
        stats.n_docs += tf.shape[0]
    idf = stats.idf
    rows = [weigh(tf, idf) for tf in tfs]
    return stats, (sparse.vstack(rows).tocsr() if rows else sparse.csr_matrix((0, N_FEATURES), dtype=np.float32))


@dataclass(frozen=True)
class Rows:
    """A few normalised rows in CSR layout as plain arrays: scipy's row indexing costs more than
    the work done on a request's few dozen rows."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.indptr) - 1, N_FEATURES

    @property
    def nnz(self) -> int:
        return len(self.indices)

    def take(self, positions: np.ndarray) -> Rows:
        return take_rows(self, positions)

    def csr(self) -> sparse.csr_matrix:
        return sparse.csr_matrix((self.data, self.indices, self.indptr), shape=self.shape)


def take_rows(matrix: sparse.csr_matrix | Rows, positions: np.ndarray) -> Rows:
    """The given rows of a CSR matrix, in order, gathered with a few array operations."""
    positions = np.asarray(positions, dtype=np.int64)
    starts, ends = matrix.indptr[positions], matrix.indptr[positions + 1]
    lengths = (ends - starts).astype(np.int64)
    indptr = np.zeros(len(positions) + 1, dtype=np.int64)
    np.cumsum(lengths, out=indptr[1:])
    at = np.arange(indptr[-1], dtype=np.int64) + np.repeat(starts.astype(np.int64) - indptr[:-1], lengths)
    return Rows(indptr, matrix.indices[at], matrix.data[at])


def gram(rows: sparse.csr_matrix | Rows) -> np.ndarray:
    """All pairwise products of a few normalised rows, as a dense matrix.

    The columns are renumbered to the n-grams these rows use, and the rows made dense over
    them: a transpose over the whole hashed space (a million columns) would cost more than
    the product, and scipy's per-call overhead more than numpy's product of a few small rows."""
    used, local = np.unique(rows.indices, return_inverse=True)
    n = rows.shape[0]
    if n * len(used) > 4_000_000:
        compact = sparse.csr_matrix((rows.data, local.ravel(), rows.indptr), shape=(n, max(1, len(used))))
        return (compact @ compact.T).toarray()
    dense = np.zeros((n, max(1, len(used))), dtype=np.float32)
    dense[np.repeat(np.arange(n), np.diff(rows.indptr)), local.ravel()] = rows.data
    return dense @ dense.T


def gram_at(rows: Rows, mask: np.ndarray) -> np.ndarray:
    """The pairwise products of `gram`, computed only among the rows that some masked pair uses."""
    used = np.flatnonzero(mask.any(axis=0) | mask.any(axis=1))
    out = np.zeros(mask.shape)
    if len(used):
        out[np.ix_(used, used)] = gram(take_rows(rows, used))
    return np.where(mask, out, 0.0)


_SCRATCH = threading.local()


def _query_slots() -> np.ndarray:
    """A zeroed array over the hashed space, one per thread: the query row is spread into it so that
    each candidate entry finds its partner by one lookup (and the slots are zeroed again after)."""
    slots = getattr(_SCRATCH, "slots", None)
    if slots is None:
        slots = _SCRATCH.slots = np.zeros(N_FEATURES, dtype=np.float32)
    return slots


def dot_rows(rows: sparse.csr_matrix | Rows, query: sparse.csr_matrix | Rows) -> np.ndarray:
    """Each row's product with one query row, in one pass over the rows' entries (no transpose)."""
    if not len(query.indices) or not rows.nnz:
        return np.zeros(rows.shape[0])
    slots = _query_slots()
    slots[query.indices] = query.data
    try:
        hits = slots[rows.indices] * rows.data
    finally:
        slots[query.indices] = 0.0
    sums = np.add.reduceat(np.append(hits, 0.0).astype(np.float64), rows.indptr[:-1])
    return np.where(np.diff(rows.indptr) > 0, sums, 0.0)


def dot_at(matrix: sparse.csr_matrix | Rows, positions: np.ndarray, query: sparse.csr_matrix | Rows) -> np.ndarray:
    """`dot_rows(take_rows(matrix, positions), query)` without gathering the rows first."""
    positions = np.asarray(positions, dtype=np.int64)
    starts = matrix.indptr[positions].astype(np.int64)
    lengths = matrix.indptr[positions + 1] - starts
    ends = np.cumsum(lengths)
    if not len(query.indices) or not len(ends) or not ends[-1]:
        return np.zeros(len(positions))
    offsets = ends - lengths
    at = np.arange(ends[-1], dtype=np.int64) + np.repeat(starts - offsets, lengths)
    slots = _query_slots()
    slots[query.indices] = query.data
    try:
        hits = slots[matrix.indices[at]] * matrix.data[at]
    finally:
        slots[query.indices] = 0.0
    sums = np.add.reduceat(np.append(hits, 0.0).astype(np.float64), offsets)
    return np.where(lengths > 0, sums, 0.0)


def pair_dots(left: sparse.csr_matrix | Rows, right: sparse.csr_matrix | Rows) -> np.ndarray:
    """Row i of `left` times row i of `right`, for two equally long lists of rows (many queries at once)."""
    left, right = (m.csr() if isinstance(m, Rows) else m for m in (left, right))
    product = left.multiply(right).tocsr()  # only the n-grams both rows have
    if not product.nnz:
        return np.zeros(product.shape[0])
    sums = np.add.reduceat(np.append(product.data, 0.0).astype(np.float64), product.indptr[:-1])
    return np.where(np.diff(product.indptr) > 0, sums, 0.0)


def similarities(query: str, texts: Sequence[str], idf: np.ndarray) -> np.ndarray:
    """Cosine of each text to the query."""
    rows = vectors([query, *texts], idf)
    return (rows[1:] @ rows[0].T).toarray().ravel()
