"""Block stage: a query's candidates -> its ranked, collapsed related items -> newest-first fill.

Order of work: the first candidates (a stored article's precomputed neighbour list when the
request is the one lists are made for, else a FAISS search within the language filter) -> hard
filters -> ranking and one item per story (`recommend.rank`) -> a deeper search, reusing the
lexical scores already computed, only while the block is short and the deepest candidate still
clears the relevance floor -> the newest items for the empty slots, marked "fill". The result is
in catalog rows; the engine reads the final items from the store.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recsys import candidates as cand
from recsys import neighbours as nbr
from recsys.catalog import Snapshot
from recsys.index import LiveIndex
from recsys.recommend import Filters, Pool, Query, Ranking, eligible, rank
from recsys.scores import blend


@dataclass(frozen=True)
class Depth:
    """How many candidates the first search asks for, and the deepest a short block may go."""

    first: int
    deepest: int


@dataclass(frozen=True)
class Block:
    """A block in catalog rows, before its items are read from the store."""

    rows: list[int]
    scores: list[float]
    reasons: list[str]
    collapsed: dict[int, tuple[int, ...]]
    relaxed: list[str]
    candidates_seen: int


def assemble(live: LiveIndex, newest: cand.NewestOrder, knobs: Ranking, depth: Depth, vectors: cand.QueryVectors,
             query: Query, filters: Filters) -> Block:
    """The block of one query over one live index."""
    snap = live.catalog.snapshot()
    excluded = np.array([r for r in map(live.catalog.row_of_id.get, filters.exclude) if r is not None])
    section = None if filters.section is None else live.catalog.code_of("section", filters.section)
    k = max(depth.first, 4 * (filters.limit + len(filters.exclude) + 1))
    pool, found = first_pool(live, snap, knobs, vectors, query, filters.lang_policy, k)
    while True:
        ok = eligible(query, pool, filters, excluded, cand.lang_codes(query, filters.lang_policy), section)
        ranked = rank(query, pool, filters, knobs, ok)
        # a section no row has (-2) matches no deeper candidate either: searching on would cost
        # up to three more searches per request for nothing, whatever section name is sent
        deeper = found >= k and k < depth.deepest and len(ranked.rows) < filters.limit and section != -2
        if not deeper or not _more_above_floor(pool, knobs):
            break
        k = min(4 * k, depth.deepest)
        rows, dense = cand.search(live, vectors, query, filters.lang_policy, k)
        pool, found = cand.pool(snap, rows, dense, vectors, earlier=pool), len(rows)  # reuses lexical scores
    reasons = ["related"] * len(ranked.rows)
    rows, scores, relaxed = list(ranked.rows), list(ranked.scores), []
    if filters.fill and len(rows) < filters.limit:
        taken = np.array(rows + excluded.tolist(), dtype=np.int64)
        extra, relaxed = cand.fill(live.catalog, snap, newest, query, filters, taken, filters.limit - len(rows), rows,
                                   knobs)
        rows += extra
        scores += cand.relevance_of(snap, extra, vectors, knobs)
        reasons += ["fill"] * len(extra)
    return Block(rows, scores, reasons, ranked.collapsed, relaxed, len(pool.rows))


def first_pool(live: LiveIndex, snap: Snapshot, knobs: Ranking, vectors: cand.QueryVectors, query: Query,
               policy: str, k: int) -> tuple[Pool, int]:
    """(candidates, how many the search found): a stored article's neighbour list when the request
    is the one lists are made for (its own language, the first k), else a FAISS search."""
    lists = live.neighbours
    if query.row < 0 or policy != "same" or k != lists.k:
        rows, dense = cand.search(live, vectors, query, policy, k)
        return cand.pool(snap, rows, dense, vectors), len(rows)
    pool = lists.pool(snap, query.row)
    if pool is None:  # a new row, or one a write marked stale: made now, kept for the next request
        version = lists.version
        made = nbr.compute(snap, np.array([query.row]), live.search_many, knobs, k)
        lists.keep(query.row, made, version)
        pool = lists.pool_of(snap, made, 0)
    return pool, len(pool.rows)


def _more_above_floor(pool: Pool, knobs: Ranking) -> bool:
    """Whether the deepest candidate still clears the floor: only then can a deeper search add items."""
    scores = blend(pool.dense, pool.lexical, knobs.lexical_weight)
    return bool(len(scores)) and float(scores[-1]) >= knobs.related_floor
