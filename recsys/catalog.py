"""What ranking needs to know about every vector in the live index, as arrays indexed by row.

A row is a vector's position in the live FAISS index: rows are appended in the order the index
adds vectors and never change, so FAISS output maps to metadata without a lookup, and a request
reads nothing from the database until it knows its final items. Rows of edited or deleted
articles stay, marked dead. Writers append under a lock; readers take `snapshot()` and see a
consistent prefix of rows without locking. Beside each article's vector the catalog keeps the
vector of its headline alone (float16: the story rule only compares it with a threshold), for
the story rule; none is searched.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
from scipy import sparse

from recsys import lexical
from recsys.article import fold


def key_of(text: str | None) -> int:
    """A stable 63-bit key of a string (0 for none): urls, headlines and texts compare as keys."""
    if not text:
        return 0
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little") >> 1 or 1


def headline_key(title: str) -> int:
    """Key of a headline with case, punctuation and Unicode forms ignored."""
    return key_of(fold(title))


@dataclass(frozen=True)
class Meta:
    """One vector's ranking metadata, as read from the store."""

    vid: int
    article_id: str
    lang: str
    published_ts: float | None
    section: str | None
    url: str | None
    original_url: str | None
    title: str
    text_key: int  # key of the embedded text: a draft equal to it is never answered with it


def metas_from_rows(rows: Sequence, text_of: Callable[[object], str], lexical_chars: int
                    ) -> tuple[list[Meta], list[str]]:
    """Metas and lexical texts of trusted store rows (vid, id and the ranking columns)."""
    metas, texts = [], []
    for r in rows:
        # a plain namespace, not an Article: pydantic's construct costs ~300 µs a row
        text = text_of(SimpleNamespace(title=r["title"], text=r["text"], section=r["section"], source=r["source"]))
        texts.append(text[:lexical_chars])
        metas.append(Meta(r["vid"], r["id"], r["lang"], r["published_ts"], r["section"], r["url"],
                          r["original_url"], r["title"], key_of(r["content_hash"])))
    return metas, texts


COLUMNS = {"vid": np.int64, "lang": np.int32, "ts": np.float64, "section": np.int32, "url": np.int64,
           "original": np.int64, "title": np.int64, "text": np.int64, "alive": np.bool_}


@dataclass(frozen=True)
class Snapshot:
    """Rows [0, n) of the catalog at one moment; arrays may be longer, only the prefix is valid."""

    n: int
    col: dict[str, np.ndarray]
    vectors: np.ndarray
    headlines: np.ndarray  # float16 headline vectors by row (zeros where none)
    lexical: LexicalRows
    ids: list[str]
    langs: list[str]
    sections: list[str]

    def headline_cosines(self, rows: np.ndarray) -> np.ndarray:
        """Cosines among the headline vectors of `rows`: (n, n) for (n,) rows, (B, n, n) for (B, n)."""
        head = self.headlines[rows].astype(np.float32)
        return head @ np.swapaxes(head, -1, -2)


class LexicalRows:
    """Normalised TF-IDF rows in appended chunks (a big one from the build, small ones after)."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.chunks: list[sparse.csr_matrix] = []

    def append(self, start: int, rows: sparse.csr_matrix) -> None:
        chunk = rows.astype(np.float32).tocsr()
        chunk.sort_indices()  # rows multiplied pairwise (neighbour lists) take scipy's fast merge when sorted
        self.chunks.append(chunk)
        self.starts.append(start)  # appended last: a reader never sees a start without its chunk

    def take(self, rows: np.ndarray) -> lexical.Rows:
        """The given rows, in order."""
        starts = self.starts[: len(self.chunks)]
        rows = np.asarray(rows, dtype=np.int64)
        if not len(rows) or not starts:
            return lexical.Rows(np.zeros(1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))
        if len(starts) == 1:
            return lexical.take_rows(self.chunks[0], rows)
        which = np.searchsorted(np.array(starts), rows, side="right") - 1
        parts, order = [], []
        for c in np.unique(which):
            picked = np.flatnonzero(which == c)
            parts.append(lexical.take_rows(self.chunks[c], rows[picked] - starts[c]))
            order.append(picked)
        lengths = np.concatenate([np.diff(p.indptr) for p in parts])
        stacked = lexical.Rows(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                               np.concatenate([p.indices for p in parts]), np.concatenate([p.data for p in parts]))
        return stacked.take(np.argsort(np.concatenate(order)))

    def dot(self, rows: np.ndarray, query: sparse.csr_matrix | lexical.Rows) -> np.ndarray:
        """Each row's lexical similarity to a query row."""
        if len(self.chunks) == 1 and len(self.starts) == 1:
            return lexical.dot_at(self.chunks[0], rows, query)
        return lexical.dot_rows(self.take(rows), query)

    def pair_dots(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """The lexical similarity of each pair of rows (left[i], right[i])."""
        if len(self.chunks) == 1 and len(self.starts) == 1:  # a build: scipy gathers rows faster than `take`
            chunk = self.chunks[0]
            return lexical.pair_dots(chunk[np.asarray(left)], chunk[np.asarray(right)])
        return lexical.pair_dots(self.take(left), self.take(right))

    def matrix(self) -> sparse.csr_matrix:
        return sparse.vstack(self.chunks).tocsr() if self.chunks else sparse.csr_matrix((0, lexical.N_FEATURES))


class Catalog:
    """Append-only arrays of ranking metadata by row, plus the live row of each article id."""

    def __init__(self, dimension: int, capacity: int = 1024) -> None:
        self.dimension = dimension
        self.n = 0
        self.col = {name: np.zeros(capacity, dtype=kind) for name, kind in COLUMNS.items()}
        self.vectors = np.zeros((capacity, dimension), dtype=np.float32)
        self.headlines = np.zeros((capacity, dimension), dtype=np.float16)
        self.lexical = LexicalRows()
        self.ids: list[str] = []
        self.row_of_id: dict[str, int] = {}
        self.langs: list[str] = []
        self.sections: list[str] = []
        self._codes: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    def snapshot(self) -> Snapshot:
        n = self.n  # read first: everything read after it covers at least n rows
        return Snapshot(n, self.col, self.vectors, self.headlines, self.lexical, self.ids, self.langs, self.sections)

    def append(self, metas: Sequence[Meta], vectors: np.ndarray, lexical_rows: sparse.csr_matrix,
               headlines: np.ndarray | None = None) -> np.ndarray:
        """Add rows (dead where the vector is no longer current: Meta.article_id == ""); their numbers.

        `headlines`: the headline vectors of the rows (None: none, the headline rule never fires)."""
        with self._lock:
            start, count = self.n, len(metas)
            self._reserve(start + count)
            col, end = self.col, start + count
            col["vid"][start:end] = [m.vid for m in metas]
            col["ts"][start:end] = [np.nan if m.published_ts is None else m.published_ts for m in metas]
            col["lang"][start:end] = [self._code("lang", m.lang) for m in metas]
            col["section"][start:end] = [self._code("section", m.section) for m in metas]
            col["url"][start:end] = [key_of(m.url) for m in metas]
            col["original"][start:end] = [key_of(m.original_url) for m in metas]
            col["title"][start:end] = [headline_key(m.title) for m in metas]
            col["text"][start:end] = [m.text_key for m in metas]
            col["alive"][start:end] = [bool(m.article_id) for m in metas]
            self.vectors[start : start + count] = vectors
            self.headlines[start : start + count] = 0.0 if headlines is None else headlines
            self.lexical.append(start, lexical_rows)
            for i, m in enumerate(metas):
                self.ids.append(m.article_id)
                if m.article_id:
                    old = self.row_of_id.get(m.article_id)
                    if old is not None:
                        col["alive"][old] = False
                    self.row_of_id[m.article_id] = start + i
            self.n = start + count
            return np.arange(start, start + count)

    def kill(self, article_id: str) -> None:
        """The article is gone (deleted, or found stale): its row never answers again."""
        with self._lock:
            row = self.row_of_id.pop(article_id, None)
            if row is not None:
                self.col["alive"][row] = False

    def _code(self, kind: str, value: str | None) -> int:
        if value is None:
            return -1
        value = value.casefold() if kind == "section" else value
        code = self._codes.get((kind, value))
        if code is None:
            names = self.langs if kind == "lang" else self.sections
            code = self._codes[(kind, value)] = len(names)
            names.append(value)
        return code

    def code_of(self, kind: str, value: str | None) -> int:
        """The code of a language or section; -2 when no row has it."""
        if value is None:
            return -1
        return self._codes.get((kind, value.casefold() if kind == "section" else value), -2)

    def _reserve(self, size: int) -> None:
        capacity = len(self.col["vid"])
        if size <= capacity:
            return
        capacity = max(size, 2 * capacity)
        grown = {}
        for name, array in self.col.items():
            grown[name] = np.zeros(capacity, dtype=array.dtype)
            grown[name][: self.n] = array[: self.n]
        vectors = np.zeros((capacity, self.dimension), dtype=np.float32)
        vectors[: self.n] = self.vectors[: self.n]
        headlines = np.zeros((capacity, self.dimension), dtype=np.float16)
        headlines[: self.n] = self.headlines[: self.n]
        # new arrays hold every old row before n can grow
        self.col, self.vectors, self.headlines = grown, vectors, headlines
