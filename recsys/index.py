"""Index stage: FAISS builds on disk (one folder each, with a manifest) and the live index.

Layout under RECSYS_INDEX_DIR:
    builds/<build_id>/index.faiss     every vector; FAISS position = catalog row
    builds/<build_id>/lang-<xx>.faiss one index per language, with lang-<xx>.rows.npy (its rows)
    builds/<build_id>/rows.npz        the vid of each row and the normalised lexical rows
    builds/<build_id>/neighbours.npz  each row's precomputed candidates in its language
    builds/<build_id>/manifest.json, lexical_df.npz
    current                           the name of the live build, replaced atomically
    builds/.tmp-<build_id>/           a build being written (a killed one's is removed later)
    builds/.broken-<build_id>-<why>/  a build that failed to load, set aside (index_recovery.py)

A language filter is applied inside the search, by searching that language's own index, so a
modest k fills a block on a multilingual corpus whose nearest neighbours are translations.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np
from scipy import sparse

from recsys.catalog import Catalog, Snapshot
from recsys.errors import StorageUnavailable
from recsys.lexical import LexicalStats
from recsys.neighbours import NeighbourLists

log = logging.getLogger(__name__)

METRIC = "inner_product"
LEXICAL_FILE = "lexical_df.npz"
ROWS_FILE = "rows.npz"
HEADLINES_FILE = "headlines.npy"
FORMAT = 3  # builds of another layout are rebuilt, not misread (3: headline vectors)
STALE_TMP_S = 3600.0  # a save writes its .tmp- folder in seconds: one untouched for an hour was killed


@dataclass(frozen=True)
class Manifest:
    """What a build was made from; loading refuses a build that does not match the model."""

    build_id: str
    model: str
    dimension: int
    metric: str
    normalized: bool
    count: int
    index_type: str
    max_vid: int
    created_at: str
    faiss_version: str
    format: int = 1


@dataclass(frozen=True)
class IndexParams:
    """How FAISS indexes are made (from Settings)."""

    hnsw_threshold: int = 50_000
    hnsw_m: int = 32
    ef_search: int = 64


def new_index(dimension: int, expected_count: int, params: IndexParams) -> faiss.Index:
    """Exact inner product for small corpora, HNSW at or above the threshold; positions are rows."""
    if expected_count < params.hnsw_threshold:
        return faiss.IndexFlatIP(dimension)
    index = faiss.IndexHNSWFlat(dimension, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = max(40, 2 * params.hnsw_m)
    index.hnsw.efSearch = params.ef_search
    return index


def index_type(index: faiss.Index) -> str:
    return "hnsw" if isinstance(index, faiss.IndexHNSW) else "flat"


class LangIndex:
    """One language's vectors: a FAISS index and the catalog row of each of its positions."""

    def __init__(self, index: faiss.Index, rows: np.ndarray) -> None:
        self.index, self.rows, self.count = index, rows, len(rows)

    def add(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        if self.count + len(rows) > len(self.rows):
            grown = np.zeros(max(2 * len(self.rows), self.count + len(rows)), dtype=np.int64)
            grown[: self.count] = self.rows[: self.count]
            self.rows = grown
        self.rows[self.count : self.count + len(rows)] = rows
        self.index.add(vectors)
        self.count += len(rows)


class LiveIndex:
    """The loaded build: all vectors, one index per language, the catalog of their rows, and each
    row's neighbour list (set by the engine before the build goes live)."""

    def __init__(self, index: faiss.Index, manifest: Manifest, catalog: Catalog,
                 by_lang: dict[int, LangIndex], params: IndexParams, lexical: LexicalStats) -> None:
        self.index, self.manifest, self.catalog, self.by_lang = index, manifest, catalog, by_lang
        self.params, self.lexical = params, lexical
        self.neighbours = NeighbourLists(0, "")
        self.max_vid = manifest.max_vid
        self.deleted_seq = 0  # the store's tombstones up to this one are applied to the catalog (set by the engine)
        self._lock = threading.RLock()  # FAISS indexes must not be searched while they grow

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, rows: np.ndarray, vectors: np.ndarray, max_vid: int) -> None:
        """Add the vectors of freshly appended catalog rows."""
        if len(rows) == 0:
            return
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        langs = self.catalog.col["lang"][rows]
        with self._lock:
            self.index.add(vectors)
            for code in np.unique(langs):
                mine = langs == code
                sub = self.by_lang.get(int(code))
                if sub is None:
                    sub = self.by_lang[int(code)] = LangIndex(new_index(vectors.shape[1], 0, self.params), np.zeros(0, np.int64))
                sub.add(rows[mine], vectors[mine])
            self.max_vid = max(self.max_vid, max_vid)

    def search(self, vector: np.ndarray, k: int, lang: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, scores), within one language when `lang` is given; FAISS padding dropped."""
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        with self._lock:
            sub = None if lang is None else self.by_lang.get(lang)
            if lang is not None and sub is None:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            index = self.index if sub is None else sub.index
            k = min(k, int(index.ntotal))
            if k <= 0:
                return np.zeros(0, np.int64), np.zeros(0, np.float32)
            scores, ids = index.search(query, k)
            ids, scores = ids[0], scores[0]
            keep = ids >= 0
            ids, scores = ids[keep], scores[keep]
            return (ids if sub is None else sub.rows[ids]), scores


    def search_many(self, vectors: np.ndarray, k: int, lang: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (rows, scores) of many vectors within one language; -1 where FAISS found nothing."""
        with self._lock:
            sub = self.by_lang.get(lang)
            k = 0 if sub is None else min(k, int(sub.index.ntotal))
            if k <= 0:
                return np.zeros((len(vectors), 0), np.int64), np.zeros((len(vectors), 0), np.float32)
            scores, ids = sub.index.search(np.ascontiguousarray(vectors, dtype=np.float32), k)
            return np.where(ids >= 0, sub.rows[np.maximum(ids, 0)], -1), scores


def build_lang_indexes(catalog: Catalog, params: IndexParams) -> dict[int, LangIndex]:
    """One index per language over the catalog's rows; HNSW from a 25th of the main threshold on
    (2,000 vectors by default), since a language is searched on every request of its readers and an
    exact search reads all of its vectors (0.6 ms for 7,000, bound by memory), HNSW a few hundred."""
    params = IndexParams(max(1, params.hnsw_threshold // 25), params.hnsw_m, params.ef_search)
    snap = catalog.snapshot()
    langs = snap.col["lang"][: snap.n]
    out = {}
    for code in np.unique(langs):
        rows = np.flatnonzero(langs == code).astype(np.int64)
        index = new_index(catalog.dimension, len(rows), params)
        index.add(np.ascontiguousarray(snap.vectors[rows]))
        out[int(code)] = LangIndex(index, rows)
    return out


def _builds(index_dir: Path) -> Path:
    return Path(index_dir) / "builds"


def save_build(index_dir: Path, live: LiveIndex, keep: int) -> Path:
    """Write the build aside, rename it into place, then switch `current` atomically."""
    builds = _builds(index_dir)
    builds.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(builds)
    manifest, snap = live.manifest, live.catalog.snapshot()
    tmp = builds / f".tmp-{manifest.build_id}"
    try:
        _write_files(tmp, live, manifest, snap)
    except (OSError, RuntimeError) as exc:  # faiss reports a full disk as RuntimeError
        shutil.rmtree(tmp, ignore_errors=True)  # `current` still names the previous build, which stays served
        raise StorageUnavailable(f"cannot write an index build in {builds}: {exc}; the previous build is kept "
                                 "(free disk space or fix the folder's permissions, then `recsys build`)") from exc
    final = builds / manifest.build_id
    os.replace(tmp, final)
    pointer = Path(index_dir) / f".current-{uuid.uuid4().hex}"
    pointer.write_text(manifest.build_id + "\n")
    os.replace(pointer, Path(index_dir) / "current")
    _prune(builds, keep, manifest.build_id)
    return final


def _write_files(tmp: Path, live: LiveIndex, manifest: Manifest, snap: Snapshot) -> None:
    """Every file of a build, into the folder that is renamed into place once they are all written."""
    tmp.mkdir()
    faiss.write_index(live.index, str(tmp / "index.faiss"))
    langs = {}
    for code, sub in live.by_lang.items():
        faiss.write_index(sub.index, str(tmp / f"lang-{snap.langs[code]}.faiss"))
        langs[f"lang_{snap.langs[code]}"] = sub.rows[: sub.count]
    np.savez(tmp / ROWS_FILE, vids=snap.col["vid"][: snap.n], **langs)
    np.save(tmp / HEADLINES_FILE, snap.headlines[: snap.n])
    sparse.save_npz(tmp / "lexical_rows.npz", snap.lexical.matrix(), compressed=False)
    live.lexical.save(tmp / LEXICAL_FILE)
    live.neighbours.save(tmp)
    (tmp / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2))


@dataclass(frozen=True)
class SavedBuild:
    """A build as read from disk; the engine joins it with the store into a LiveIndex."""

    folder: Path
    manifest: Manifest
    index: faiss.Index
    vids: np.ndarray
    lexical_rows: sparse.csr_matrix
    by_lang: dict[str, LangIndex]
    stats: LexicalStats
    headlines: np.ndarray  # float16, one row per position of `index`


def _prune(builds: Path, keep: int, live: str) -> None:
    done = sorted((p for p in builds.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
    for old in [p for p in done if p.name != live][max(0, keep - 1) :]:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_tmp(builds: Path, now: float | None = None) -> list[Path]:
    """Delete the .tmp- folders of killed saves: those with nothing written for STALE_TMP_S (a
    younger one may be another process's save in progress, so it is left alone)."""
    now = time.time() if now is None else now
    stale = [p for p in (builds.glob(".tmp-*") if builds.is_dir() else []) if now - _last_write(p) > STALE_TMP_S]
    for tmp in stale:
        log.warning("removing %s, left by a save that did not finish", tmp)
        shutil.rmtree(tmp, ignore_errors=True)
    return stale


def _last_write(folder: Path) -> float:
    try:
        return max([folder.stat().st_mtime] + [p.stat().st_mtime for p in folder.iterdir()])
    except OSError:  # renamed into place meanwhile: not stale
        return time.time()


def read_manifest(path: Path) -> Manifest:
    return Manifest(**json.loads(Path(path).read_text()))


def load_build(folder: Path, manifest: Manifest, ef_search: int) -> SavedBuild:
    """Read a build's files as they are; index_recovery checks them against the manifest (and the
    model) and sets aside builds that fail, so a missing or truncated file raises here."""
    index = _read(folder / "index.faiss", ef_search)
    with np.load(folder / ROWS_FILE) as rows:
        vids = rows["vids"]
        by_lang = {name[5:]: LangIndex(_read(folder / f"lang-{name[5:]}.faiss", ef_search), rows[name])
                   for name in rows.files if name.startswith("lang_")}
    lexical_rows = sparse.load_npz(folder / "lexical_rows.npz").tocsr()
    headlines = np.load(folder / HEADLINES_FILE)
    return SavedBuild(folder, manifest, index, vids, lexical_rows, by_lang, LexicalStats.load(folder / LEXICAL_FILE),
                      headlines)


def _read(path: Path, ef_search: int) -> faiss.Index:
    index = faiss.read_index(str(path))
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = ef_search
    return index


def make_manifest(index: faiss.Index, model: str, dimension: int, max_vid: int) -> Manifest:
    now = datetime.now(timezone.utc)
    return Manifest(
        build_id=now.strftime("%Y%m%dT%H%M%S%fZ") + "-" + uuid.uuid4().hex[:6],
        model=model,
        dimension=dimension,
        metric=METRIC,
        normalized=True,
        count=int(index.ntotal),
        index_type=index_type(index),
        max_vid=max_vid,
        created_at=now.isoformat(),
        faiss_version=faiss.__version__,
        format=FORMAT,
    )
