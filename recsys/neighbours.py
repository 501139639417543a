"""Candidate stage, precomputed: every stored article's nearest rows in its own language.

The widget asks for the block of a stored article in the reader's language on every page view.
That request's candidates (the FAISS top-k within the language), their dense and lexical scores,
and which of them are copies of one text or tell one story do not change from one request to the
next: they are computed for every row when a build is made (in batches, on all cores) and kept as
arrays with the build, so the request ranks without searching FAISS, scoring text or comparing
pairs. A write marks stale the lists it may enter (those of the new rows' nearest neighbours); the
list of a stale or new row is made again, by the same code, on its next request. Lists made that
way live in memory until the next build.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from recsys import lexical
from recsys.catalog import Snapshot
from recsys.recommend import Pool, Ranking
from recsys.story_rule import STORY_COLUMNS, relations

POOL_COLUMNS = ("alive", "lang", "ts", "section", "url", "original", "title", "text")
FILE = "neighbours.npz"
FORMAT = 2  # of the saved arrays and the rule: lists made otherwise are made again (2: headline rule)
BATCH = 2048  # rows per batch at build time: (BATCH, k, dimension) vectors are gathered at once
EXACT_MARKING = 1 << 22  # new rows x rows of their language compared per write; a bulk load above it
# marks every list of the language stale instead (each is made again when asked, until the next build)

SearchMany = Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]  # (vectors, k, lang) -> rows, scores


@dataclass(frozen=True)
class Lists:
    """The neighbour lists of some rows: candidates in FAISS order (-1 past `count`), their scores
    to the row, and the copy and story relations among them as bitsets: bit c of story[b, i] says
    candidate c tells candidate i's story, bit c of copy[b, i] that candidate c is a copy of i."""

    rows: np.ndarray  # (B, k) int64
    count: np.ndarray  # (B,) int64
    dense: np.ndarray  # (B, k) float32, as FAISS scored them
    lexical: np.ndarray  # (B, k) float64
    copy: np.ndarray  # (B, k, ceil(k / 64)) uint64 words
    story: np.ndarray


def settings_key(knobs: Ranking, k: int, ef_search: int) -> str:
    """What lists depend on besides the build: saved lists made with other knobs are made again."""
    text = json.dumps([FORMAT, asdict(knobs), k, ef_search], sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def make_pool(snap: Snapshot, rows: np.ndarray, dense: np.ndarray, lexical_scores: np.ndarray,
              known: tuple[list[int], list[int]] | None = None) -> Pool:
    """A candidate pool over catalog rows; `known`: their (copy, story) bitsets, when precomputed."""
    col = {name: snap.col[name][rows] for name in POOL_COLUMNS}

    def pairs(positions: np.ndarray) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray], np.ndarray]:
        vec = snap.vectors[rows[positions]]
        return (vec @ vec.T, lambda mask: lexical.gram_at(snap.lexical.take(rows[positions]), mask),
                snap.headline_cosines(rows[positions]))

    return Pool(rows, dense.astype(np.float64), lexical_scores, col, pairs, known)


def compute(snap: Snapshot, rows: np.ndarray, search: SearchMany, knobs: Ranking, k: int, workers: int = 1) -> Lists:
    """The lists of these rows, each within its own language: searched in one go per language, then
    scored a batch at a time on `workers` threads (scipy and numpy release the GIL for the work)."""
    if not len(rows):
        return _empty(k)
    found, dense = _search(snap, rows, search, k)
    starts = range(0, len(rows), BATCH)

    def scored(start: int) -> Lists:
        end = start + BATCH
        return _scored(snap, rows[start:end], found[start:end], dense[start:end], knobs)

    if workers > 1 and len(starts) > 1:
        with ThreadPoolExecutor(workers) as pool:
            parts = list(pool.map(scored, starts))
    else:
        parts = [scored(start) for start in starts]
    return Lists(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(Lists)))


def _search(snap: Snapshot, rows: np.ndarray, search: SearchMany, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(candidates, scores) of each row in its language, FAISS padding and rows past the snapshot
    dropped as a request drops them, -1 past the end."""
    found = np.full((len(rows), k), -1, dtype=np.int64)
    dense = np.zeros((len(rows), k), dtype=np.float32)
    langs = snap.col["lang"][rows]
    for code in np.unique(langs):
        mine = np.flatnonzero(langs == code)
        for start in range(0, len(mine), 8 * BATCH):
            part = mine[start : start + 8 * BATCH]
            got, scores = search(snap.vectors[rows[part]], k, int(code))
            found[part, : got.shape[1]], dense[part, : got.shape[1]] = got, scores
    valid = (found >= 0) & (found < snap.n)
    order = np.argsort(~valid, axis=1, kind="stable")
    found, dense, valid = (np.take_along_axis(a, order, axis=1) for a in (found, dense, valid))
    found[~valid], dense[~valid] = -1, 0.0
    return found, dense


def _scored(snap: Snapshot, batch: np.ndarray, found: np.ndarray, dense: np.ndarray, knobs: Ranking) -> Lists:
    """Lexical scores and relations of some rows' candidates."""
    valid = found >= 0
    at, slot = np.nonzero(valid)
    lex = np.zeros(found.shape)
    lex[at, slot] = snap.lexical.pair_dots(batch[at], found[at, slot])
    copy, story = _relations(snap, np.where(valid, found, 0), valid, knobs)
    # copy is read by column (is c a copy of the leader i), story by row (does c tell leader i's story),
    # as ranking reads the matrices it computes itself
    return Lists(found, valid.sum(axis=1), dense, lex, _words(np.swapaxes(copy, 1, 2)), _words(story))


def _words(matrices: np.ndarray) -> np.ndarray:
    """(B, k, k) booleans as (B, k, ceil(k / 64)) uint64 words, bit c of a row's words = column c."""
    packed = np.packbits(matrices, axis=-1, bitorder="little")
    width = 8 * -(-matrices.shape[-1] // 64)
    padded = np.zeros(packed.shape[:-1] + (width,), dtype=np.uint8)
    padded[..., : packed.shape[-1]] = packed
    return padded.view("<u8")


def _ints(words: np.ndarray) -> list[int]:
    """Rows of uint64 words as Python ints (a block's few dozen bitsets are cheapest as ints)."""
    if words.shape[1] == 1:
        return words[:, 0].tolist()
    return [int.from_bytes(row.tobytes(), "little") for row in words]


def _relations(snap: Snapshot, rows: np.ndarray, valid: np.ndarray, knobs: Ranking) -> tuple[np.ndarray, np.ndarray]:
    """(copy, story) among each list's candidates: the relations ranking would compute per request."""
    col = {name: snap.col[name][rows] for name in STORY_COLUMNS}
    vectors = snap.vectors[rows]

    def pair_lexical(mask: np.ndarray) -> np.ndarray:
        at, i, j = np.nonzero(mask)
        out = np.zeros(mask.shape)
        out[at, i, j] = snap.lexical.pair_dots(rows[at, i], rows[at, j])
        return out

    copy, story = relations(col, vectors @ np.swapaxes(vectors, 1, 2), pair_lexical, knobs,
                            snap.headline_cosines(rows))
    both = valid[:, :, None] & valid[:, None, :]
    return copy & both, story & both


def mark_entered(lists: NeighbourLists, snap: Snapshot, new: np.ndarray) -> None:
    """Mark stale the lists that new rows belong in now: each new row's score to every row of its
    language is compared with that row's last candidate. Exact (a new row can sit in the top k of a
    row that is not among its own nearest), at the cost of one product over the language's vectors."""
    new = new[snap.col["alive"][new]]
    langs, every = snap.col["lang"][new], snap.col["lang"][: snap.n]
    for code in np.unique(langs):
        members, mine = np.flatnonzero(every == code), new[langs == code]
        if len(mine) * len(members) > EXACT_MARKING:
            lists.mark_entered(members, np.full(len(members), np.inf, dtype=np.float32))
        else:
            lists.mark_entered(members, np.max(snap.vectors[members] @ snap.vectors[mine].T, axis=1))


def _empty(k: int) -> Lists:
    words = np.zeros((0, k, -(-k // 64)), np.uint64)
    return Lists(np.zeros((0, k), np.int64), np.zeros(0, np.int64), np.zeros((0, k), np.float32), np.zeros((0, k)),
                 words, words)


class NeighbourLists:
    """The lists of one live index: made with its build for the build's rows, and on demand (then
    kept in memory) for rows added later or marked stale by a write."""

    def __init__(self, k: int, key: str, built: Lists | None = None) -> None:
        self.k, self.key = k, key
        self._built = built if built is not None else _empty(k)
        self._stale = np.zeros(len(self._built.count), dtype=bool)
        self._later: dict[int, Lists] = {}
        self._version = 0
        self._lock = threading.Lock()

    @property
    def version(self) -> int:
        """Read before making a list: a list made while a write marked lists stale is not kept."""
        return self._version

    def pool(self, snap: Snapshot, row: int) -> Pool | None:
        """The candidate pool of a stored row's block in its own language; None when stale or unmade."""
        lists = self._later.get(row)
        if lists is not None:
            return self.pool_of(snap, lists, 0)
        if row >= len(self._stale) or self._stale[row]:
            return None
        return self.pool_of(snap, self._built, row)

    def pool_of(self, snap: Snapshot, lists: Lists, at: int) -> Pool:
        """The pool of the `at`-th of some lists, with its copy and story bitsets."""
        n = int(lists.count[at])
        known = (_ints(lists.copy[at, :n]), _ints(lists.story[at, :n]))
        return make_pool(snap, lists.rows[at, :n], lists.dense[at, :n], lists.lexical[at, :n], known)

    def keep(self, row: int, lists: Lists, version: int) -> None:
        """Keep a list made on demand, unless a write has marked lists stale since `version`."""
        with self._lock:
            if version == self._version:
                self._later[row] = lists

    def mark_entered(self, rows: np.ndarray, scores: np.ndarray) -> None:
        """A new row scored `scores` against these rows (its nearest): the lists whose last candidate
        it beats are made again when asked. Call once the new rows are searchable, so that every
        list made from then on sees them."""
        rows, scores = rows[rows >= 0], scores[rows >= 0]
        with self._lock:
            hit = np.unique(rows[scores >= self._floor(rows)])
            if not len(hit):
                return
            self._version += 1
            for row in hit.tolist():
                self._later.pop(row, None)
            self._stale[hit[hit < len(self._stale)]] = True

    def _floor(self, rows: np.ndarray) -> np.ndarray:
        """The score a row must reach to enter each of these lists (inf where a row has no list)."""
        built = self._built
        floor = np.full(len(rows), np.inf)
        inside = rows < len(built.count)
        last = built.dense[rows[inside], self.k - 1] if self.k else np.zeros(0)
        floor[inside] = np.where(built.count[rows[inside]] >= self.k, last, -np.inf)
        for i in np.flatnonzero(~inside | np.isin(rows, list(self._later))).tolist():
            lists = self._later.get(int(rows[i]))
            if lists is not None:
                floor[i] = lists.dense[0, self.k - 1] if lists.count[0] >= self.k else -np.inf
        return floor

    def save(self, folder: Path) -> None:
        arrays = {f.name: getattr(self._built, f.name) for f in fields(Lists)}
        np.savez(Path(folder) / FILE, key=np.array(self.key), **arrays)

    @classmethod
    def load(cls, folder: Path, k: int, key: str) -> NeighbourLists | None:
        """The lists saved with a build, or None when there are none or they were made with other knobs."""
        path = Path(folder) / FILE
        if not path.exists():
            return None
        with np.load(path) as data:
            if str(data["key"]) != key:
                return None
            return cls(k, key, Lists(*(data[f.name] for f in fields(Lists))))
