"""`recsys bench`: how fast each stage is, measured in one run and written as JSON.

Speeds are noisy on a shared machine, so comparisons (HNSW versus exact, the API versus a bare
FastAPI endpoint, BLAS on versus off) are taken in the same run and reported as ratios.
"""

from __future__ import annotations

import logging
import platform
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

from recsys import index as idx
from recsys.settings import Settings

log = logging.getLogger(__name__)


def percentiles(seconds: Sequence[float]) -> dict[str, float]:
    """p50 and p99 in milliseconds (linear interpolation)."""
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def synthetic_vectors(n: int, dim: int, seed: int = 0, clusters: int = 256) -> np.ndarray:
    """Unit vectors scattered around cluster centres: closer to real embeddings than uniform noise."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def bench_encoder(embedder, texts: Sequence[str], repeats: int = 1) -> dict:  # noqa: ANN001
    """Sentences and tokens per second of the loaded model on these texts."""
    embedder.encode(list(texts[:8]))  # warm-up: first call allocates
    tokens = embedder.model.tokenize(list(texts))
    mask = tokens.get("attention_mask")
    n_tokens = int(mask.sum()) if mask is not None else int(tokens["input_ids"].numel())
    start = time.perf_counter()
    for _ in range(repeats):
        embedder.encode(list(texts))
    elapsed = (time.perf_counter() - start) / repeats
    return {"model": embedder.name, "sentences": len(texts), "tokens": n_tokens, "seconds": elapsed,
            "sentences_per_s": len(texts) / elapsed, "tokens_per_s": n_tokens / elapsed,
            "batch_size": embedder.batch_size, "torch_threads": _torch_threads()}


def _torch_threads() -> int:
    import torch

    return int(torch.get_num_threads())


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_index(vectors: np.ndarray, settings: Settings, queries: int = 200, k: int = 10) -> dict:
    """Build time, bytes per article, single-query latency and recall@k against exact search, per index type."""
    n, dim = vectors.shape
    rng = np.random.default_rng(1)
    qs = vectors[rng.choice(n, size=min(queries, n), replace=False)] + 0.05 * rng.standard_normal((min(queries, n), dim)).astype(np.float32)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    out: dict[str, dict] = {}
    exact: np.ndarray | None = None
    for kind, threshold in (("flat", n + 1), ("hnsw", 0)):
        index = idx.new_index(dim, n, idx.IndexParams(threshold, settings.hnsw_m, settings.hnsw_ef_search))
        build_s = _timed(lambda: index.add(vectors))
        latencies, found = [], []
        for q in qs:
            start = time.perf_counter()
            _, got = index.search(q.reshape(1, -1), k)
            latencies.append(time.perf_counter() - start)
            found.append(got[0])
        found_arr = np.stack(found)
        if kind == "flat":
            exact = found_arr
        recall = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found_arr, exact)]))
        size = len(faiss.serialize_index(index))
        out[kind] = {"build_s": build_s, "bytes_per_article": size / n, f"recall@{k}_vs_exact": recall,
                     **percentiles(latencies)}
    out["hnsw_vs_flat_p50_speedup"] = out["flat"]["p50_ms"] / out["hnsw"]["p50_ms"]
    return {"articles": n, "dimension": dim, "hnsw_m": settings.hnsw_m, "ef_search": settings.hnsw_ef_search,
            "faiss_threads": faiss.omp_get_max_threads(), "by_type": out}


def bench_blas(vectors: np.ndarray, batch: int = 256, k: int = 10) -> dict:
    """Batched exact search below faiss's BLAS threshold (nq * d), and with the threshold lowered."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    queries = vectors[:batch]
    default = faiss.cvar.distance_compute_blas_threshold
    timings = {}
    try:
        for label, value in (("default_threshold", default), ("blas_forced", 1)):
            faiss.cvar.distance_compute_blas_threshold = value
            index.search(queries, k)  # warm-up
            timings[label] = min(_timed(lambda: index.search(queries, k)) for _ in range(3))
    finally:
        faiss.cvar.distance_compute_blas_threshold = default
    return {"threshold": default, "batch": batch, "dimension": vectors.shape[1],
            "uses_blas_by_default": batch * vectors.shape[1] >= default,
            "seconds": timings, "blas_speedup": timings["default_threshold"] / timings["blas_forced"]}


def bench_threads(vectors: np.ndarray, clients: int = 4, per_client: int = 50, k: int = 10) -> dict:
    """Single-query latency under concurrent callers, with 1 FAISS thread versus all cores."""
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    result = {}
    before = faiss.omp_get_max_threads()
    try:
        for threads in sorted({1, before}):
            faiss.omp_set_num_threads(threads)
            result[f"omp_{threads}"] = _concurrent(lambda i: index.search(vectors[i % len(vectors)].reshape(1, -1), k),
                                                   clients, per_client)
    finally:
        faiss.omp_set_num_threads(before)
    return {"clients": clients, **result}


def _concurrent(call: Callable[[int], object], clients: int, per_client: int) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()

    def client(c: int) -> None:
        for i in range(per_client):
            took = _timed(lambda: call(c * per_client + i))
            with lock:
                latencies.append(took)

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client, range(clients)))
    wall = time.perf_counter() - start
    return {"requests": len(latencies), "requests_per_s": len(latencies) / wall, **percentiles(latencies)}


def environment() -> dict:
    import os

    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "faiss": faiss.__version__, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "tmp": tempfile.gettempdir()}
