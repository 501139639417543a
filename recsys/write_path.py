"""The write path: articles and their vectors stored so that each article's text, metadata and vector
change together, whatever other threads, engines and processes write or delete meanwhile.

An upsert reads what is stored (content hash and vector model of each article), embeds the articles
whose text changed, outside any transaction (embedding is slow), then writes in one `BEGIN IMMEDIATE`
transaction. Inside it each row is checked against what is stored *now*:

- a row sent with a fresh vector carries the vector of its own text, so text and vector always match;
- a row sent without one ("unchanged, keep the stored vector") is written only if the stored article
  still has that text's hash and a vector (with its headline vector) of this model; otherwise another
  writer changed or deleted it meanwhile, the row is left out, embedded, and written again with its
  vector (a second round never misses: every row in it carries its own vector);
- a delete wins over every upsert that began before it: `Store.delete` leaves a tombstone with a
  sequence number, each upsert notes the highest sequence before it reads anything (`since`), and a row
  whose tombstone is newer is not written (counted in `UpsertResult.skipped`). An upsert that began
  after the delete stores the article again (its tombstone is dropped then); from there on concurrent
  upserts of one article race as before, the last to commit wins, each with its own vector.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from recsys.article import FIELDS, Article
from recsys.embed import Embedder, content_hash, encode_headlines
from recsys.errors import RecsysError

if TYPE_CHECKING:
    from recsys.catalog import Catalog
    from recsys.store import Store

log = logging.getLogger(__name__)

Row = tuple[Article, str, np.ndarray | None, np.ndarray | None]  # article, content hash, vector, headline vector


@dataclass(frozen=True)
class UpsertResult:
    inserted: int
    updated: int
    embedded: int
    skipped: int = 0  # deleted after this upsert began: the delete wins, nothing was stored


@dataclass
class WriteOutcome:
    """What one write transaction did with its rows, by article id."""

    inserted: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)  # sent without a vector, but the stored one no longer fits
    dropped: list[str] = field(default_factory=list)  # deleted after the writer's `since`


def as_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def write_rows(db: sqlite3.Connection, rows: Sequence[Row], model: str, since: int | None, now: str) -> WriteOutcome:
    """Write the rows inside the caller's open write transaction; `since`: the writer's tombstone mark
    (None: a writer that read nothing before, so no delete is newer than it)."""
    out = WriteOutcome()
    for article, text_hash, vector, headline in rows:
        stored = db.execute("SELECT a.content_hash, a.vid, v.model, v.headline IS NOT NULL FROM articles a "
                            "LEFT JOIN vectors v ON v.vid = a.vid WHERE a.id = ?", (article.id,)).fetchone()
        tomb = db.execute("SELECT seq FROM deletions WHERE article_id = ?", (article.id,)).fetchone()
        if since is not None and tomb is not None and tomb[0] > since:
            out.dropped.append(article.id)
            continue
        if vector is None:  # "keep the stored vector": only if it is still this text's, with its headline's
            if stored is None or stored[0] != text_hash or stored[2] != model or not stored[3]:
                out.missed.append(article.id)
                continue
            vid = stored[1]
        else:
            db.execute("DELETE FROM vectors WHERE article_id = ?", (article.id,))
            vid = db.execute("INSERT INTO vectors (article_id, model, vector, headline) VALUES (?, ?, ?, ?)",
                             (article.id, model, as_blob(vector), None if headline is None else as_blob(headline))
                             ).lastrowid
        _write_article(db, article, text_hash, vid, now)
        if tomb is not None:  # stored again by a newer upsert: the delete is history
            db.execute("DELETE FROM deletions WHERE article_id = ?", (article.id,))
        (out.updated if stored is not None else out.inserted).append(article.id)
    return out


def _write_article(db: sqlite3.Connection, article: Article, text_hash: str, vid: int | None, now: str) -> None:
    values = article.model_dump(include=set(FIELDS))
    values["published_at"] = article.published_at.isoformat() if article.published_at else None
    values["tags"] = json.dumps(article.tags, ensure_ascii=False)
    cols, marks = ", ".join(FIELDS), ", ".join("?" * len(FIELDS))
    db.execute(f"INSERT OR REPLACE INTO articles ({cols}, published_ts, content_hash, vid, updated_at) "
               f"VALUES ({marks}, ?, ?, ?, ?)",
               [values[name] for name in FIELDS] + [article.published_ts, text_hash, vid, now])


def store_articles(store: Store, embedder: Embedder, articles: Sequence[Article], progress: bool = False,
                   since: int | None = None) -> UpsertResult:
    """Embed what changed and write it (see the module docstring); `since`: the tombstone mark the caller
    read before it read the articles (a build re-embedding stored ones), else read here first."""
    since = store.deletion_mark() if since is None else since  # first: a delete after this point wins
    known = store.fingerprints(a.id for a in articles)
    texts = {a.id: embedder.text_of(a) for a in articles}
    hashes = {i: content_hash(t) for i, t in texts.items()}
    pending = list({a.id: a for a in articles}.values())  # one row per id, the last one sent
    stale = [a for a in pending if known.get(a.id) != (hashes[a.id], embedder.name)]
    fresh: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    done = WriteOutcome()
    for _ in range(3):  # the second round carries a vector in every row, so it cannot miss
        vectors = embedder.encode([texts[a.id] for a in stale], progress=progress)
        # the headline alone, for the story rule: outlets' headlines of one event agree more than their leads
        headlines = encode_headlines(embedder, stale, progress=progress)
        fresh.update({a.id: (v, h) for a, v, h in zip(stale, vectors, headlines)})
        outcome = store.upsert([(a, hashes[a.id], *fresh.get(a.id, (None, None))) for a in pending],
                               embedder.name, since=since)
        for name in ("inserted", "updated", "dropped"):
            getattr(done, name).extend(getattr(outcome, name))
        if not outcome.missed:
            return UpsertResult(len(done.inserted), len(done.updated), len(fresh), len(done.dropped))
        log.info("%d article(s) changed, deleted or lost their vector since they were read: embedding them again",
                 len(outcome.missed))
        missed = set(outcome.missed)
        pending = stale = [a for a in pending if a.id in missed]
    raise RecsysError(f"articles {sorted(missed)[:5]} could not be written with their vectors")


def drop_deleted(catalog: Catalog, store: Store, ids: Sequence[str]) -> int:
    """Kill the catalog rows of articles deleted (by any process) whose row is no longer their current
    vector: gone from the store, or stored again under another vid that sync appends. The count killed."""
    rows = {i: catalog.row_of_id[i] for i in ids if i in catalog.row_of_id}
    current = store.current_vids(list(rows))
    stale = [i for i, row in rows.items() if current.get(i) != int(catalog.col["vid"][row])]
    for ident in stale:
        catalog.kill(ident)
    return len(stale)
