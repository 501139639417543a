"""Index stage: FAISS builds on disk (one folder each, with a manifest) and the live index.

Layout under RECSYS_INDEX_DIR:
    builds/<build_id>/index.faiss, builds/<build_id>/manifest.json
    current            -- the name of the live build, replaced atomically
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import faiss
import numpy as np

from recsys.errors import IndexMismatch
from recsys.lexical import LexicalStats

log = logging.getLogger(__name__)

METRIC = "inner_product"
LEXICAL_FILE = "lexical_df.npz"


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


def new_index(dimension: int, expected_count: int, hnsw_threshold: int, hnsw_m: int, ef_search: int) -> faiss.Index:
    """Exact inner product for small corpora, HNSW at or above the threshold; ids are vids."""
    if expected_count >= hnsw_threshold:
        inner = faiss.IndexHNSWFlat(dimension, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = max(40, 2 * hnsw_m)
        inner.hnsw.efSearch = ef_search
    else:
        inner = faiss.IndexFlatIP(dimension)
    return faiss.IndexIDMap2(inner)


def index_type(index: faiss.Index) -> str:
    inner = faiss.downcast_index(index.index) if isinstance(index, faiss.IndexIDMap) else index
    return "hnsw" if isinstance(inner, faiss.IndexHNSW) else "flat"


class LiveIndex:
    """The loaded FAISS index plus what it covers; thread-safe add and search."""

    def __init__(self, index: faiss.Index, manifest: Manifest, lexical: LexicalStats | None = None) -> None:
        self.index = index
        self.manifest = manifest
        self.lexical = lexical
        self.max_vid = manifest.max_vid
        self._lock = threading.Lock()

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def add(self, vids: np.ndarray, vectors: np.ndarray) -> None:
        if len(vids) == 0:
            return
        with self._lock:
            self.index.add_with_ids(np.ascontiguousarray(vectors, dtype=np.float32), vids.astype(np.int64))
            self.max_vid = max(self.max_vid, int(vids.max()))

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Top-k (vid, score); FAISS padding (-1 ids) is dropped."""
        k = min(k, self.ntotal)
        if k <= 0:
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        with self._lock:
            scores, ids = self.index.search(query, k)
        return [(int(i), float(s)) for i, s in zip(ids[0], scores[0]) if i >= 0]


def _builds(index_dir: Path) -> Path:
    return Path(index_dir) / "builds"


def save_build(index_dir: Path, index: faiss.Index, manifest: Manifest, keep: int,
               lexical: LexicalStats | None = None) -> Path:
    """Write the build aside, rename it into place, then switch `current` atomically."""
    builds = _builds(index_dir)
    builds.mkdir(parents=True, exist_ok=True)
    tmp = builds / f".tmp-{manifest.build_id}"
    tmp.mkdir()
    faiss.write_index(index, str(tmp / "index.faiss"))
    if lexical is not None:
        lexical.save(tmp / LEXICAL_FILE)
    (tmp / "manifest.json").write_text(json.dumps(asdict(manifest), indent=2))
    final = builds / manifest.build_id
    os.replace(tmp, final)
    pointer = Path(index_dir) / f".current-{uuid.uuid4().hex}"
    pointer.write_text(manifest.build_id + "\n")
    os.replace(pointer, Path(index_dir) / "current")
    _prune(builds, keep, manifest.build_id)
    return final


def _prune(builds: Path, keep: int, live: str) -> None:
    done = sorted((p for p in builds.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True)
    for old in [p for p in done if p.name != live][max(0, keep - 1) :]:
        shutil.rmtree(old, ignore_errors=True)


def read_manifest(path: Path) -> Manifest:
    return Manifest(**json.loads(Path(path).read_text()))


def current_build(index_dir: Path) -> Path | None:
    pointer = Path(index_dir) / "current"
    if not pointer.exists():
        return None
    folder = _builds(index_dir) / pointer.read_text().strip()
    return folder if (folder / "manifest.json").exists() else None


def load_current(index_dir: Path, model: str, dimension: int, ef_search: int) -> LiveIndex | None:
    """The live build, or None if there is none; IndexMismatch if it was made with another model."""
    folder = current_build(index_dir)
    if folder is None:
        return None
    manifest = read_manifest(folder / "manifest.json")
    if manifest.model != model or manifest.dimension != dimension:
        raise IndexMismatch(
            f"index build {manifest.build_id} was made with model {manifest.model!r} "
            f"(dimension {manifest.dimension}) but the loaded model is {model!r} (dimension "
            f"{dimension}); run `recsys build` to rebuild it for this model"
        )
    index = faiss.read_index(str(folder / "index.faiss"))
    if index.d != dimension or index.ntotal != manifest.count:
        raise IndexMismatch(f"index build {manifest.build_id} does not match its manifest; run `recsys build`")
    if manifest.index_type == "hnsw":
        faiss.downcast_index(index.index).hnsw.efSearch = ef_search
    stats = LexicalStats.load(folder / LEXICAL_FILE) if (folder / LEXICAL_FILE).exists() else None
    return LiveIndex(index, manifest, stats)


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
    )
