"""Ranking stage: pure functions from FAISS candidates to the related block.

Order of work: hard exclusions (the article itself, `exclude` ids) -> filters (language,
age, section) -> rank (dense plus lexical similarity, plus a small closeness-in-time boost)
-> collapse items of one story to one -> cut to `limit`. When fewer than `limit` items
survive, filters are relaxed one at a time in RELAX_ORDER and the response says which.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from recsys.errors import InvalidInput

LANG_POLICIES = ("same", "any")
RELAX_ORDER = ("section", "max_age_days", "lang_policy")
DAY = 86_400.0


@dataclass(frozen=True)
class Candidate:
    """One article that FAISS returned, with what ranking needs to know about it."""

    id: str
    score: float
    vector: np.ndarray
    lang: str
    published_ts: float | None = None
    section: str | None = None
    url: str | None = None
    original_url: str | None = None
    title: str = ""
    lexical: float = 0.0


@dataclass(frozen=True)
class Query:
    """The article (saved or draft) that the block is for."""

    id: str | None
    lang: str | None
    published_ts: float | None = None
    url: str | None = None
    original_url: str | None = None


@dataclass(frozen=True)
class Filters:
    """What the caller asked for."""

    limit: int
    lang_policy: str = "same"
    max_age_days: float | None = None
    section: str | None = None
    exclude: frozenset[str] = field(default_factory=frozenset)
    published_before: float | None = None  # replay: only items published before this moment (never relaxed)

    def __post_init__(self) -> None:
        if self.lang_policy not in LANG_POLICIES:
            raise InvalidInput(f"lang_policy must be one of {', '.join(LANG_POLICIES)}, not {self.lang_policy!r}")
        if self.limit < 1:
            raise InvalidInput("limit must be at least 1")
        if self.max_age_days is not None and self.max_age_days <= 0:
            raise InvalidInput("max_age_days must be positive")


@dataclass(frozen=True)
class Ranking:
    """Tuning knobs of the ranker (from Settings)."""

    dedup_threshold: float = 0.92
    dedup_lexical_threshold: float = 0.15
    dedup_dense_story_threshold: float = 0.55
    copy_lexical_threshold: float = 0.6
    lexical_weight: float = 0.5
    recency_weight: float = 0.05
    recency_half_life_days: float = 14.0


@dataclass(frozen=True)
class Ranked:
    items: list[Candidate]
    relaxed: list[str]


def _norm_title(title: str) -> str:
    title = unicodedata.normalize("NFKC", title).casefold()
    return re.sub(r"\W+", " ", title).strip()


def is_self(query: Query, cand: Candidate) -> bool:
    return cand.id == query.id or (query.url is not None and cand.url == query.url)


def passes(query: Query, cand: Candidate, filters: Filters, now_ts: float) -> bool:
    """Whether a candidate meets the (possibly relaxed) filters."""
    if filters.lang_policy == "same" and query.lang and cand.lang != query.lang:
        return False
    if filters.section is not None and (cand.section or "").casefold() != filters.section.casefold():
        return False
    if filters.max_age_days is not None:
        if cand.published_ts is None or now_ts - cand.published_ts > filters.max_age_days * DAY:
            return False
    return True


def blend(dense: float, lexical: float, knobs: Ranking) -> float:
    """Dense cosine plus a weighted lexical bonus, scaled back to the cosine range."""
    return (dense + knobs.lexical_weight * lexical) / (1.0 + knobs.lexical_weight)


def relevance(cand: Candidate, knobs: Ranking) -> float:
    return blend(cand.score, cand.lexical, knobs)


def rank_score(query: Query, cand: Candidate, now_ts: float, knobs: Ranking) -> float:
    """Relevance plus a boost that halves every half-life of distance in time from the query."""
    if knobs.recency_weight == 0 or cand.published_ts is None:
        return relevance(cand, knobs)
    anchor = query.published_ts if query.published_ts is not None else now_ts
    distance_days = abs(anchor - cand.published_ts) / DAY
    return relevance(cand, knobs) + knobs.recency_weight * 0.5 ** (distance_days / knobs.recency_half_life_days)


DIFFERENT, SAME_STORY, COPY = 0, 1, 2


def story_relation(a: Candidate, b: Candidate, dense: float, lexical: float, knobs: Ranking,
                   same_title: bool | None = None) -> int:
    """COPY for one text told twice (a translation link, the same headline, near-identical vectors or
    n-grams); SAME_STORY for shared wording or close meaning (any language); else DIFFERENT."""
    links_a = {a.url, a.original_url} - {None}
    links_b = {b.url, b.original_url} - {None}
    if same_title is None:
        same_title = bool(a.title) and _norm_title(a.title) == _norm_title(b.title)
    if links_a & links_b or same_title:
        return COPY
    if dense >= knobs.dedup_threshold or lexical >= knobs.copy_lexical_threshold:
        return COPY
    if lexical >= knobs.dedup_lexical_threshold or dense >= knobs.dedup_dense_story_threshold:
        return SAME_STORY
    return DIFFERENT


Relation = Callable[[Candidate, Candidate], int]
PairSims = Any  # anything indexable as [i, j]: an array, or lexical.LazyGram


def collapse(ordered: Sequence[Candidate], reader_lang: str | None, relation: Relation) -> list[Candidate]:
    """One item per story, in rank order.

    An item joins a group when it tells the same story as the group's leader (its best-ranked
    item; chaining through other members would let one loose match merge two stories). The
    group shows its leader, unless the leader has copies: then the copy in the reader's language,
    then the newer one, stands for it.
    """
    groups: list[list[Candidate]] = []
    for cand in ordered:
        for group in groups:
            if relation(cand, group[0]) != DIFFERENT:
                group.append(cand)
                break
        else:
            groups.append([cand])

    def preference(c: Candidate) -> tuple[bool, float, str]:
        return (c.lang != reader_lang, -(c.published_ts or float("-inf")), c.id)

    return [min([g[0], *(c for c in g[1:] if relation(c, g[0]) == COPY)], key=preference) for g in groups]


def relation_over(candidates: Sequence[Candidate], knobs: Ranking, lexical_pairs: PairSims | None) -> Relation:
    """story_relation over precomputed pairwise similarities of the candidate pool."""
    pos = {c.id: i for i, c in enumerate(candidates)}
    matrix = np.stack([c.vector for c in candidates]) if candidates else np.zeros((0, 1))
    dense = matrix @ matrix.T
    lexical = lexical_pairs if lexical_pairs is not None else np.zeros_like(dense)
    titles = [_norm_title(c.title) for c in candidates]

    def relation(a: Candidate, b: Candidate) -> int:
        i, j = pos[a.id], pos[b.id]
        same_title = bool(titles[i]) and titles[i] == titles[j]
        return story_relation(a, b, float(dense[i, j]), float(lexical[i, j]), knobs, same_title)

    return relation


def _select(query: Query, pool: Sequence[Candidate], filters: Filters, now_ts: float, knobs: Ranking,
            relation: Relation) -> list[Candidate]:
    kept = [c for c in pool if passes(query, c, filters, now_ts)]
    kept.sort(key=lambda c: (-rank_score(query, c, now_ts, knobs), -(c.published_ts or 0.0), c.id))
    return collapse(kept, query.lang, relation)[: filters.limit]


def _before(cand: Candidate, moment: float | None) -> bool:
    return moment is None or (cand.published_ts is not None and cand.published_ts < moment)


def _relax(filters: Filters, name: str) -> Filters:
    return replace(filters, **{name: "any" if name == "lang_policy" else None})


def rank(
    query: Query,
    candidates: Sequence[Candidate],
    filters: Filters,
    now_ts: float,
    knobs: Ranking = Ranking(),
    allow_relax: bool = True,
    lexical_pairs: PairSims | None = None,
) -> Ranked:
    """The related block for `query` from `candidates`, relaxing filters only to fill `limit`.

    `lexical_pairs[i, j]` is the lexical similarity of candidates i and j (None: dense only).
    """
    relation = relation_over(candidates, knobs, lexical_pairs)
    pool = [c for c in candidates if not is_self(query, c) and c.id not in filters.exclude
            and _before(c, filters.published_before)]
    items = _select(query, pool, filters, now_ts, knobs, relation)
    relaxed: list[str] = []
    for name in RELAX_ORDER if allow_relax else ():
        if len(items) >= filters.limit:
            break
        if getattr(filters, name) in (None, "any"):
            continue
        filters = _relax(filters, name)
        relaxed.append(name)
        items = _select(query, pool, filters, now_ts, knobs, relation)
    return Ranked(items, relaxed)
