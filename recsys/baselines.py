"""The systems `recsys evaluate` compares: baselines (random, newest, TF-IDF, BM25) and the engine.

Every system answers a query article with what a reader would see: the shown ids in order,
plus, for the engine, which lower-ranked items of one story were collapsed into a shown one
and why each item is there ("related" or "fill").
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from recsys import lexical
from recsys.article import Article
from recsys.recommend import Filters

WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Shown:
    """One answer: shown ids in order, what collapsed into each, and each item's reason (None: unknown)."""

    ids: list[str]
    collapsed: dict[str, tuple[str, ...]] = field(default_factory=dict)
    reasons: list[str] | None = None


Ranker = Callable[[Article], Shown]
Similarity = Callable[[str, str], float]


@dataclass(frozen=True)
class System:
    name: str
    rank: Ranker
    similarity: Similarity | None = None


def _eligible(query: Article, pool: Sequence[Article], as_of: bool) -> list[Article]:
    if not as_of:
        return [a for a in pool if a.id != query.id]
    moment = query.published_ts
    return [a for a in pool if a.id != query.id and moment is not None and a.published_ts is not None
            and a.published_ts < moment]


def random_system(articles: Sequence[Article], k: int, seed: int, as_of: bool) -> System:
    def rank(query: Article) -> Shown:
        rng = random.Random(f"{seed}:{query.id}")
        pool = [a.id for a in _eligible(query, articles, as_of)]
        return Shown(rng.sample(pool, min(k, len(pool))))

    return System("random", rank)


def newest_system(articles: Sequence[Article], k: int, as_of: bool) -> System:
    """What a site shows today: the newest items of the query's section (or of all, without sections)."""
    def rank(query: Article) -> Shown:
        pool = [a for a in _eligible(query, articles, as_of) if query.section is None or a.section == query.section]
        pool.sort(key=lambda a: (-(a.published_ts or float("-inf")), a.id))
        return Shown([a.id for a in pool[:k]])

    return System("newest_in_section", rank)


def _top(articles: Sequence[Article], scores: np.ndarray, query: Article, k: int, as_of: bool) -> Shown:
    """The k best-scored articles, without the query itself and, replaying, without later ones."""
    scores = np.asarray(scores, dtype=float).copy()
    position = {a.id: i for i, a in enumerate(articles)}
    scores[position[query.id]] = -np.inf
    if as_of:
        published = np.array([a.published_ts if a.published_ts is not None else np.nan for a in articles])
        moment = query.published_ts if query.published_ts is not None else -np.inf
        scores[~(published < moment)] = -np.inf
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]
    return Shown([articles[i].id for i in order if np.isfinite(scores[i])])


def tfidf_system(articles: Sequence[Article], k: int, as_of: bool, text_of: Callable[[Article], str]) -> System:
    """Character n-gram TF-IDF over title and lead, like Elasticsearch's more_like_this."""
    stats = lexical.LexicalStats()
    texts = [text_of(a) for a in articles]
    stats.add(texts)
    matrix = lexical.vectors(texts, stats.idf)
    position = {a.id: i for i, a in enumerate(articles)}

    def rank(query: Article) -> Shown:
        return _top(articles, (matrix @ matrix[position[query.id]].T).toarray().ravel(), query, k, as_of)

    def similarity(a: str, b: str) -> float:
        return float((matrix[position[a]] @ matrix[position[b]].T).toarray()[0, 0])

    return System("tfidf", rank, similarity)


def words(text: str) -> list[str]:
    """Lowercased Unicode word tokens (any script), no stemming."""
    return WORD.findall(text.casefold())


def bm25_system(articles: Sequence[Article], k: int, as_of: bool, text_of: Callable[[Article], str]) -> System:
    """Okapi BM25 (bm25s) over the words of title and lead."""
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    tokens = [words(text_of(a)) for a in articles]
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    position = {a.id: i for i, a in enumerate(articles)}

    def scores(query_id: str) -> np.ndarray:
        query = tokens[position[query_id]]
        return retriever.get_scores(query) if query else np.zeros(len(articles))

    def rank(query: Article) -> Shown:
        return _top(articles, scores(query.id), query, k, as_of)

    def similarity(a: str, b: str) -> float:
        return float(scores(a)[position[b]])

    return System("bm25", rank, similarity)


def engine_system(name: str, engine, k: int, lang_policy: str, as_of: bool, fill: bool = True,  # noqa: ANN001
                  pair_scores: bool = True) -> System:
    """The product path: Engine.related_to_article with the API's filters (`pair_scores`: also
    offer the engine's pair similarity, for agreement with graded labels)."""
    def rank(query: Article) -> Shown:
        moment = query.published_ts if as_of else None
        if as_of and moment is None:
            return Shown([])
        related = engine.related_to_article(
            query.id, Filters(limit=k, lang_policy=lang_policy, published_before=moment, fill=fill))
        return Shown([a.id for a, _ in related.items], dict(related.collapsed), list(related.reasons))

    def similarity(a: str, b: str) -> float:
        return engine.similarity(a, b)

    return System(name, rank, similarity if pair_scores else None)
