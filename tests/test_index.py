"""FAISS builds: answers checked against exact numpy search; per-language search; manifests, pointer and mismatch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from recsys import index as idx
from recsys import index_recovery as recovery
from recsys.catalog import Catalog, Meta
from recsys.errors import IndexMismatch
from recsys.lexical import N_FEATURES, LexicalStats


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_top(matrix: np.ndarray, rows: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = matrix[rows] @ query
    order = np.lexsort((rows, -scores))[:k]
    return [int(rows[i]) for i in order]


def live_over(vectors: np.ndarray, langs: list[str], threshold: int) -> idx.LiveIndex:
    """A live index built the way the engine builds one: catalog rows, main index, one index per language."""
    params = idx.IndexParams(threshold, 16, 128)
    catalog = Catalog(vectors.shape[1])
    metas = [Meta(i + 1, f"a{i}", lang, None, None, None, None, f"t{i}", 0) for i, lang in enumerate(langs)]
    catalog.append(metas, vectors, sparse.csr_matrix((len(langs), N_FEATURES), dtype=np.float32))
    index = idx.new_index(vectors.shape[1], len(langs), params)
    index.add(vectors)
    manifest = idx.make_manifest(index, "m", vectors.shape[1], len(langs))
    return idx.LiveIndex(index, manifest, catalog, idx.build_lang_indexes(catalog, params), params, LexicalStats())


def test_flat_index_matches_exact_search_overall_and_per_language() -> None:
    vectors = unit_rows(500, 32, 1)
    langs = ["uk" if i % 3 else "en" for i in range(500)]
    live = live_over(vectors, langs, threshold=10_000)
    assert idx.index_type(live.index) == "flat"
    uk = live.catalog.code_of("lang", "uk")
    uk_rows = np.array([i for i, lang in enumerate(langs) if lang == "uk"])
    for q in unit_rows(20, 32, 2):
        rows, scores = live.search(q, 10)
        assert rows.tolist() == exact_top(vectors, np.arange(500), q, 10)
        np.testing.assert_allclose(scores, np.sort(vectors @ q)[::-1][:10], rtol=1e-5)
        rows, _ = live.search(q, 10, lang=uk)
        assert rows.tolist() == exact_top(vectors, uk_rows, q, 10)


def test_hnsw_recall_against_exact_search() -> None:
    vectors = unit_rows(3000, 32, 3)
    live = live_over(vectors, ["uk"] * 3000, threshold=1000)
    assert idx.index_type(live.index) == "hnsw"
    queries = unit_rows(50, 32, 4)
    found = sum(len(set(live.search(q, 10)[0].tolist()) & set(exact_top(vectors, np.arange(3000), q, 10)))
                for q in queries)
    assert found / (50 * 10) >= 0.95


def test_padding_is_dropped_and_new_rows_reach_their_language_index() -> None:
    live = live_over(unit_rows(3, 8, 5), ["uk", "uk", "en"], threshold=100)
    rows, _ = live.search(unit_rows(1, 8, 6)[0], 50)
    assert sorted(rows.tolist()) == [0, 1, 2]
    assert live.search(unit_rows(1, 8, 6)[0], 5, lang=live.catalog.code_of("lang", "de"))[0].tolist() == []
    extra = unit_rows(2, 8, 7)
    added = live.catalog.append([Meta(4, "a3", "de", None, None, None, None, "x", 0),
                                 Meta(5, "a4", "uk", None, None, None, None, "y", 0)],
                                extra, sparse.csr_matrix((2, N_FEATURES), dtype=np.float32))
    live.add(added, extra, max_vid=5)
    assert live.max_vid == 5 and live.ntotal == 5
    assert live.search(extra[0], 5, lang=live.catalog.code_of("lang", "de"))[0].tolist() == [3]
    assert sorted(live.search(extra[1], 5, lang=live.catalog.code_of("lang", "uk"))[0].tolist()) == [0, 1, 4]


def _save(index_dir: Path, model: str = "m", dim: int = 8, keep: int = 2) -> idx.Manifest:
    live = live_over(unit_rows(4, dim, 9), ["uk", "uk", "en", "ru"], threshold=100)
    manifest = idx.make_manifest(live.index, model, dim, max_vid=4)
    live.manifest = manifest
    idx.save_build(index_dir, live, keep)
    return manifest


def test_build_folder_manifest_and_current_pointer(tmp_path: Path) -> None:
    manifest = _save(tmp_path)
    folder = tmp_path / "builds" / manifest.build_id
    saved = json.loads((folder / "manifest.json").read_text())
    assert saved["model"] == "m" and saved["dimension"] == 8 and saved["count"] == 4
    assert saved["metric"] == "inner_product" and saved["normalized"] is True and saved["index_type"] == "flat"
    assert (tmp_path / "current").read_text().strip() == manifest.build_id
    loaded = recovery.load_valid(tmp_path, "m", 8, 64)
    build = loaded.build
    assert loaded.warnings == [] and build is not None and build.index.ntotal == 4 and build.manifest.max_vid == 4
    assert build.vids.tolist() == [1, 2, 3, 4] and build.lexical_rows.shape == (4, N_FEATURES)
    assert {name: sub.rows.tolist() for name, sub in build.by_lang.items()} == {"uk": [0, 1], "en": [2], "ru": [3]}
    assert not [p for p in (tmp_path / "builds").iterdir() if p.name.startswith(".")]


def test_loading_refuses_another_model_or_dimension(tmp_path: Path) -> None:
    _save(tmp_path, model="model-a")
    with pytest.raises(IndexMismatch, match="recsys build"):
        recovery.load_valid(tmp_path, "model-b", 8, 64)
    with pytest.raises(IndexMismatch):
        recovery.load_valid(tmp_path, "model-a", 16, 64)


def test_no_build_yet_and_old_builds_pruned(tmp_path: Path) -> None:
    assert recovery.load_valid(tmp_path, "m", 8, 64) == recovery.Loaded(None, [])
    made = [_save(tmp_path, keep=2).build_id for _ in range(4)]
    left = sorted(p.name for p in (tmp_path / "builds").iterdir())
    assert left == sorted(made[-2:])
    assert (tmp_path / "current").read_text().strip() == made[-1]
