"""`recsys bench` on small sizes: every section present, numbers sane and internally consistent."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recsys import bench
from recsys.cli import main
from recsys.settings import Settings


def test_percentiles_by_hand() -> None:
    # 1..100 ms: p50 = 50.5 ms, p99 = 99.01 ms (linear interpolation)
    got = bench.percentiles([i / 1000 for i in range(1, 101)])
    assert got["p50_ms"] == pytest.approx(50.5) and got["p99_ms"] == pytest.approx(99.01)


def test_index_bench_reports_exact_recall_one_for_flat() -> None:
    vectors = bench.synthetic_vectors(3000, 16, seed=2)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    result = bench.bench_index(vectors, Settings(hnsw_ef_search=64), queries=50)
    flat, hnsw = result["by_type"]["flat"], result["by_type"]["hnsw"]
    assert flat["recall@10_vs_exact"] == 1.0 and 0.8 <= hnsw["recall@10_vs_exact"] <= 1.0
    assert flat["bytes_per_article"] >= 16 * 4 and hnsw["bytes_per_article"] > flat["bytes_per_article"]
    blas = bench.bench_blas(vectors, batch=64)
    assert blas["uses_blas_by_default"] is (64 * 16 >= blas["threshold"])
    threads = bench.bench_threads(vectors, clients=2, per_client=5)
    assert threads["omp_1"]["requests"] == 10


def test_cli_bench_writes_json(tmp_path: Path, tiny_model_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECSYS_MODEL", str(tiny_model_path))
    out = tmp_path / "bench.json"
    args = ["bench", "--sizes", "2000", "--encode", "64", "--clients", "2", "--requests", "5", "--out", str(out)]
    assert main(args) == 0
    result = json.loads(out.read_text())
    assert result["encoder"]["sentences"] == 64 and result["encoder"]["sentences_per_s"] > 0
    assert result["index_synthetic"][0]["articles"] == 2000
    api = result["api"]
    assert api["recsys"]["status_counts"] == {"200": 10} and api["bare_fastapi"]["status_counts"] == {"200": 10}
    assert api["throughput_ratio"] == pytest.approx(api["recsys"]["requests_per_s"] / api["bare_fastapi"]["requests_per_s"])
