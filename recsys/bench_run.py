"""Runs every part of `recsys bench` and collects the JSON."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from recsys import bench
from recsys.bench_http import HttpConfig
from recsys.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BenchOptions:
    """What `recsys bench` runs: the micro-benchmarks (encoder, index) and the HTTP part."""

    dataset: Path | None = None
    articles: int = 100_000
    work_dir: Path = Path.home() / ".cache" / "recsys" / "bench"
    sizes: tuple[int, ...] = (100_000,)
    n_encode: int = 512
    micro: bool = True
    api: bool = True
    http: HttpConfig = field(default_factory=HttpConfig)


def _texts(dataset: Path | None, limit: int | None) -> list[str]:
    from recsys.ingest import sample_corpus
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


def run_micro(settings: Settings, dataset: Path | None, sizes: tuple[int, ...], n_encode: int) -> dict:
    """Encoder, index (real and synthetic vectors), BLAS and threads numbers."""
    from recsys.embed import load_embedder

    embedder = load_embedder(settings)
    result: dict = {"model": embedder.name}
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
    vectors = bench.synthetic_vectors(max(sizes or (50_000,)), embedder.dimension)
    result["blas"] = bench.bench_blas(vectors)
    result["faiss_threads_under_load"] = bench.bench_threads(vectors[:50_000])
    return result


def run_bench(settings: Settings, options: BenchOptions) -> dict:
    """The whole benchmark as one JSON-able dict; wrk is checked first so a missing one fails fast."""
    from recsys.bench_wrk import find_wrk

    if options.api:
        find_wrk(options.http.wrk)
    result: dict = {"environment": bench.environment(), "options": {
        "dataset": str(options.dataset or ""), "articles": options.articles, "sizes": list(options.sizes),
        "n_encode": options.n_encode, "micro": options.micro, "api": options.api}}
    if options.micro:
        result.update(run_micro(settings, options.dataset, options.sizes, options.n_encode))
    if options.api:
        from recsys.bench_corpus import prepare
        from recsys.bench_http import bench_http

        corpus = prepare(options.dataset, options.articles, options.work_dir, settings)
        result["corpus"] = {**corpus.info, "folder": str(corpus.folder)}
        result["http"] = bench_http(corpus, options.http)
        if options.http.txtai_venv is not None:
            from recsys.bench_txtai import bench_txtai

            result["txtai"] = bench_txtai(corpus, options.http)
    return result
