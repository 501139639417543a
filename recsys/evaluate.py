"""Offline evaluation: rank labelled queries through the same `related()` path as the API.

Systems (recsys.baselines): random, newest in section, character TF-IDF, BM25 and, per model,
the engine as dense-only and hybrid retrieval (no floor, no fill, no collapse), `served` (the
engine with the running settings: what the API serves) and `served:nocollapse` (the same
without story collapse). Item-level figures count a relevant item when it is shown; story-level
ones also when it was collapsed into a shown item (recsys.story_eval).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys import metrics, story_eval, story_metrics
from recsys.baselines import (  # noqa: F401 - re-exported
    Shown, Similarity, System, bm25_system, engine_system, newest_system, random_system, tfidf_system,
)
from recsys.datasets import (  # noqa: F401 - re-exported: recsys.evaluate is where callers look
    Dataset, find_datasets, load_dataset, relevant_sets, select_queries, stories,
)
from recsys.settings import Settings

log = logging.getLogger(__name__)

CURVE_KS = (1, 2, 3, 5, 10, 20)
# Retrieval alone: no relevance floor, no fill, no collapse (fill is switched off per request).
RETRIEVAL = {"collapse_stories": False, "related_floor": -1.0}
VARIANTS = {
    "dense": {**RETRIEVAL, "fusion": "dense", "lexical_weight": 0.0},
    "hybrid": RETRIEVAL,
    "served": {},
    "served:nocollapse": {"collapse_stories": False},
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
    story_threshold: float = 0.75  # pair score at or above which two articles are one story


def work_folder(root: Path, dataset: str, model: str | None, split: str | None) -> Path:
    from recsys.embed import DEFAULT_MODEL

    # keyed by the resolved name, so a change of default model never meets an old cache
    digest = hashlib.sha256(f"{model or DEFAULT_MODEL}|{split}".encode()).hexdigest()[:10]
    return root / dataset / digest


def _settings(base: Settings, update: dict) -> Settings:
    known = {k: v for k, v in update.items() if k in Settings.model_fields}
    if len(known) < len(update):
        log.warning("settings %s unknown to this engine: ignored", sorted(set(update) - set(known)))
    return base.model_copy(update=known)


def open_model_engines(ds: Dataset, model: str | None, base: Settings, work: Path) -> dict[str, object]:
    """Engines per VARIANTS sharing one store and build in `work`; embeddings are cached there."""
    from recsys.embed import load_embedder
    from recsys.engine import open_engine
    from recsys.errors import IndexMismatch

    work.mkdir(parents=True, exist_ok=True)  # the evaluation's own scratch store (the store makes no folders)
    settings = _settings(base, {"model": model, "db_path": work / "recsys.db", "index_dir": work / "index"})
    embedder = load_embedder(settings)
    try:
        served = open_engine(settings, embedder=embedder)
    except IndexMismatch:  # the cached build is another model's (a new revision of the same name): rebuild it
        served = open_engine(settings, embedder=embedder, rebuild=True)
    if served.upsert(ds.articles, progress=True).embedded or served.live.manifest.count != len(ds.articles):
        served.build()
    return {name: served if not update else open_engine(_settings(settings, update), embedder=embedder)
            for name, update in VARIANTS.items()}


def pair_agreement(ds: Dataset, similarity: Similarity | None) -> dict[str, float | int | None]:
    known = {a.id for a in ds.articles}
    pairs = [(a, b, s) for a, b, s in ds.pairs if a in known and b in known]
    if similarity is None or not pairs:
        return {"spearman": None, "pearson": None, "pairs": len(pairs)}
    system = [similarity(a, b) for a, b, _ in pairs]
    gold = [s for _, _, s in pairs]
    return {"spearman": metrics.spearman(system, gold), "pearson": metrics.pearson(system, gold), "pairs": len(pairs)}


def _query_row(shown: Shown, rel: dict[str, float], k: int) -> dict[str, float]:
    ranked = shown.ids
    row = {f"recall@{c}": metrics.recall_at_k(ranked, rel, c) for c in CURVE_KS}
    row.update({"mrr": metrics.reciprocal_rank(ranked, rel), f"ndcg@{k}": metrics.ndcg_at_k(ranked, rel, k, rel)})
    row[f"recall@{k}"] = metrics.recall_at_k(ranked, rel, k)
    return row | story_eval.story_row(ranked, shown.collapsed, rel, k)


def score_system(ds: Dataset, system: System, queries: Sequence[str], relevant: dict[str, dict[str, float]],
                 k: int, judge: story_eval.Judge, story_of: dict[str, str]) -> dict:
    """Item- and story-level accuracy, per-language and beyond-accuracy numbers of one system."""
    from tqdm import tqdm

    by_id = {a.id: a for a in ds.articles}
    per_query, per_lang, lists, ages, labels, collapsed, reasons = [], defaultdict(list), [], [], [], [], []
    for qid in tqdm(queries, desc=f"{ds.name}: {system.name}", leave=False, disable=len(queries) < 200):
        query, rel = by_id[qid], relevant[qid]
        shown = system.rank(query)
        top = shown.ids[:k]
        lists.append(top)
        per_query.append(_query_row(shown, rel, k))
        per_lang[query.lang].append(per_query[-1][f"recall@{k}"])
        labels.append(story_eval.filler_labels(qid, top, rel, judge))
        collapsed.append({i: shown.collapsed[i] for i in top if i in shown.collapsed})
        reasons.append(None if shown.reasons is None else shown.reasons[:k])
        ages += [(query.published_ts - by_id[i].published_ts) / 86_400 for i in top
                 if query.published_ts is not None and by_id[i].published_ts is not None]
    lang_of = {a.id: a.lang for a in ds.articles}
    return {
        "system": system.name,
        "queries": len(queries),
        **metrics.mean_metrics(per_query),
        "filler_rate": story_metrics.filler_rate(lists, labels),
        "filler_judged": sum(len(x) for x in labels),  # shown items whose relation to the query is labelled
        "fill_share": story_eval.fill_share(reasons),
        "collapse_precision": story_metrics.collapse_precision(collapsed, judge),
        "collapsed_items": sum(len(v) for c in collapsed for v in c.values()),
        "per_language_recall": {lang: float(np.mean(v)) for lang, v in sorted(per_lang.items())},
        "duplicate_rate": metrics.duplicate_rate(lists, story_of),
        "same_language_share": metrics.language_share(lists, lang_of, [by_id[q].lang for q in queries]),
        "age_days": metrics.age_stats(ages),
        "coverage": metrics.catalogue_coverage(lists, len(ds.articles)),
        "pair_agreement": pair_agreement(ds, system.similarity),
    }


def baseline_systems(ds: Dataset, depth: int, config: EvalConfig, base: Settings) -> list[System]:
    from recsys.embed import article_text, parse_fields

    fields = parse_fields(base.embed_fields)

    def text_of(a):  # noqa: ANN001, ANN202
        return article_text(a, fields, base.embed_max_chars)

    return [random_system(ds.articles, depth, config.seed, config.as_of),
            newest_system(ds.articles, depth, config.as_of),
            tfidf_system(ds.articles, depth, config.as_of, text_of),
            bm25_system(ds.articles, depth, config.as_of, text_of)]


def evaluate_dataset(folder: Path, config: EvalConfig, base: Settings, work_root: Path) -> dict:
    """Every system on one dataset, same queries, same relevance labels."""
    ds = load_dataset(folder, config.split)
    relevant = relevant_sets(ds, config.threshold)
    queries = select_queries(relevant, config.max_queries, config.seed)
    depth = max(config.k, max(CURVE_KS))
    systems, decisions = baseline_systems(ds, depth, config, base), {}
    for model in config.models:
        engines = open_model_engines(ds, model, base, work_folder(work_root, ds.name, model, config.split))
        label = model or "default"  # the configured RECSYS_MODEL, else the shipped model
        suffix = f":{label}" if len(config.models) > 1 else ""
        for name, engine in engines.items():
            retrieval = name in ("dense", "hybrid")
            shown_as = f"{name}:{label}" if retrieval else f"{name}{suffix}"
            # served ranks differently but scores pairs as hybrid does: its pair agreement would repeat hybrid's
            systems.append(engine_system(shown_as, engine, depth, config.lang_policy, config.as_of,
                                         fill=not retrieval, pair_scores=retrieval))
        decisions[label] = story_eval.decision_quality(ds, engines["served"], config.story_threshold)
    judge, story_of = story_eval.story_judge(ds, config.story_threshold), stories(ds, config.story_threshold)
    results = [score_system(ds, s, queries, relevant, config.k, judge, story_of) for s in systems]
    return {"dataset": ds.name, "articles": len(ds.articles), "pairs": len(ds.pairs), "queries": len(queries),
            "same_story_decision": decisions, "results": results}
