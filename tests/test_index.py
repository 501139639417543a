"""FAISS builds: answers checked against exact numpy search; manifests, pointer and mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsys import index as idx
from recsys.errors import IndexMismatch


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(matrix: np.ndarray, ids: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = matrix @ query
    order = np.lexsort((ids, -scores))[:k]
    return [int(ids[i]) for i in order]


def test_flat_index_matches_exact_search() -> None:
    vectors, vids = unit_rows(500, 32, 1), np.arange(1000, 1500, dtype=np.int64)
    index = idx.new_index(32, 500, hnsw_threshold=10_000, hnsw_m=16, ef_search=64)
    assert idx.index_type(index) == "flat"
    live = idx.LiveIndex(index, idx.make_manifest(index, "m", 32, 0))
    live.add(vids, vectors)
    for q in unit_rows(20, 32, 2):
        hits = live.search(q, 10)
        assert [v for v, _ in hits] == exact_top(vectors, vids, q, 10)
        np.testing.assert_allclose([s for _, s in hits], np.sort(vectors @ q)[::-1][:10], rtol=1e-5)


def test_hnsw_recall_against_exact_search() -> None:
    vectors, vids = unit_rows(3000, 32, 3), np.arange(3000, dtype=np.int64) + 7
    index = idx.new_index(32, 3000, hnsw_threshold=1000, hnsw_m=16, ef_search=128)
    assert idx.index_type(index) == "hnsw"
    live = idx.LiveIndex(index, idx.make_manifest(index, "m", 32, 0))
    live.add(vids, vectors)
    queries = unit_rows(50, 32, 4)
    found = sum(len({v for v, _ in live.search(q, 10)} & set(exact_top(vectors, vids, q, 10))) for q in queries)
    assert found / (50 * 10) >= 0.95


def test_padding_ids_are_dropped_when_k_exceeds_the_corpus() -> None:
    index = idx.new_index(8, 3, 100, 16, 64)
    live = idx.LiveIndex(index, idx.make_manifest(index, "m", 8, 0))
    assert live.search(unit_rows(1, 8, 0)[0], 5) == []
    live.add(np.array([5, 6, 7]), unit_rows(3, 8, 5))
    hits = live.search(unit_rows(1, 8, 6)[0], 50)
    assert sorted(v for v, _ in hits) == [5, 6, 7]
    assert live.max_vid == 7


def _save(index_dir: Path, model: str = "m", dim: int = 8, keep: int = 2) -> idx.Manifest:
    index = idx.new_index(dim, 4, 100, 16, 64)
    index.add_with_ids(unit_rows(4, dim, 9), np.arange(1, 5, dtype=np.int64))
    manifest = idx.make_manifest(index, model, dim, max_vid=4)
    idx.save_build(index_dir, index, manifest, keep)
    return manifest


def test_build_folder_manifest_and_current_pointer(tmp_path: Path) -> None:
    manifest = _save(tmp_path)
    folder = tmp_path / "builds" / manifest.build_id
    saved = json.loads((folder / "manifest.json").read_text())
    assert saved["model"] == "m" and saved["dimension"] == 8 and saved["count"] == 4
    assert saved["metric"] == "inner_product" and saved["normalized"] is True and saved["index_type"] == "flat"
    assert (tmp_path / "current").read_text().strip() == manifest.build_id
    live = idx.load_current(tmp_path, "m", 8, 64)
    assert live is not None and live.ntotal == 4 and live.max_vid == 4
    assert not [p for p in (tmp_path / "builds").iterdir() if p.name.startswith(".")]


def test_loading_refuses_another_model_or_dimension(tmp_path: Path) -> None:
    _save(tmp_path, model="model-a")
    with pytest.raises(IndexMismatch, match="recsys build"):
        idx.load_current(tmp_path, "model-b", 8, 64)
    with pytest.raises(IndexMismatch):
        idx.load_current(tmp_path, "model-a", 16, 64)


def test_no_build_yet_and_old_builds_pruned(tmp_path: Path) -> None:
    assert idx.load_current(tmp_path, "m", 8, 64) is None
    made = [_save(tmp_path, keep=2).build_id for _ in range(4)]
    left = sorted(p.name for p in (tmp_path / "builds").iterdir())
    assert left == sorted(made[-2:])
    assert (tmp_path / "current").read_text().strip() == made[-1]
