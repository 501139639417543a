"""Runs every part of `recsys bench` in one process and collects the JSON."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from recsys import bench
from recsys.bench_http import bench_api
from recsys.settings import Settings

log = logging.getLogger(__name__)


def _texts(dataset: Path | None, limit: int | None) -> list[str]:
    from recsys.cli import sample_corpus
    from recsys.evaluate import find_datasets, load_dataset

    if dataset is None:
        from recsys.ingest import read_articles

        articles = read_articles(sample_corpus())[0]
    else:
        articles = load_dataset(find_datasets(dataset)[0]).articles
    texts = [f"{a.title}. {a.text[:600]}".strip() for a in articles]
    if limit is None:
        return texts
    return (texts * (limit // max(1, len(texts)) + 1))[:limit]


def run_bench(settings: Settings, dataset: Path | None, sizes: list[int], n_encode: int,
              clients: int, per_client: int, api: bool) -> dict:
    """Encoder, index (real and synthetic vectors), BLAS, threads and API numbers."""
    from recsys.embed import load_embedder

    embedder = load_embedder(settings)
    result: dict = {"environment": bench.environment(), "model": embedder.name}
    log.info("encoder throughput on %d texts", n_encode)
    texts = _texts(dataset, n_encode)
    result["encoder"] = bench.bench_encoder(embedder, texts)
    real = embedder.encode(sorted(set(_texts(dataset, None)))[:50_000])  # every article of the set, at most 50k
    result["index_real"] = bench.bench_index(real, settings, queries=min(200, len(real)))
    result["index_synthetic"] = []
    for size in sizes:
        log.info("index runs on %d synthetic vectors", size)
        vectors = bench.synthetic_vectors(size, embedder.dimension)
        result["index_synthetic"].append(bench.bench_index(vectors, settings))
    vectors = bench.synthetic_vectors(max(sizes or [50_000]), embedder.dimension)
    result["blas"] = bench.bench_blas(vectors)
    result["faiss_threads_under_load"] = bench.bench_threads(vectors[:50_000])
    if api:
        result["api"] = _api(settings, embedder, clients, per_client)
    return result


def _api(settings: Settings, embedder, clients: int, per_client: int) -> dict:  # noqa: ANN001
    from recsys.api import create_app
    from recsys.cli import sample_corpus
    from recsys.engine import open_engine
    from recsys.ingest import read_articles

    folder = Path(tempfile.mkdtemp(prefix="recsys-bench-"))
    # Rate limiting off: the benchmark is one client hammering on purpose.
    local = settings.model_copy(update={"db_path": folder / "bench.db", "index_dir": folder / "index",
                                        "rate_limit_per_s": 0.0, "cache_max_entries": 0})
    engine = open_engine(local, embedder=embedder)
    articles = read_articles(sample_corpus())[0]
    engine.upsert(articles)
    engine.build()
    log.info("API run: %d clients x %d requests", clients, per_client)
    return bench_api(create_app(local, engine), [a.id for a in articles], clients, per_client)
