"""The running system: store + embedder + live index, shared by the API and the CLI."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import faiss
import numpy as np

from recsys import index as idx
from recsys import lexical
from recsys.embed import Embedder, content_hash, load_embedder
from recsys.errors import InvalidInput, NotFound
from recsys.recommend import Candidate, Filters, Query, Ranking, blend, rank, relevance
from recsys.settings import Settings
from recsys.store import Article, Store, StoredVector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int
    embedded: int


@dataclass(frozen=True)
class Related:
    """A ranked block plus how it was produced."""

    items: list[tuple[Article, float]]
    relaxed: list[str]
    candidates_seen: int


def _candidate(sv: StoredVector, score: float, lexical_score: float) -> Candidate:
    a = sv.article
    return Candidate(
        id=a.id, score=score, vector=sv.vector, lang=a.lang, published_ts=a.published_ts,
        section=a.section, url=a.url, original_url=a.original_url, title=a.title, lexical=lexical_score,
    )


class Engine:
    """Owns the store, the model and the live index of one recsys instance."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder, rebuild: bool = False) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.knobs = Ranking(
            dedup_threshold=settings.dedup_threshold,
            dedup_lexical_threshold=settings.dedup_lexical_threshold,
            dedup_dense_story_threshold=_story_threshold(settings, embedder),
            lexical_weight=settings.lexical_weight,
            recency_weight=settings.recency_weight,
            recency_half_life_days=settings.recency_half_life_days,
        )
        self._build_lock = threading.Lock()
        self._sync_lock = threading.Lock()  # server threads must not add the same new vectors twice
        self._tf_cache = lexical.TfCache(settings.lexical_cache_entries)
        live = None if rebuild else idx.load_current(
            settings.index_dir, embedder.name, embedder.dimension, settings.hnsw_ef_search
        )
        self.live = live if live is not None else self.build(progress=rebuild)
        self.sync()

    # -- writes -----------------------------------------------------------------------------
    def upsert(self, articles: Sequence[Article], progress: bool = False) -> UpsertResult:
        """Store articles and make them searchable at once; unchanged text is not embedded again."""
        result = self._store(articles, progress)
        self.sync()
        return result

    def _store(self, articles: Sequence[Article], progress: bool) -> UpsertResult:
        known = self.store.fingerprints(a.id for a in articles)
        texts = {a.id: self.embedder.text_of(a) for a in articles}
        hashes = {i: content_hash(t) for i, t in texts.items()}
        stale = [a for a in articles if known.get(a.id) != (hashes[a.id], self.embedder.name)]
        vectors = self.embedder.encode([texts[a.id] for a in stale], progress=progress)
        fresh = {a.id: v for a, v in zip(stale, vectors)}
        self.store.upsert([(a, hashes[a.id], fresh.get(a.id)) for a in articles], self.embedder.name)
        inserted = len({a.id for a in articles} - known.keys())
        return UpsertResult(inserted=inserted, updated=len({a.id for a in articles}) - inserted, embedded=len(fresh))

    def delete(self, article_id: str) -> None:
        if not self.store.delete(article_id):
            raise NotFound(f"no article with id {article_id!r}")

    def sync(self) -> int:
        """Add vectors written since the live index was loaded (by this or another process)."""
        if self.store.max_vid() <= self.live.max_vid:
            return 0
        added = 0
        with self._sync_lock:
            live = self.live
            for vids, matrix in self.store.vectors(self.embedder.name, after_vid=live.max_vid):
                if live.lexical is not None:
                    fresh = self.store.resolve(list(vids), self.embedder.name).values()
                    live.lexical.add(self.embedder.text_of(sv.article) for sv in fresh)
                live.add(vids, matrix)
                added += len(vids)
        return added

    def build(self, progress: bool = False) -> idx.LiveIndex:
        """Embed what lacks a vector for this model, write a fresh compact build, switch to it."""
        with self._build_lock:
            missing = self.store.get_many(self.store.ids_needing_vectors(self.embedder.name))
            for start in range(0, len(missing), 2048):
                self._store(missing[start : start + 2048], progress)
            count = self.store.count()
            s = self.settings
            index = idx.new_index(self.embedder.dimension, count, s.hnsw_threshold, s.hnsw_m, s.hnsw_ef_search)
            max_vid = 0
            for vids, matrix in self.store.vectors(self.embedder.name):
                index.add_with_ids(matrix, vids)
                max_vid = int(vids[-1])
            stats = lexical.LexicalStats()
            stats.add(self.embedder.text_of(a) for a in self.store.iter_articles())
            manifest = idx.make_manifest(index, self.embedder.name, self.embedder.dimension, max_vid)
            idx.save_build(s.index_dir, index, manifest, s.keep_builds, stats)
            self.live = idx.LiveIndex(index, manifest, stats)
            log.info("built index %s: %d vectors (%s)", manifest.build_id, manifest.count, manifest.index_type)
            return self.live

    # -- reads ------------------------------------------------------------------------------
    def related_to_article(self, article_id: str, filters: Filters, now_ts: float | None = None) -> Related:
        article = self.store.get(article_id)
        if article is None:
            raise NotFound(f"no article with id {article_id!r}")
        return self._related_to_stored(article, filters, now_ts)

    def _related_to_stored(self, article: Article, filters: Filters, now_ts: float | None) -> Related:
        vector = self.store.vector_of(article.id, self.embedder.name)
        if vector is None:  # stored by a process using another model: embed on the fly
            vector = self.embedder.encode([self.embedder.text_of(article)])[0]
        query = Query(article.id, article.lang, article.published_ts, article.url, article.original_url)
        return self.related_to_vector(vector, self.embedder.text_of(article), query, filters, now_ts)

    def related_to_draft(self, title: str, text: str, lang: str, filters: Filters, now_ts: float | None = None) -> Related:
        if not title.strip() and not text.strip():
            raise InvalidInput("a draft needs a title or a text")
        draft = Article(id="draft", title=title or text[:200], text=text, lang=lang)
        text_of_draft = self.embedder.text_of(draft)
        vector = self.embedder.encode([text_of_draft])[0]
        return self.related_to_vector(vector, text_of_draft, Query(None, lang), filters, now_ts)

    def related_to_vector(self, vector: np.ndarray, text: str, query: Query, filters: Filters,
                          now_ts: float | None = None) -> Related:
        """Over-fetch from FAISS, deepening until the strict filters fill `limit` or the pool ends."""
        self.sync()
        now_ts = time.time() if now_ts is None else now_ts
        k = max(self.settings.min_candidates, 4 * (filters.limit + len(filters.exclude) + 1))
        ceiling = min(self.live.ntotal, self.settings.max_candidates)
        while True:
            pool, pairs, by_id = self._pool(vector, text, k)
            strict = rank(query, pool, filters, now_ts, self.knobs, allow_relax=False, lexical_pairs=pairs)
            if len(strict.items) >= filters.limit or k >= ceiling:
                break
            k = min(k * 4, ceiling)
        ranked = strict
        if len(strict.items) < filters.limit:
            ranked = rank(query, pool, filters, now_ts, self.knobs, lexical_pairs=pairs)
        items = [(by_id[c.id], relevance(c, self.knobs)) for c in ranked.items]
        return Related(items, ranked.relaxed, len(pool))

    def _pool(self, vector: np.ndarray, text: str, k: int) -> tuple[list[Candidate], np.ndarray | None, dict[str, Article]]:
        """Top-k live candidates with their lexical similarity to the query and to each other."""
        hits = self.live.search(vector, k)
        resolved = self.store.resolve([vid for vid, _ in hits], self.embedder.name)
        stored = [(resolved[vid], score) for vid, score in hits if vid in resolved]
        pairs = None
        lexical_scores = np.zeros(len(stored))
        if self.live.lexical is not None and self.knobs.lexical_weight > 0 and stored:
            texts = {sv.vid: self.embedder.text_of(sv.article) for sv, _ in stored}
            tf = self._tf_cache.rows([sv.vid for sv, _ in stored], texts.__getitem__)
            lexical_scores, pairs = lexical.row_similarities(lexical.tf_rows([text]), tf, self.live.lexical.idf)
        pool = [_candidate(sv, score, float(lx)) for (sv, score), lx in zip(stored, lexical_scores)]
        return pool, pairs, {sv.article.id: sv.article for sv, _ in stored}

    def neighbours(self, article_ids: set[str], k: int) -> set[str]:
        """Ids among the k nearest of each article: the blocks a new or changed article may now enter."""
        self.sync()
        found: set[str] = set()
        for article_id in article_ids:
            vector = self.store.vector_of(article_id, self.embedder.name)
            if vector is not None:
                hits = self.live.search(vector, k)
                found |= {sv.article.id for sv in self.store.resolve([v for v, _ in hits], self.embedder.name).values()}
        return found

    def similarity(self, a_id: str, b_id: str) -> float:
        """The relevance related() gives b as an answer for a, without the time boost."""
        a, b = self.store.get(a_id), self.store.get(b_id)
        if a is None or b is None:
            raise NotFound(f"no article with id {a_id if a is None else b_id!r}")
        va, vb = (self.store.vector_of(x.id, self.embedder.name) for x in (a, b))
        if va is None or vb is None:
            va, vb = self.embedder.encode([self.embedder.text_of(a), self.embedder.text_of(b)])
        lexical_score = 0.0
        if self.live.lexical is not None and self.knobs.lexical_weight > 0:
            to_a, _ = lexical.similarities(self.embedder.text_of(a), [self.embedder.text_of(b)], self.live.lexical.idf)
            lexical_score = float(to_a[0])
        return blend(float(np.dot(va, vb)), lexical_score, self.knobs)

    def health(self) -> dict[str, object]:
        m = self.live.manifest
        return {
            "model": self.embedder.name,
            "dimension": self.embedder.dimension,
            "articles": self.store.count(),
            "index": {**m.__dict__, "live_vectors": self.live.ntotal},
        }


def _story_threshold(settings: Settings, embedder: Embedder) -> float:
    if settings.dedup_dense_story_threshold is not None:
        return settings.dedup_dense_story_threshold
    return float(embedder.calibration.get("dedup_dense_story_threshold", 2.0))  # 2.0: cosine never reaches it


def open_engine(settings: Settings, embedder: Embedder | None = None, rebuild: bool = False) -> Engine:
    """Open the store, load the model (unless given) and the live index (built if none, or if asked)."""
    faiss.omp_set_num_threads(settings.faiss_threads)
    store = Store(settings.db_path)
    return Engine(settings, store, embedder or load_embedder(settings), rebuild=rebuild)
