"""The running system: store + embedder + live index and catalog, shared by the API and the CLI.

Writes go to the store first (`recsys.write_path`: each article's text, metadata and vector change
together, and a delete wins over the upserts that began before it); `sync` then appends the new
vectors to the catalog and the FAISS indexes and drops the articles deleted by any process. Reads run
on the in-memory catalog and touch the store once, for the final items.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import faiss
import numpy as np
import threadpoolctl

from recsys import blocks
from recsys import candidates as cand
from recsys import index as idx
from recsys import index_recovery as recovery
from recsys import lexical
from recsys import neighbours as nbr
from recsys import write_path
from recsys.article import Article, Headline
from recsys.catalog import Catalog, Meta, key_of, metas_from_rows
from recsys.embed import Embedder, content_hash, load_embedder
from recsys.errors import InvalidInput, NotFound
from recsys.recommend import Filters, Query
from recsys.scores import blend
from recsys.settings import Settings
from recsys.store import Store
from recsys.thresholds import ranking_from
from recsys.write_path import UpsertResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Related:
    """A block plus how it was produced: why each item is there, and what collapsed into it."""

    items: list[tuple[Headline, float]]
    relaxed: list[str]
    candidates_seen: int
    reasons: list[str]
    collapsed: dict[str, tuple[str, ...]]


class Engine:
    """Owns the store, the model, and the live index of one recsys instance."""

    def __init__(self, settings: Settings, store: Store, embedder: Embedder, rebuild: bool = False,
                 read_only: bool = False) -> None:
        self.settings, self.store, self.embedder, self.read_only = settings, store, embedder, read_only
        self.knobs = ranking_from(settings, embedder.calibration)
        self.params = idx.IndexParams(settings.hnsw_threshold, settings.hnsw_m, settings.hnsw_ef_search)
        self.list_key = nbr.settings_key(self.knobs, settings.min_candidates, settings.hnsw_ef_search)
        self._build_lock = threading.Lock()
        self._sync_lock = threading.Lock()  # server threads must not add the same new vectors twice
        self._newest = cand.NewestOrder()
        self._depth = blocks.Depth(settings.min_candidates, settings.max_candidates)
        loaded = recovery.Loaded(None, []) if rebuild else recovery.load_valid(
            settings.index_dir, embedder.name, embedder.dimension, settings.hnsw_ef_search, read_only)
        self.live = self._from_saved(loaded.build) if loaded.build is not None else self.build(progress=rebuild)
        # why start-up did not serve the build `current` named; cleared by this process's next build
        self.index_warnings: list[str] = loaded.warnings
        self.sync()

    # -- writes -----------------------------------------------------------------------------
    def upsert(self, articles: Sequence[Article], progress: bool = False) -> UpsertResult:
        """Store articles and make them searchable at once; unchanged text is not embedded again."""
        result = self._store(articles, progress)
        self.sync()
        return result

    def _store(self, articles: Sequence[Article], progress: bool, since: int | None = None) -> UpsertResult:
        return write_path.store_articles(self.store, self.embedder, articles, progress, since)

    def delete(self, article_id: str) -> None:
        """Delete an article; upserts that began before this and end after it do not store it again."""
        gone = self.store.delete(article_id)
        self.live.catalog.kill(article_id)  # also when another process deleted it first
        if not gone:
            raise NotFound(f"no article with id {article_id!r}")

    def in_sync(self) -> bool:
        """Whether the live index holds every vector in the store and knows of every delete (sync would
        have nothing to do)."""
        max_vid, deleted = self.store.marks()
        return max_vid <= self.live.max_vid and deleted <= self.live.deleted_seq

    def sync(self) -> int:
        """Append vectors written since the live index was loaded and drop articles deleted since (by
        this or another process); the number of vectors added."""
        if self.in_sync():
            return 0
        added = 0
        with self._sync_lock:
            live = self.live
            mark, deleted = self.store.deleted_after(live.deleted_seq)  # before the vectors: none is missed
            for rows, matrix, headlines in self.store.vector_rows(self.embedder.name, after_vid=live.max_vid):
                metas, texts = self._metas(rows)
                appended = live.catalog.append(metas, matrix, lexical.vectors(texts, live.lexical.idf), headlines)
                live.add(appended, matrix, int(rows[-1]["vid"]))
                nbr.mark_entered(live.neighbours, live.catalog.snapshot(), appended)
                added += len(rows)
            write_path.drop_deleted(live.catalog, self.store, deleted)
            live.deleted_seq = max(live.deleted_seq, mark)
        return added

    def _metas(self, rows: Sequence) -> tuple[list[Meta], list[str]]:  # noqa: ANN401 - sqlite rows
        return metas_from_rows(rows, self.embedder.text_of, self.settings.lexical_max_chars)

    def build(self, progress: bool = False) -> idx.LiveIndex:
        """Embed what lacks a vector for this model, write a fresh compact build, switch to it.
        Read-only, it builds in memory from the stored vectors and writes nothing."""
        with self._build_lock:
            mark = self.store.deletion_mark()  # before any read: later deletes win and reach the next sync
            missing = [] if self.read_only else self.store.get_many(self.store.ids_needing_vectors(self.embedder.name))
            for start in range(0, len(missing), 2048):
                self._store(missing[start : start + 2048], progress, since=mark)
            metas, texts, chunks, headline_chunks = [], [], [], []
            for rows, matrix, headlines in self.store.vector_rows(self.embedder.name):
                m, t = self._metas(rows)
                metas += m
                texts += t
                chunks.append(matrix)
                headline_chunks.append(headlines)
            empty = np.zeros((0, self.embedder.dimension), np.float32)
            vectors = np.concatenate(chunks) if chunks else empty
            stats, weighed = lexical.fit_rows(texts)
            catalog = Catalog(self.embedder.dimension, max(1024, len(metas)))
            catalog.append(metas, vectors, weighed, np.concatenate(headline_chunks) if chunks else empty)
            index = idx.new_index(self.embedder.dimension, len(metas), self.params)
            with _all_cores(self.settings):
                index.add(vectors)
                by_lang = idx.build_lang_indexes(catalog, self.params)
            max_vid = metas[-1].vid if metas else 0
            manifest = idx.make_manifest(index, self.embedder.name, self.embedder.dimension, max_vid)
            live = idx.LiveIndex(index, manifest, catalog, by_lang, self.params, stats)
            live.neighbours, live.deleted_seq = self._neighbour_lists(live), mark
            if not self.read_only:
                idx.save_build(self.settings.index_dir, live, self.settings.keep_builds)
            self.live, self.index_warnings = live, []
            log.info("built index %s: %d vectors (%s)", manifest.build_id, manifest.count, manifest.index_type)
            return live

    def _from_saved(self, saved: idx.SavedBuild) -> idx.LiveIndex:
        """Join a build read from disk with the store's current rows (stale vectors become dead rows)."""
        mark = self.store.deletion_mark()  # deletes after it are dropped by the first sync
        current = self.store.rows_by_vid(saved.vids.tolist(), self.embedder.name)
        metas, _ = self._metas(list(current.values()))
        by_vid = {m.vid: m for m in metas}
        dead = Meta(0, "", "", None, None, None, None, "", 0)
        ordered = [by_vid.get(int(v), dead) for v in saved.vids]
        vectors = saved.index.reconstruct_n(0, saved.index.ntotal) if saved.index.ntotal else \
            np.zeros((0, self.embedder.dimension), np.float32)
        catalog = Catalog(self.embedder.dimension, max(1024, len(ordered)))
        catalog.append(ordered, vectors, saved.lexical_rows, saved.headlines)
        by_lang = {catalog.code_of("lang", name): sub for name, sub in saved.by_lang.items()}
        live = idx.LiveIndex(saved.index, saved.manifest, catalog, by_lang, self.params, saved.stats)
        live.deleted_seq, k = mark, self.settings.min_candidates
        live.neighbours = nbr.NeighbourLists.load(saved.folder, k, self.list_key) or self._neighbour_lists(live)
        return live

    def _neighbour_lists(self, live: idx.LiveIndex) -> nbr.NeighbourLists:
        """Every row's neighbour list, made on all cores (at build or load time, not per request)."""
        snap, k = live.catalog.snapshot(), self.settings.min_candidates
        with _all_cores(self.settings):
            lists = nbr.compute(snap, np.arange(snap.n), live.search_many, self.knobs, k, os.cpu_count() or 1)
        return nbr.NeighbourLists(k, self.list_key, lists)

    # -- reads ------------------------------------------------------------------------------
    def related_to_article(self, article_id: str, filters: Filters, now_ts: float | None = None,
                           synced: bool = False) -> Related:
        """The block of a stored article; `synced`: the caller has just seen `in_sync()` true."""
        if not synced:
            self.sync()
        catalog = self.live.catalog
        row = catalog.row_of_id.get(article_id)
        if row is not None:
            col, vectors = catalog.col, self._vectors_of_row(row)
            ts = float(col["ts"][row])
            query = Query(row, int(col["lang"][row]), ts if not np.isnan(ts) else _now(now_ts),
                          (int(col["url"][row]), int(col["original"][row])), 0)
            return self._related(vectors, query, filters)
        article = self.store.get(article_id)
        if article is None:
            raise NotFound(f"no article with id {article_id!r}")
        # stored without a vector for this model (another process, another model): embed on the fly
        query = self._query_of(article, now_ts, text_key=0)
        return self._related(self._vectors_of_text(self.embedder.text_of(article)), query, filters)

    def related_to_draft(self, title: str, text: str, lang: str, filters: Filters,
                         now_ts: float | None = None, url: str | None = None) -> Related:
        if not title.strip() and not text.strip():
            raise InvalidInput("a draft needs a title or a text")
        self.sync()
        draft = Article(id="draft", title=title.strip() or text.strip()[:200], text=text, lang=lang, url=url)
        embedded = self.embedder.text_of(draft)
        query = self._query_of(draft, now_ts, text_key=key_of(content_hash(embedded)))
        return self._related(self._vectors_of_text(embedded), query, filters)

    def _query_of(self, article: Article, now_ts: float | None, text_key: int) -> Query:
        ts, keys = article.published_ts, (key_of(article.url), key_of(article.original_url))
        return Query(-1, self.live.catalog.code_of("lang", article.lang), _now(now_ts) if ts is None else ts, keys, text_key)

    def _vectors_of_row(self, row: int) -> cand.QueryVectors:
        snap = self.live.catalog.snapshot()
        return cand.QueryVectors(snap.vectors[row], lambda: snap.lexical.take(np.array([row])))

    def _vectors_of_text(self, text: str) -> cand.QueryVectors:
        lexical_text = text[: self.settings.lexical_max_chars]
        row = lexical.vectors([lexical_text], self.live.lexical.idf)
        return cand.QueryVectors(self.embedder.encode([text])[0], lambda: row)

    def _related(self, vectors: cand.QueryVectors, query: Query, filters: Filters) -> Related:
        """Rank, fill if asked, and read the final items; items found stale meanwhile are dropped and redone."""
        for _ in range(3):
            block = blocks.assemble(self.live, self._newest, self.knobs, self._depth, vectors, query, filters)
            vids = self.live.catalog.snapshot().col["vid"]
            found = self.store.headlines_by_vid([int(vids[r]) for r in block.rows])
            missing = [r for r in block.rows if int(vids[r]) not in found]
            if not missing:
                break
            for r in missing:  # deleted or edited by another process since this catalog saw it
                self.live.catalog.kill(self.live.catalog.snapshot().ids[r])
        ids = self.live.catalog.snapshot().ids
        shown = [(r, s, why) for r, s, why in zip(block.rows, block.scores, block.reasons) if int(vids[r]) in found]
        merged = {ids[r]: tuple(ids[m] for m in ms) for r, ms in block.collapsed.items()}
        return Related([(found[int(vids[r])], s) for r, s, _ in shown], block.relaxed, block.candidates_seen,
                       [why for _, _, why in shown], merged)

    def neighbours(self, article_ids: set[str], k: int) -> set[str]:
        """Ids among the k nearest of each article: the blocks a new or changed article may now enter."""
        self.sync()
        snap, found = self.live.catalog.snapshot(), set()
        for article_id in article_ids:
            row = self.live.catalog.row_of_id.get(article_id)
            if row is not None:
                rows, _ = self.live.search(snap.vectors[row], k)
                found |= {snap.ids[r] for r in rows if r < snap.n and snap.ids[r]}
        return found

    def pair_features(self, a_id: str, b_id: str) -> tuple[float, float, float]:
        """(dense cosine, lexical cosine, headline cosine) of two stored articles."""
        self.sync()
        rows = [self.live.catalog.row_of_id.get(i) for i in (a_id, b_id)]
        if None in rows:
            raise NotFound(f"no indexed article with id {a_id if rows[0] is None else b_id!r}")
        snap = self.live.catalog.snapshot()
        lex = snap.lexical.take(np.array(rows))
        return (float(snap.vectors[rows[0]] @ snap.vectors[rows[1]]), float(lexical.gram(lex)[0, 1]),
                float(snap.headline_cosines(np.array(rows))[0, 1]))

    def similarity(self, a_id: str, b_id: str) -> float:
        """The fused relevance of b to a (the score ranking starts from, without the time bonus)."""
        dense, lex, _ = self.pair_features(a_id, b_id)
        return float(blend(dense, lex, self.knobs.lexical_weight))

    def health(self) -> dict[str, object]:
        m, warnings = self.live.manifest, self.index_warnings
        return {"status": "degraded" if warnings else "ok", "reason": "; ".join(warnings) or None,
                "model": self.embedder.name, "dimension": self.embedder.dimension, "articles": self.store.count(),
                "index": {**m.__dict__, "live_vectors": self.live.ntotal}}


@contextmanager
def _all_cores(settings: Settings) -> Iterator[None]:
    """FAISS on every core for a build; serving keeps `faiss_threads`."""
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(settings.faiss_threads)


def _now(now_ts: float | None) -> float:
    return time.time() if now_ts is None else now_ts


def open_engine(settings: Settings, embedder: Embedder | None = None, rebuild: bool = False,
                read_only: bool = False) -> Engine:
    """Open the store, load the model (unless given) and the live index (built if none, or if asked).
    Read-only (for `recsys info` and `related`), it needs an existing database and writes nothing."""
    faiss.omp_set_num_threads(settings.faiss_threads)
    # Requests multiply tiny matrices: BLAS threads only contend for the cores (10 ms instead of 10 µs
    # for a 40x384 product on a loaded 2-core box), so the serving process keeps BLAS on one thread.
    threadpoolctl.threadpool_limits(limits=1, user_api="blas")
    store = Store(settings.db_path, read_only=read_only)
    return Engine(settings, store, embedder or load_embedder(settings), rebuild=rebuild, read_only=read_only)
