"""Ranking stage: pure functions from FAISS candidates to the related block.

Order of work: hard exclusions (the article itself, `exclude` ids) -> filters (language,
age, section) -> rank (similarity plus a small closeness-in-time boost) -> collapse
near-duplicates to one item per story -> cut to `limit`. When fewer than `limit` items
survive, filters are relaxed one at a time in RELAX_ORDER and the response says which.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

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

    dedup_threshold: float = 0.9
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


def rank_score(query: Query, cand: Candidate, now_ts: float, knobs: Ranking) -> float:
    """Similarity plus a boost that halves every half-life of distance in time from the query."""
    if knobs.recency_weight == 0 or cand.published_ts is None:
        return cand.score
    anchor = query.published_ts if query.published_ts is not None else now_ts
    distance_days = abs(anchor - cand.published_ts) / DAY
    return cand.score + knobs.recency_weight * 0.5 ** (distance_days / knobs.recency_half_life_days)


def same_story(a: Candidate, b: Candidate, threshold: float) -> bool:
    """Two items tell one story: a translation link, the same headline, or near-identical vectors."""
    links_a = {a.url, a.original_url} - {None}
    links_b = {b.url, b.original_url} - {None}
    if links_a & links_b:
        return True
    if a.title and _norm_title(a.title) == _norm_title(b.title):
        return True
    return float(np.dot(a.vector, b.vector)) >= threshold


def collapse(ordered: Sequence[Candidate], reader_lang: str | None, threshold: float) -> list[Candidate]:
    """One item per story, groups kept in rank order; inside a group prefer the reader's language, then the newer."""
    groups: list[list[Candidate]] = []
    for cand in ordered:
        for group in groups:
            if any(same_story(cand, member, threshold) for member in group):
                group.append(cand)
                break
        else:
            groups.append([cand])

    def preference(c: Candidate) -> tuple[bool, float, str]:
        return (c.lang != reader_lang, -(c.published_ts or float("-inf")), c.id)

    return [min(group, key=preference) for group in groups]


def _select(query: Query, pool: Sequence[Candidate], filters: Filters, now_ts: float, knobs: Ranking) -> list[Candidate]:
    kept = [c for c in pool if passes(query, c, filters, now_ts)]
    kept.sort(key=lambda c: (-rank_score(query, c, now_ts, knobs), -(c.published_ts or 0.0), c.id))
    return collapse(kept, query.lang, knobs.dedup_threshold)[: filters.limit]


def _relax(filters: Filters, name: str) -> Filters:
    return replace(filters, **{name: "any" if name == "lang_policy" else None})


def rank(
    query: Query,
    candidates: Sequence[Candidate],
    filters: Filters,
    now_ts: float,
    knobs: Ranking = Ranking(),
    allow_relax: bool = True,
) -> Ranked:
    """The related block for `query` from `candidates`, relaxing filters only to fill `limit`."""
    pool = [c for c in candidates if not is_self(query, c) and c.id not in filters.exclude]
    items = _select(query, pool, filters, now_ts, knobs)
    relaxed: list[str] = []
    for name in RELAX_ORDER if allow_relax else ():
        if len(items) >= filters.limit:
            break
        if getattr(filters, name) in (None, "any"):
            continue
        filters = _relax(filters, name)
        relaxed.append(name)
        items = _select(query, pool, filters, now_ts, knobs)
    return Ranked(items, relaxed)
