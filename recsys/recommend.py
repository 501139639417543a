"""Ranking stage: pure functions from a FAISS candidate pool (arrays) to the related block.

Order of work: hard exclusions (the article itself in any language, `exclude` ids, a draft's
own text, the replay moment) -> filters (language, section, time window around the article)
-> relevance floor (a calibrated fused score: below it nothing is called related) -> ranking
key (fused dense + lexical score plus a closeness-in-time bonus; the key is the score shown)
-> one item per story (same-story items collapse into the best-ranked one; copies of one text
show the reader's language, then the newer) -> cut to `limit`. Filling a short block with the
newest items is the engine's job and is marked as such.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from recsys.errors import InvalidInput
from recsys.scores import DAY, blend, fuse, recency
from recsys.story_rule import STORY_COLUMNS, LexicalAt, relations

LANG_POLICIES = ("same", "prefer", "any")
FUSIONS = ("blend", "weighted", "rrf", "dense")
RELAX_ORDER = ("section", "max_age_days", "lang_policy")


@dataclass(frozen=True)
class Filters:
    """What the caller asked for."""

    limit: int
    lang_policy: str = "same"
    max_age_days: float | None = None
    section: str | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)
    published_before: float | None = None  # replay: only items published before this moment (never relaxed)
    fill: bool = True  # fill a short block with the newest items (marked "fill"), or return fewer

    def __post_init__(self) -> None:
        if self.lang_policy not in LANG_POLICIES:
            raise InvalidInput(f"lang_policy must be one of {', '.join(LANG_POLICIES)}, not {self.lang_policy!r}")
        if self.limit < 1:
            raise InvalidInput("limit must be at least 1")
        if self.max_age_days is not None and self.max_age_days <= 0:
            raise InvalidInput("max_age_days must be positive")


@dataclass(frozen=True)
class Ranking:
    """Knobs of the ranker: thresholds are on one model's score scale, so they are fitted per model."""

    copy_dense_threshold: float = 0.92  # dense cosine at which two items in two languages are one text (a translation)
    story_threshold: float = 0.45  # pair score (dense + story_lexical_weight * lexical) at which two items are one story
    story_dense_threshold: float = 2.0  # dense cosine at which two items are one story in any language (2 = off)
    story_window_days: float = float("inf")  # one story is told within this many days (undated items: no limit)
    story_threshold_in_window: float | None = None  # fused pair score for two dated items inside the window
    # (closeness in time is itself evidence of one story); None: story_threshold
    related_floor: float = 0.0  # fused score to the query below which an item is not related
    lexical_weight: float = 0.5
    story_lexical_weight: float | None = None  # lexical weight in the story pair score; None: lexical_weight
    story_title_threshold: float = 2.0  # headline-vector cosine at which two items are one story (2 = off)
    fusion: str = "blend"
    recency_weight: float = 0.05
    recency_half_life_days: float = 14.0
    collapse: bool = True


@dataclass(frozen=True)
class Query:
    """The article (saved or draft) that the block is for, in catalog terms."""

    row: int  # -1 for a draft
    lang: int  # catalog language code; -1 unknown
    anchor_ts: float  # the article's own time (now for drafts and undated articles)
    keys: tuple[int, ...] = ()  # url and original_url keys: every copy of the article shares one
    text_key: int = 0


PairSimilarities = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | LexicalAt, np.ndarray | None]]


@dataclass(frozen=True)
class Pool:
    """Candidates as aligned arrays: catalog rows, scores to the query, catalog columns, and a
    function giving (dense, lexical, headline) similarity matrices among chosen positions of the pool
    (headline None where the catalog has no headline vectors); when
    the pool comes from precomputed neighbour lists, also its copy and story relations as bitsets
    (bit c of copy[i]: position c is a copy of i; bit c of story[i]: c tells i's story)."""

    rows: np.ndarray
    dense: np.ndarray
    lexical: np.ndarray
    col: dict[str, np.ndarray]  # catalog columns taken at `rows`
    pairs: PairSimilarities
    relations: tuple[list[int], list[int]] | None = None


@dataclass(frozen=True)
class Ranked:
    rows: list[int]
    scores: list[float]
    collapsed: dict[int, tuple[int, ...]]  # shown row -> rows of its story that were not shown


def same_text(col: dict[str, np.ndarray], keys: tuple[int, ...]) -> np.ndarray:
    """Rows that are the article with these url keys, or a translation sharing its original."""
    out = np.zeros(len(col["url"]), dtype=bool)
    for key in keys:  # one or two keys: plain comparisons beat np.isin's sorting on a request's few rows
        if key:
            out |= (col["url"] == key) | (col["original"] == key)
    return out


def eligible(query: Query, pool: Pool, filters: Filters, excluded_rows: np.ndarray, lang_codes: tuple[int, ...] | None,
             section: int | None) -> np.ndarray:
    """Mask of candidates that may be shown: not the article in any language, not excluded, filters met."""
    col = pool.col
    ok = col["alive"] & (pool.rows != query.row)
    if len(excluded_rows):
        ok &= ~np.isin(pool.rows, excluded_rows)
    ok &= ~same_text(col, query.keys)
    if query.text_key:
        ok &= col["text"] != query.text_key
    if filters.published_before is not None:
        ok &= col["ts"] < filters.published_before  # NaN compares False: undated items have no replay time
    if lang_codes is not None:
        ok &= col["lang"] == lang_codes[0] if len(lang_codes) == 1 else np.isin(col["lang"], lang_codes)
    if section is not None:
        ok &= col["section"] == section
    if filters.max_age_days is not None:
        distance = np.abs(col["ts"] - query.anchor_ts)
        ok &= ~(distance > filters.max_age_days * DAY)  # undated items are not dropped by a window
    return ok


def collapse(order: list[int], pool: Pool, knobs: Ranking, reader_lang: int, limit: int) -> list[tuple[int, list[int]]]:
    """Groups (shown position, other positions) in rank order, one per story, at most `limit`.

    An item joins a group when it tells the same story as the group's leader (its best-ranked
    item: chaining through other members would let one loose match merge two stories). The
    group shows its leader, unless the leader has copies: then the copy in the reader's
    language, then the newer one. Pairs are compared a chunk at a time, and only until the
    block is full: a deep pool costs no more than a shallow one.
    """
    if pool.relations is not None:
        return _collapse_known(order, pool, reader_lang, limit)
    leaders: list[int] = []
    members: dict[int, list[int]] = {}
    copies: dict[int, list[int]] = {}
    chunk, start = max(4 * limit, 40), 0
    while start < len(order) and len(leaders) < limit:
        batch = order[start : start + chunk]
        start += chunk
        positions = np.array(leaders + batch)
        dense, lexical, title = pool.pairs(positions)
        copy, story = relations({k: pool.col[k][positions] for k in STORY_COLUMNS}, dense, lexical, knobs, title)
        known = len(leaders)
        for lead, joined in _leaders_of_batch(story, known, len(batch), limit):
            leader = int(positions[lead])
            if leader not in members:
                leaders.append(leader)
                members[leader], copies[leader] = [], []
            for j in joined:  # batch items whose best-ranked same-story leader this is, in rank order
                members[leader].append(batch[j])
                if copy[known + j, lead]:
                    copies[leader].append(batch[j])
    return [_shown_copy(lead, members[lead], copies[lead], pool, reader_lang) for lead in leaders]


def _collapse_known(order: list[int], pool: Pool, reader_lang: int, limit: int) -> list[tuple[int, list[int]]]:
    """`collapse` over a pool whose relations are known bitsets: each item in rank order that no
    leader claimed leads, and claims the unclaimed items of its story (all of them ranked later)."""
    copy, story = pool.relations or ([], [])
    free = 0
    for p in order:
        free |= 1 << p
    rank_of: dict[int, int] = {}
    groups = []
    for p in order:
        if free >> p & 1:
            free ^= 1 << p
            claim = story[p] & free
            free &= ~claim
            joined = _ones(claim)
            if len(joined) > 1:  # in rank order, as members are listed
                rank_of = rank_of or {q: i for i, q in enumerate(order)}
                joined.sort(key=rank_of.__getitem__)
            copies = [m for m in joined if copy[p] >> m & 1]
            groups.append(_shown_copy(p, joined, copies, pool, reader_lang) if copies else (p, joined))
            if len(groups) == limit:
                break
    return groups


def _leaders_of_batch(story: np.ndarray, known: int, size: int, limit: int) -> Iterator[tuple[int, list[int]]]:
    """(leader's local position, batch offsets that join it) for the leaders already `known`
    (positions 0..known-1) and the new ones the batch brings, in rank order, until `limit` leaders.

    Each leader claims the later batch items of its story that no better-ranked leader claimed:
    the same result as comparing every item with every leader in turn. A batch is a few dozen
    items, so the sets are Python ints (bit j: batch item j), not arrays."""
    joins = _bits(story[known:, known:])  # bit c of joins[j]: batch item c tells batch item j's story
    claims = _bits(story[known:, :known].T) if known else []  # bit j: batch item j tells this leader's story
    free = (1 << size) - 1  # batch items no leader has claimed yet
    for lead in range(known):
        claim = claims[lead] & free
        free &= ~claim
        yield lead, _ones(claim)
    count = known
    while count < limit and free:
        first = free & -free  # the best-ranked unclaimed item leads a new story
        free ^= first
        j = first.bit_length() - 1
        later = joins[j] & free
        free &= ~later
        count += 1
        yield known + j, _ones(later)


def _bits(matrix: np.ndarray) -> list[int]:
    """Each row of a boolean matrix as an int whose bit c is column c."""
    packed = np.packbits(matrix, axis=1, bitorder="little")
    width, data = packed.shape[1], packed.tobytes()
    return [int.from_bytes(data[i * width : (i + 1) * width], "little") for i in range(packed.shape[0])]


def _ones(mask: int) -> list[int]:
    """The set bits of an int, lowest first."""
    out = []
    while mask:
        low = mask & -mask
        out.append(low.bit_length() - 1)
        mask ^= low
    return out


def _shown_copy(lead: int, members: list[int], copies: list[int], pool: Pool, reader_lang: int) -> tuple[int, list[int]]:
    """(the group's shown position, the others): the leader, or its copy in the reader's language, then the newer."""
    if not copies:
        return lead, members
    lang, ts = pool.col["lang"], pool.col["ts"]
    shown = min([lead, *copies], key=lambda c: (lang[c] != reader_lang, np.inf if np.isnan(ts[c]) else -ts[c]))
    return shown, [m for m in [lead, *members] if m != shown]


def rank(query: Query, pool: Pool, filters: Filters, knobs: Ranking, ok: np.ndarray) -> Ranked:
    """The related items of the block (at most `limit`), from the eligible candidates of the pool."""
    related = ok & (blend(pool.dense, pool.lexical, knobs.lexical_weight) >= knobs.related_floor)
    idx = np.flatnonzero(related)
    if not len(idx):
        return Ranked([], [], {})
    keys = fuse(pool.dense[idx], pool.lexical[idx], knobs) + recency(pool.col["ts"][idx], query.anchor_ts, knobs)
    other_lang = (pool.col["lang"][idx] != query.lang) if filters.lang_policy == "prefer" else np.zeros(len(idx), bool)
    order_local = np.lexsort((pool.rows[idx], -keys, other_lang))
    key_of = dict(zip(idx.tolist(), keys.tolist()))
    order = idx[order_local].tolist()
    if knobs.collapse:
        groups = collapse(order, pool, knobs, query.lang, filters.limit)
    else:
        groups = [(i, []) for i in order[: filters.limit]]
    rows = [int(pool.rows[g]) for g, _ in groups]
    # a copy standing for its leader shows the leader's key: the score is what ranked the slot
    scores = [max(key_of[g], *(key_of[m] for m in rest)) if rest else key_of[g] for g, rest in groups]
    collapsed = {int(pool.rows[g]): tuple(int(pool.rows[m]) for m in rest) for g, rest in groups if rest}
    return Ranked(rows, scores, collapsed)
