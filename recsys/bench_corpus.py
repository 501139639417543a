"""The corpus the HTTP benchmark serves: articles from shared-format sets, ingested once and reused.

`DIR/*/articles.jsonl.gz` (or one such set, or the bundled sample corpus) are read, up to N
articles spread evenly over the sets, ids prefixed with the set name. They go through the real
engine (`open_engine`, `upsert`, `build`) into `WORK/<digest>/`; the digest covers the input
files, N and the settings that shape the index, so a second run with the same inputs reuses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from recsys.article import Article
from recsys.settings import Settings

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1  # bump when what is stored in a work folder changes
BATCH = 2000


@dataclass(frozen=True)
class Corpus:
    """An ingested benchmark corpus: where its db and index are, its ids and texts, ingest timings."""

    folder: Path
    ids: list[str]
    info: dict

    @property
    def db_path(self) -> Path:
        return self.folder / "bench.db"

    @property
    def index_dir(self) -> Path:
        return self.folder / "index"

    def texts(self) -> list[dict]:
        """{"id", "title", "text"} per article: the text that was embedded, for other systems."""
        with open(self.folder / "texts.jsonl", encoding="utf-8") as rows:
            return [json.loads(line) for line in rows]


def source_files(dataset: Path | None) -> list[Path]:
    """articles.jsonl(.gz) of each set under `dataset`; the bundled sample corpus when None."""
    if dataset is None:
        from recsys.ingest import sample_corpus

        return [sample_corpus()]
    from recsys.evaluate import find_datasets

    found = []
    for folder in find_datasets(dataset):
        found.append(next(p for p in (folder / "articles.jsonl.gz", folder / "articles.jsonl") if p.exists()))
    return found


def quotas(sizes: dict[str, int], limit: int) -> dict[str, int]:
    """Split `limit` over sets as evenly as their sizes allow (small sets give all they have)."""
    out: dict[str, int] = {}
    left, names = limit, sorted(sizes, key=lambda n: (sizes[n], n))
    for i, name in enumerate(names):
        share = left // (len(names) - i)
        out[name] = min(sizes[name], share)
        left -= out[name]
    return out


def _set_name(path: Path) -> str:
    return path.parent.name if path.name.startswith("articles.jsonl") else path.stem


def read_corpus(files: list[Path], limit: int) -> list[Article]:
    """Up to `limit` articles from `files`, ids made unique as `set:id`."""
    from recsys.ingest import read_articles

    by_set: dict[str, list[Article]] = {}
    for path in files:
        articles, errors = read_articles(path)
        if errors:
            log.warning("%s: %d bad rows skipped", path, len(errors))
        by_set[_set_name(path)] = articles
    share = quotas({name: len(rows) for name, rows in by_set.items()}, limit)
    return [a.model_copy(update={"id": f"{name}:{a.id}"}) for name, rows in by_set.items()
            for a in rows[: share[name]]]


def digest(files: list[Path], limit: int, settings: Settings) -> str:
    """Names the work folder: input files (set name and content), N and the index-shaping settings."""
    parts: list[object] = [LAYOUT_VERSION, limit, settings.model, settings.embed_fields, settings.embed_max_chars,
                           settings.hnsw_threshold, settings.hnsw_m]
    for path in files:  # by content, not path or time: a copied or re-provisioned data folder is the same corpus
        parts.append([_set_name(path), hashlib.sha256(path.read_bytes()).hexdigest()])
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:16]


def prepare(dataset: Path | None, limit: int, work: Path, settings: Settings) -> Corpus:
    """The corpus in `work/<digest>/`, ingested now unless a finished one is already there."""
    files = source_files(dataset)
    folder = work / digest(files, limit, settings)
    marker = folder / "corpus.json"
    if marker.exists():
        info = json.loads(marker.read_text())
        log.info("reusing benchmark corpus %s (%d articles); building its index afresh", folder, info["articles"])
        # the ingest is reused, the build is not: it is what the code under test makes of the stored vectors
        info = {**info, "reused": True, "build_s": _build(folder, settings)}
        return Corpus(folder, (folder / "ids.txt").read_text(encoding="utf-8").splitlines(), info)
    shutil.rmtree(folder, ignore_errors=True)  # an unfinished earlier attempt: start clean, time it afresh
    folder.mkdir(parents=True)
    articles = read_corpus(files, limit)
    info = _ingest(articles, folder, settings)
    info["sources"] = [str(p) for p in files]
    (folder / "ids.txt").write_text("".join(a.id + "\n" for a in articles), encoding="utf-8")
    marker.write_text(json.dumps(info, indent=2))
    return Corpus(folder, [a.id for a in articles], {**info, "reused": False})


def _build(folder: Path, settings: Settings) -> float:
    """Seconds for `recsys build` of a stored corpus (the fresh build becomes the one served)."""
    from recsys.engine import open_engine

    engine = open_engine(settings.model_copy(update={"db_path": folder / "bench.db", "index_dir": folder / "index"}))
    start = time.perf_counter()
    engine.build()
    build_s = time.perf_counter() - start
    engine.store.close()
    return build_s


def _ingest(articles: list[Article], folder: Path, settings: Settings) -> dict:
    """upsert in batches, then build; writes texts.jsonl; returns counts and timings."""
    from recsys.embed import article_text, parse_fields
    from recsys.engine import open_engine

    local = settings.model_copy(update={"db_path": folder / "bench.db", "index_dir": folder / "index"})
    engine = open_engine(local)
    fields = parse_fields(local.embed_fields)
    with open(folder / "texts.jsonl", "w", encoding="utf-8") as out:
        for a in articles:
            row = {"id": a.id, "title": a.title, "text": article_text(a, fields, local.embed_max_chars)}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    start = time.perf_counter()
    for first in range(0, len(articles), BATCH):
        engine.upsert(articles[first : first + BATCH])
        log.info("ingested %d/%d articles", min(first + BATCH, len(articles)), len(articles))
    ingest_s = time.perf_counter() - start
    start = time.perf_counter()
    engine.build()
    build_s = time.perf_counter() - start
    health = json.loads(json.dumps(engine.health(), default=str))
    engine.store.close()
    by_set: dict[str, int] = {}
    for a in articles:
        by_set[a.id.split(":", 1)[0]] = by_set.get(a.id.split(":", 1)[0], 0) + 1
    return {"articles": len(articles), "by_set": by_set, "ingest_s": ingest_s,
            "ingest_articles_per_s": len(articles) / ingest_s if ingest_s else None,
            "build_s": build_s, "engine": health, "model": engine.embedder.name}
