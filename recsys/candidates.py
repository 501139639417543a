"""Candidate stage: FAISS search inside the language filter, the pool arrays ranking reads, and
the newest-first fill for blocks that relevance cannot fill.

Everything here reads the in-memory catalog (a snapshot); nothing touches the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from functools import cached_property

import numpy as np
from scipy import sparse

from recsys import lexical
from recsys.catalog import Catalog, Snapshot
from recsys.index import LiveIndex
from recsys.neighbours import make_pool
from recsys.recommend import RELAX_ORDER, Filters, Pool, Query, Ranking, same_text
from recsys.scores import DAY, blend
from recsys.story_rule import STORY_COLUMNS, relations


class QueryVectors:
    """The query's dense vector and normalised lexical row; the row is made on first use (a block
    ranked from a neighbour list never needs it)."""

    def __init__(self, dense: np.ndarray, lexical_of: Callable[[], sparse.csr_matrix | lexical.Rows]) -> None:
        self.dense, self._lexical_of = dense, lexical_of

    @cached_property
    def lexical(self) -> sparse.csr_matrix | lexical.Rows:
        return self._lexical_of()


def lang_codes(query: Query, policy: str) -> tuple[int, ...] | None:
    """Languages a related item may be in (None: any)."""
    return (query.lang,) if policy == "same" and query.lang != -1 else None


def search(live: LiveIndex, vectors: QueryVectors, query: Query, policy: str, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, dense scores): within the reader's language for `same`, both ways for `prefer`."""
    if policy == "any" or query.lang == -1:
        return live.search(vectors.dense, k)
    rows, scores = live.search(vectors.dense, k, lang=query.lang)
    if policy == "prefer":
        more_rows, more_scores = live.search(vectors.dense, k)
        fresh = ~np.isin(more_rows, rows)
        rows, scores = np.concatenate([rows, more_rows[fresh]]), np.concatenate([scores, more_scores[fresh]])
    return rows, scores


def pool(snap: Snapshot, rows: np.ndarray, dense: np.ndarray, vectors: QueryVectors, earlier: Pool | None = None) -> Pool:
    """Candidate arrays: lexical score to the query now (reused from an `earlier`, shallower pool of
    the same query), pairwise similarities when ranking asks."""
    known = rows < snap.n  # the index may already hold rows added after this snapshot
    rows, dense = rows[known], dense[known]
    lex = np.zeros(len(rows))
    fresh = np.ones(len(rows), dtype=bool)
    if earlier is not None and len(earlier.rows) and len(rows):
        order = np.argsort(earlier.rows)
        at = np.minimum(np.searchsorted(earlier.rows[order], rows), len(order) - 1)
        fresh = earlier.rows[order][at] != rows
        lex[~fresh] = earlier.lexical[order][at[~fresh]]
    if fresh.any():
        lex[fresh] = snap.lexical.dot(rows[fresh], vectors.lexical)
    return make_pool(snap, rows, dense, lex)


FILL_SCAN_ROWS = 8192  # rows one fill step examines at most (after narrowing to the rows its language,
# section and time window allow, only dead rows, copies and taken rows are passed over: a bound that
# an unmatched filter, which once scanned every row of the catalog, cannot exceed)


class NewestOrder:
    """Catalog rows newest first (undated last), overall and per language and section, with their
    times; sorted again only when rows were added. A fill step then reads only the rows its
    language, section and time window allow: an unmatched filter costs a lookup, not a scan."""

    def __init__(self) -> None:
        self._orders: dict[tuple[int | None, int | None], tuple[np.ndarray, np.ndarray]] = {}
        self._n = 0
        self._lock = threading.Lock()

    def of(self, snap: Snapshot, lang: int | None = None, section: int | None = None,
           since: float = -np.inf, until: float = np.inf, undated: bool = True) -> np.ndarray:
        """Rows of this language and section (None: any), newest first: the dated ones with
        since <= ts <= until, then (if `undated`) the undated ones; at most FILL_SCAN_ROWS of each
        when bounds are given. A code no row has (-2) has no rows."""
        if lang == -2 or section == -2:
            return np.zeros(0, np.int64)
        rows, newest_ts = self._order(snap, lang, section)
        if since == -np.inf and until == np.inf and undated:
            return rows
        dated = len(newest_ts)  # -ts of the dated rows, ascending
        first = int(np.searchsorted(newest_ts, -until, "left"))
        last = int(np.searchsorted(newest_ts, -since, "right"))
        parts = [rows[first : min(last, first + FILL_SCAN_ROWS)]]
        if undated:
            parts.append(rows[dated : dated + FILL_SCAN_ROWS])
        return np.concatenate(parts)

    def _order(self, snap: Snapshot, lang: int | None, section: int | None) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if self._n != snap.n:
                ts = snap.col["ts"][: snap.n]
                # dated before undated (whatever their sign), then newest first, then by row
                everything = np.lexsort((np.arange(snap.n), -np.nan_to_num(ts, nan=0.0), np.isnan(ts)))
                self._orders = {(None, None): self._with_times(snap, everything)}
                self._n = snap.n
            if (lang, None) not in self._orders:
                rows = self._orders[(None, None)][0]
                self._orders[(lang, None)] = self._with_times(snap, rows[snap.col["lang"][rows] == lang])
            if (lang, section) not in self._orders:
                rows = self._orders[(lang, None)][0]
                self._orders[(lang, section)] = self._with_times(snap, rows[snap.col["section"][rows] == section])
            return self._orders[(lang, section)]

    @staticmethod
    def _with_times(snap: Snapshot, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ts = snap.col["ts"][rows]
        return rows, -ts[: int(np.count_nonzero(~np.isnan(ts)))]


def fill_rows(snap: Snapshot, order: np.ndarray, query: Query, filters: Filters, taken: np.ndarray,
              need: int, section: int | None, policy: str) -> list[int]:
    """The newest rows that meet the filters and are not the article, excluded or already taken,
    among the first FILL_SCAN_ROWS of `order`."""
    col, out = snap.col, []
    langs = lang_codes(query, policy)
    order = order[:FILL_SCAN_ROWS]
    for start in range(0, len(order), 512):
        rows = order[start : start + 512]
        ok = col["alive"][rows] & (rows != query.row) & ~np.isin(rows, taken)
        ok &= ~same_text({"url": col["url"][rows], "original": col["original"][rows]}, query.keys)
        if filters.published_before is not None:
            ok &= col["ts"][rows] < filters.published_before
        if langs is not None:
            ok &= np.isin(col["lang"][rows], langs)
        if section is not None:
            ok &= col["section"][rows] == section
        if filters.max_age_days is not None:
            ok &= ~(np.abs(col["ts"][rows] - query.anchor_ts) > filters.max_age_days * DAY)
        out += rows[ok][: need - len(out)].tolist()
        if len(out) >= need:
            break
    return out


def time_bounds(query: Query, filters: Filters) -> tuple[float, float, bool]:
    """(since, until, undated too): the rows a fill step may read, a superset of what fill_rows keeps
    (it applies the exact tests: the margin covers rounding in |ts - anchor|)."""
    since, until = -np.inf, np.inf
    if filters.max_age_days is not None:
        window = filters.max_age_days * DAY
        margin = 1.0 + 1e-9 * (abs(query.anchor_ts) + window)
        since, until = query.anchor_ts - window - margin, query.anchor_ts + window + margin
    if filters.published_before is not None:  # replay: undated items have no replay time
        until = min(until, filters.published_before)
    return since, until, filters.published_before is None


def relevance_of(snap: Snapshot, rows: list[int], vectors: QueryVectors, knobs: Ranking) -> list[float]:
    """The fused relevance of rows to the query (the score shown for fill items)."""
    if not rows:
        return []
    picked = np.array(rows)
    dense = snap.vectors[picked] @ vectors.dense
    lex = snap.lexical.dot(picked, vectors.lexical)
    return [float(x) for x in blend(dense, lex, knobs.lexical_weight)]


def distinct_stories(snap: Snapshot, shown: list[int], picked: list[int], need: int, knobs: Ranking) -> list[int]:
    """Of `picked` (in order), up to `need` rows that tell no story already shown or picked before them."""
    rows = np.array(shown + picked, dtype=np.int64)
    if not len(rows):
        return []
    vec = snap.vectors[rows]
    col = {name: snap.col[name][rows] for name in STORY_COLUMNS}
    lex_rows = snap.lexical.take(rows)
    _, story = relations(col, vec @ vec.T, lambda mask: lexical.gram_at(lex_rows, mask), knobs, snap.headline_cosines(rows))
    kept = list(range(len(shown)))
    for i in range(len(shown), len(rows)):
        if len(kept) - len(shown) >= need:
            break
        if not story[i, kept].any():
            kept.append(i)
    return [int(rows[i]) for i in kept[len(shown):]]


def fill(catalog: Catalog, snap: Snapshot, newest: NewestOrder, query: Query, filters: Filters, taken: np.ndarray,
         need: int, shown: list[int], knobs: Ranking) -> tuple[list[int], list[str]]:
    """Newest items for the empty slots, none of a story already in the block: the article's own
    section, then the site, then the caller's filters relaxed one at a time (named in `relaxed`)."""
    own_section = int(snap.col["section"][query.row]) if query.row >= 0 else None
    section = catalog.code_of("section", filters.section) if filters.section else own_section
    steps: list[tuple[Filters, int | None, str | None]] = [(filters, section, None)]
    if filters.section is None and section is not None:
        steps.append((filters, None, None))
    for name in RELAX_ORDER:
        current = steps[-1][0]
        if getattr(current, name) not in (None, "any"):
            steps.append((replace(current, **{name: "any" if name == "lang_policy" else None}), None, name))
    out: list[int] = []
    relaxed: list[str] = []
    for step_filters, step_section, name in steps:
        if len(out) >= need:
            break
        if name is not None:
            relaxed.append(name)
        langs = lang_codes(query, step_filters.lang_policy)
        order = newest.of(snap, langs[0] if langs else None, step_section, *time_bounds(query, step_filters))
        out += _fill_step(snap, order, query, step_filters, step_section, taken, shown, out, need, knobs)
    return out, relaxed


def _fill_step(snap: Snapshot, order: np.ndarray, query: Query, filters: Filters, section: int | None,
               taken: np.ndarray, shown: list[int], out: list[int], need: int, knobs: Ranking) -> list[int]:
    """Newest rows for one relaxation step, of stories not yet in the block; looks further while
    the newest ones keep repeating a story (up to 256 rows)."""
    want = 3 * (need - len(out))
    while True:
        chosen = np.concatenate([np.array(out, dtype=np.int64), taken])
        picked = fill_rows(snap, order, query, filters, chosen, want, section, filters.lang_policy)
        kept = distinct_stories(snap, shown + out, picked, need - len(out), knobs)
        if len(kept) >= need - len(out) or len(picked) < want or want >= 256:
            return kept
        want *= 4
