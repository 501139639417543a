"""Offline evaluation: rank labelled queries through the same `related()` path as the API.

A dataset folder holds `articles.jsonl.gz` and optionally `pairs.jsonl.gz` (the format of
shared/data/README.md). Relevant partners of a query: pairs scored at or above a threshold,
and articles of the same cluster. Systems: baselines (random, newest, lexical) and, for each
model, the engine with dense scores only and with the hybrid score.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recsys import lexical, metrics
from recsys.errors import InvalidInput
from recsys.ingest import read_articles
from recsys.recommend import Filters
from recsys.settings import Settings
from recsys.store import Article

log = logging.getLogger(__name__)

Ranker = Callable[[Article], list[str]]
Similarity = Callable[[str, str], float]
CURVE_KS = (1, 2, 3, 5, 10, 20)


@dataclass(frozen=True)
class Dataset:
    """Articles plus their labels: (a, b, gold score) pairs and same-event clusters."""

    name: str
    articles: list[Article]
    pairs: list[tuple[str, str, float]]
    clusters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class System:
    name: str
    rank: Ranker
    similarity: Similarity | None = None


def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def find_datasets(root: Path) -> list[Path]:
    """The folder itself if it is a dataset, else its subfolders that are."""
    if (root / "articles.jsonl.gz").exists() or (root / "articles.jsonl").exists():
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / "articles.jsonl.gz").exists()) if root.is_dir() else []
    if not found:
        raise InvalidInput(f"{root}: no articles.jsonl(.gz) here or in its subfolders")
    return found


def load_dataset(folder: Path, split: str | None = None) -> Dataset:
    """Read one set; with pairs split into train/dev, keep `split` (default: dev when present)."""
    articles_path = next(p for p in (folder / "articles.jsonl.gz", folder / "articles.jsonl") if p.exists())
    articles, errors = read_articles(articles_path)
    if errors:
        log.warning("%s: %d bad rows skipped (first: line %d, %s)", folder.name, len(errors), errors[0].line, errors[0].reason)
    clusters = {str(r["id"]): str(r["cluster"]) for r in _jsonl(articles_path) if r.get("cluster") is not None}
    rows = _jsonl(folder / "pairs.jsonl.gz") if (folder / "pairs.jsonl.gz").exists() else []
    splits = {r.get("split") for r in rows}
    chosen = split or ("dev" if "dev" in splits else None)
    if chosen is not None:
        rows = [r for r in rows if r.get("split") == chosen]
        keep = {str(r["a"]) for r in rows} | {str(r["b"]) for r in rows}
        articles = [a for a in articles if a.id in keep]
    pairs = [(str(r["a"]), str(r["b"]), float(r["score"])) for r in rows]
    return Dataset(folder.name, articles, pairs, clusters)


def relevant_sets(ds: Dataset, threshold: float) -> dict[str, dict[str, float]]:
    """query id -> {relevant id: gain}; pairs at or above the threshold, both ways, and cluster mates."""
    relevant: dict[str, dict[str, float]] = defaultdict(dict)
    known = {a.id for a in ds.articles}
    for a, b, score in ds.pairs:
        if score >= threshold and a != b and a in known and b in known:
            relevant[a][b] = max(score, relevant[a].get(b, 0.0))
            relevant[b][a] = max(score, relevant[b].get(a, 0.0))
    members: dict[str, list[str]] = defaultdict(list)
    for ident, label in ds.clusters.items():
        if ident in known:
            members[label].append(ident)
    for group in members.values():
        for ident in group:
            relevant[ident].update({other: 1.0 for other in group if other != ident})
    return {q: rel for q, rel in relevant.items() if rel}


def stories(ds: Dataset, threshold: float) -> dict[str, str]:
    """Story label per article: its cluster, else its component of positive pairs."""
    if ds.clusters:
        return dict(ds.clusters)
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b, score in ds.pairs:
        if score >= threshold:
            parent[find(a)] = find(b)
    return {x: find(x) for x in list(parent)}


def select_queries(relevant: dict[str, dict[str, float]], limit: int | None, seed: int) -> list[str]:
    queries = sorted(relevant)
    if limit is not None and len(queries) > limit:
        queries = sorted(random.Random(seed).sample(queries, limit))
    return queries


def _eligible(query: Article, pool: Sequence[Article], as_of: bool) -> list[Article]:
    if not as_of:
        return [a for a in pool if a.id != query.id]
    moment = query.published_ts
    return [a for a in pool if a.id != query.id and moment is not None and a.published_ts is not None
            and a.published_ts < moment]


def random_system(ds: Dataset, k: int, seed: int, as_of: bool) -> System:
    def rank(query: Article) -> list[str]:
        rng = random.Random(f"{seed}:{query.id}")
        pool = [a.id for a in _eligible(query, ds.articles, as_of)]
        return rng.sample(pool, min(k, len(pool)))

    return System("random", rank)


def newest_system(ds: Dataset, k: int, as_of: bool) -> System:
    """What the site shows today: the newest items of the query's section (or of all, without sections)."""
    def rank(query: Article) -> list[str]:
        pool = [a for a in _eligible(query, ds.articles, as_of) if query.section is None or a.section == query.section]
        pool.sort(key=lambda a: (-(a.published_ts or float("-inf")), a.id))
        return [a.id for a in pool[:k]]

    return System("newest_in_section", rank)


def lexical_system(ds: Dataset, k: int, as_of: bool, text_of: Callable[[Article], str]) -> System:
    """Character n-gram TF-IDF over title and lead, like Elasticsearch's more_like_this."""
    stats = lexical.LexicalStats()
    texts = [text_of(a) for a in ds.articles]
    stats.add(texts)
    matrix = lexical.vectors(texts, stats.idf)
    position = {a.id: i for i, a in enumerate(ds.articles)}
    published = np.array([a.published_ts if a.published_ts is not None else np.nan for a in ds.articles])

    def rank(query: Article) -> list[str]:
        scores = (matrix @ matrix[position[query.id]].T).toarray().ravel()
        scores[position[query.id]] = -np.inf
        if as_of:
            scores[~(published < (query.published_ts if query.published_ts is not None else -np.inf))] = -np.inf
        order = np.lexsort((np.arange(len(scores)), -scores))[:k]
        return [ds.articles[i].id for i in order if np.isfinite(scores[i])]

    def similarity(a: str, b: str) -> float:
        return float((matrix[position[a]] @ matrix[position[b]].T).toarray()[0, 0])

    return System("lexical_tfidf", rank, similarity)


def engine_system(name: str, engine, k: int, lang_policy: str, as_of: bool) -> System:  # noqa: ANN001
    """The product path: Engine.related_to_article with the API's filters."""
    def rank(query: Article) -> list[str]:
        moment = query.published_ts if as_of else None
        if as_of and moment is None:
            return []
        filters = Filters(limit=k, lang_policy=lang_policy, published_before=moment)
        return [a.id for a, _ in engine.related_to_article(query.id, filters).items]

    def similarity(a: str, b: str) -> float:
        return engine.similarity(a, b)

    return System(name, rank, similarity)


def work_folder(root: Path, dataset: str, model: str | None, split: str | None) -> Path:
    from recsys.embed import DEFAULT_MODEL

    # keyed by the resolved name, so a change of default model never meets an old cache
    digest = hashlib.sha256(f"{model or DEFAULT_MODEL}|{split}".encode()).hexdigest()[:10]
    return root / dataset / digest


def open_model_engines(ds: Dataset, model: str | None, base: Settings, work: Path) -> tuple[object, object]:
    """(dense-only, hybrid) engines sharing one store and build in `work`; embeddings are cached there."""
    from recsys.embed import load_embedder
    from recsys.engine import open_engine

    settings = base.model_copy(update={"model": model, "db_path": work / "recsys.db", "index_dir": work / "index"})
    embedder = load_embedder(settings)
    hybrid = open_engine(settings, embedder=embedder)
    if hybrid.upsert(ds.articles, progress=True).embedded or hybrid.live.manifest.count != len(ds.articles):
        hybrid.build()
    dense = open_engine(settings.model_copy(update={"lexical_weight": 0.0}), embedder=embedder)
    return dense, hybrid


def pair_agreement(ds: Dataset, similarity: Similarity | None) -> dict[str, float | int | None]:
    known = {a.id for a in ds.articles}
    pairs = [(a, b, s) for a, b, s in ds.pairs if a in known and b in known]
    if similarity is None or not pairs:
        return {"spearman": None, "pearson": None, "pairs": len(pairs)}
    system = [similarity(a, b) for a, b, _ in pairs]
    gold = [s for _, _, s in pairs]
    return {"spearman": metrics.spearman(system, gold), "pearson": metrics.pearson(system, gold), "pairs": len(pairs)}


def score_system(ds: Dataset, system: System, queries: Sequence[str], relevant: dict[str, dict[str, float]],
                 k: int, story_of: dict[str, str]) -> dict:
    """Accuracy, per-language and beyond-accuracy numbers of one system over the queries."""
    from tqdm import tqdm

    by_id = {a.id: a for a in ds.articles}
    per_query, per_lang, lists, ages = [], defaultdict(list), [], []
    for qid in tqdm(queries, desc=f"{ds.name}: {system.name}", leave=False, disable=len(queries) < 200):
        query, rel = by_id[qid], relevant[qid]
        ranked = system.rank(query)
        lists.append(ranked[:k])
        row = {f"recall@{c}": metrics.recall_at_k(ranked, rel, c) for c in CURVE_KS}
        row.update({"mrr": metrics.reciprocal_rank(ranked, rel), f"ndcg@{k}": metrics.ndcg_at_k(ranked, rel, k, rel)})
        row[f"recall@{k}"] = metrics.recall_at_k(ranked, rel, k)
        per_query.append(row)
        per_lang[query.lang].append(row[f"recall@{k}"])
        ages += [(query.published_ts - by_id[i].published_ts) / 86_400 for i in ranked[:k]
                 if query.published_ts is not None and by_id[i].published_ts is not None]
    lang_of = {a.id: a.lang for a in ds.articles}
    return {
        "system": system.name,
        "queries": len(queries),
        **metrics.mean_metrics(per_query),
        "per_language_recall": {lang: float(np.mean(v)) for lang, v in sorted(per_lang.items())},
        "duplicate_rate": metrics.duplicate_rate(lists, story_of),
        "same_language_share": metrics.language_share(lists, lang_of, [by_id[q].lang for q in queries]),
        "age_days": metrics.age_stats(ages),
        "coverage": metrics.catalogue_coverage(lists, len(ds.articles)),
        "pair_agreement": pair_agreement(ds, system.similarity),
    }


@dataclass(frozen=True)
class EvalConfig:
    """What `recsys evaluate` was asked for."""

    models: tuple[str | None, ...] = (None,)
    k: int = 10
    threshold: float = 0.5
    as_of: bool = False
    lang_policy: str = "any"
    split: str | None = None
    max_queries: int | None = 1000
    seed: int = 0


def evaluate_dataset(folder: Path, config: EvalConfig, base: Settings, work_root: Path) -> dict:
    """Every system on one dataset, same queries, same relevance labels."""
    from recsys.embed import article_text, parse_fields

    ds = load_dataset(folder, config.split)
    relevant = relevant_sets(ds, config.threshold)
    queries = select_queries(relevant, config.max_queries, config.seed)
    depth = max(config.k, max(CURVE_KS))
    fields = parse_fields(base.embed_fields)
    systems = [random_system(ds, depth, config.seed, config.as_of), newest_system(ds, depth, config.as_of),
               lexical_system(ds, depth, config.as_of, lambda a: article_text(a, fields, base.embed_max_chars))]
    for model in config.models:
        work = work_folder(work_root, ds.name, model, config.split)
        dense, hybrid = open_model_engines(ds, model, base, work)
        label = model or "default"  # the configured RECSYS_MODEL, else the shipped model
        systems += [engine_system(f"dense:{label}", dense, depth, config.lang_policy, config.as_of),
                    engine_system(f"hybrid:{label}", hybrid, depth, config.lang_policy, config.as_of)]
    story_of = stories(ds, config.threshold)
    results = [score_system(ds, s, queries, relevant, config.k, story_of) for s in systems]
    return {"dataset": ds.name, "articles": len(ds.articles), "pairs": len(ds.pairs),
            "queries": len(queries), "results": results}
