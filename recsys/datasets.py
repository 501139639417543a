"""Labelled data sets for offline evaluation and calibration (the format of shared/data/README.md).

A set is a folder holding `articles.jsonl.gz` and optionally `pairs.jsonl.gz`, or one articles
file whose `cluster` field labels same-story groups (the bundled sample corpus). Relevant partners
of a query: pairs scored at or above a threshold, and articles of the same cluster.
"""

from __future__ import annotations

import gzip
import json
import logging
import random
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from recsys.article import Article
from recsys.errors import InvalidInput
from recsys.ingest import read_articles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Dataset:
    """Articles plus their labels: (a, b, gold score) pairs and same-event clusters."""

    name: str
    articles: list[Article]
    pairs: list[tuple[str, str, float]]
    clusters: dict[str, str] = field(default_factory=dict)


def _jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def find_datasets(root: Path) -> list[Path]:
    """The folder itself if it is a dataset (or an articles file), else its subfolders that are."""
    if root.is_file():
        return [root]
    if (root / "articles.jsonl.gz").exists() or (root / "articles.jsonl").exists():
        return [root]
    found = sorted(p for p in root.iterdir() if p.is_dir() and (p / "articles.jsonl.gz").exists()) if root.is_dir() else []
    if not found:
        raise InvalidInput(f"{root}: no articles.jsonl(.gz) here or in its subfolders")
    return found


def load_dataset(folder: Path, split: str | None = None) -> Dataset:
    """Read one set; with pairs split into train/dev, keep `split` (default: dev when present).

    `folder` may also be one articles file (.jsonl or .jsonl.gz, labelled by `cluster`), named by its stem."""
    if folder.is_file():
        articles, _ = read_articles(folder)
        clusters = {str(r["id"]): str(r["cluster"]) for r in _jsonl(folder) if r.get("cluster") is not None}
        return Dataset(folder.name.split(".")[0], articles, [], clusters)
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
