"""The article store: SQLite (WAL) holding articles and their current embedding vectors (the
embedded text's, and its headline's alone).

Every vector gets a fresh `vid` (AUTOINCREMENT, never reused). FAISS indexes vids, not article
ids, so a changed or deleted article's old vector simply stops resolving here: that is how
deletions and edits take effect at once even in an HNSW index, which cannot delete.

A delete leaves a tombstone (`deletions`: id, a never reused sequence number, when) until the id is
stored again: upserts that began before it skip the id, and every engine's sync drops the id's
catalog row (see `recsys.write_path`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from contextlib import contextmanager
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from recsys import write_path
from recsys.article import FIELDS, Article, Headline
from recsys.errors import ConfigError, StorageUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS articles (
    id TEXT PRIMARY KEY,
    url TEXT,
    title TEXT NOT NULL,
    text TEXT NOT NULL DEFAULT '',
    lang TEXT NOT NULL,
    published_at TEXT,
    published_ts REAL,
    source TEXT,
    section TEXT,
    tags TEXT NOT NULL DEFAULT '[]',
    image_url TEXT,
    original_url TEXT,
    original_lang TEXT,
    original_source TEXT,
    content_hash TEXT,
    vid INTEGER,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS articles_url ON articles(url);
CREATE UNIQUE INDEX IF NOT EXISTS articles_vid ON articles(vid);
CREATE TABLE IF NOT EXISTS vectors (
    vid INTEGER PRIMARY KEY AUTOINCREMENT,
    article_id TEXT NOT NULL,
    model TEXT NOT NULL,
    vector BLOB NOT NULL,
    headline BLOB
);
CREATE INDEX IF NOT EXISTS vectors_article ON vectors(article_id);
CREATE TABLE IF NOT EXISTS deletions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    article_id TEXT NOT NULL UNIQUE,
    deleted_at TEXT NOT NULL
);
"""

def _row_to_article(row: sqlite3.Row) -> Article:
    data = {name: row[name] for name in FIELDS}
    data["tags"] = json.loads(data["tags"] or "[]")
    return Article.model_validate(data)


RANKING_COLUMNS = "a.id, a.lang, a.published_ts, a.section, a.url, a.original_url, a.title, a.text, a.source, a.content_hash"


HEADLINE_COLUMNS = "id, url, title, source, lang, published_at, section, image_url, original_source"


# SQLite's words for "this write cannot happen here": a full disk, a read-only file or folder, an I/O error
_UNWRITABLE = ("disk is full", "readonly", "read-only", "unable to open", "disk i/o error")


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a full disk or an unwritable database into StorageUnavailable (503, exit 2); the transaction
    was rolled back, so everything stored before stays as it was."""
    try:
        yield
    except sqlite3.OperationalError as exc:
        if not any(words in str(exc).lower() for words in _UNWRITABLE):
            raise
        raise StorageUnavailable(f"cannot write to {path}: {exc}; nothing of this request was stored "
                                 "(free disk space or fix the file's permissions, then retry)") from exc


def _check_path(path: Path, read_only: bool) -> None:
    """A missing folder is a mistyped setting, not a place to create an empty database in."""
    if not path.parent.is_dir():
        raise ConfigError(f"RECSYS_DB_PATH={path}: the folder {path.parent} does not exist; create it or fix the path")
    if read_only and not path.is_file():
        raise ConfigError(f"RECSYS_DB_PATH={path}: no database there; load articles first (`recsys ingest FILE`) "
                          "or point RECSYS_DB_PATH at one")


class Store:
    """SQLite-backed articles and vectors; safe to share between threads."""

    def __init__(self, path: Path, read_only: bool = False) -> None:
        path = Path(path)
        _check_path(path, read_only)
        self.path = path
        self._lock = threading.RLock()
        target = f"{path.resolve().as_uri()}?mode=ro" if read_only else str(path)
        with writing(path):
            self._db = sqlite3.connect(target, check_same_thread=False, timeout=30, isolation_level=None,
                                       uri=read_only)
            self._db.row_factory = sqlite3.Row
            if not read_only:
                self._prepare()
            # a database from before tombstones, opened read-only, has none to read
            self._tombstones = bool(self._query("SELECT 1 FROM sqlite_master WHERE name = 'deletions'"))

    def _prepare(self) -> None:
        """WAL mode, the schema, and the columns later versions added."""
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(vectors)")}
        if "headline" not in columns:  # a store from before headline vectors: they are made on the next build
            self._db.execute("ALTER TABLE vectors ADD COLUMN headline BLOB")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def count(self) -> int:
        return self._query("SELECT COUNT(*) FROM articles")[0][0]

    def get(self, article_id: str) -> Article | None:
        rows = self._query("SELECT * FROM articles WHERE id = ?", (article_id,))
        return _row_to_article(rows[0]) if rows else None

    def get_by_url(self, url: str) -> Article | None:
        rows = self._query("SELECT * FROM articles WHERE url = ? ORDER BY id LIMIT 1", (url,))
        return _row_to_article(rows[0]) if rows else None

    def fingerprints(self, ids: Iterable[str]) -> dict[str, tuple[str | None, str | None]]:
        """Map id -> (content_hash, model of its vector) for the ids that exist; the model is None for a vector
        without its headline vector (a store from before them), so a write embeds it in its first round."""
        out: dict[str, tuple[str | None, str | None]] = {}
        ids = list(ids)
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._query(
                f"SELECT a.id, a.content_hash, CASE WHEN v.headline IS NULL THEN NULL ELSE v.model END FROM articles a "
                f"LEFT JOIN vectors v ON v.vid = a.vid WHERE a.id IN ({marks})",
                chunk,
            ):
                out[row[0]] = (row[1], row[2])
        return out

    def upsert(self, rows: Sequence[write_path.Row], model: str, since: int | None = None) -> write_path.WriteOutcome:
        """Insert or replace articles in one transaction: (article, content hash, vector, headline vector);
        a given vector replaces the current one (with its headline vector, which may be None). A row
        without one keeps the stored vector only if that is still its text's, and an id deleted after
        the mark `since` is left alone: `write_path.write_rows` says what happened to each."""
        now = datetime.now(timezone.utc).isoformat()
        with writing(self.path), self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            return write_path.write_rows(self._db, rows, model, since, now)

    def delete(self, article_id: str) -> bool:
        """Remove an article and its vector; False when it did not exist."""
        with writing(self.path), self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            gone = self._db.execute("DELETE FROM articles WHERE id = ?", (article_id,)).rowcount
            self._db.execute("DELETE FROM vectors WHERE article_id = ?", (article_id,))
            if gone:  # REPLACE: a fresh, higher sequence number for an id deleted before
                self._db.execute("INSERT OR REPLACE INTO deletions (article_id, deleted_at) VALUES (?, ?)",
                                 (article_id, datetime.now(timezone.utc).isoformat()))
        return gone > 0

    def deletion_mark(self) -> int:
        """The highest tombstone sequence number: a delete after this call gets a higher one."""
        return self.marks()[1]

    def marks(self) -> tuple[int, int]:
        """(highest vid, highest tombstone sequence number), read together: what `in_sync` compares."""
        deleted = "(SELECT COALESCE(MAX(seq), 0) FROM deletions)" if self._tombstones else "0"
        row = self._query(f"SELECT (SELECT COALESCE(MAX(vid), 0) FROM vectors), {deleted}")[0]
        return int(row[0]), int(row[1])

    def deleted_after(self, mark: int) -> tuple[int, list[str]]:
        """(the new mark, the ids with a tombstone newer than `mark`)."""
        if not self._tombstones:
            return mark, []
        rows = self._query("SELECT seq, article_id FROM deletions WHERE seq > ? ORDER BY seq", (mark,))
        return (int(rows[-1][0]) if rows else mark), [r[1] for r in rows]

    def current_vids(self, ids: Sequence[str]) -> dict[str, int | None]:
        """The vid of each id's current vector (None: stored without one); absent ids are left out."""
        out: dict[str, int | None] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            out.update({r[0]: r[1] for r in self._query(f"SELECT id, vid FROM articles WHERE id IN ({marks})", chunk)})
        return out

    def vector_of(self, article_id: str, model: str) -> np.ndarray | None:
        rows = self._query(
            "SELECT v.vector FROM articles a JOIN vectors v ON v.vid = a.vid "
            "WHERE a.id = ? AND v.model = ?",
            (article_id, model),
        )
        return np.frombuffer(rows[0][0], dtype=np.float32) if rows else None

    def vector_rows(self, model: str, after_vid: int = 0, batch: int = 10_000
                    ) -> Iterator[tuple[list[sqlite3.Row], np.ndarray, np.ndarray]]:
        """Yield (rows, vectors, headline vectors) chunks of current vectors with vid > after_vid, in vid
        order; a headline vector stored as none is zeros.

        Rows carry vid, id and the article columns ranking reads, unvalidated: they are trusted."""
        last = after_vid
        while True:
            rows = self._query(
                f"SELECT v.vid, v.vector, v.headline, {RANKING_COLUMNS} FROM vectors v JOIN articles a ON a.vid = v.vid "
                "WHERE v.model = ? AND v.vid > ? ORDER BY v.vid LIMIT ?",
                (model, last, batch),
            )
            if not rows:
                return
            vectors = np.stack([np.frombuffer(r["vector"], dtype=np.float32) for r in rows])
            zero = np.zeros(vectors.shape[1], np.float32)
            headlines = np.stack([zero if r["headline"] is None else np.frombuffer(r["headline"], dtype=np.float32)
                                  for r in rows])
            yield rows, vectors, headlines
            last = int(rows[-1]["vid"])

    def rows_by_vid(self, vids: Sequence[int], model: str) -> dict[int, sqlite3.Row]:
        """Ranking columns of the articles whose current vector has one of these vids."""
        out: dict[int, sqlite3.Row] = {}
        vids = [int(v) for v in vids]
        for start in range(0, len(vids), 500):
            chunk = vids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self._query(
                f"SELECT a.vid, {RANKING_COLUMNS} FROM articles a JOIN vectors v ON v.vid = a.vid "
                f"WHERE a.vid IN ({marks}) AND v.model = ?",
                [*chunk, model],
            ):
                out[row["vid"]] = row
        return out

    def headlines_by_vid(self, vids: Sequence[int]) -> dict[int, Headline]:
        """What blocks show of the articles currently indexed under these vids (stale or deleted vids
        are absent). Only the shown columns are read, and rows validated when written are not
        validated again: this is the one database read of a related request."""
        vids = [int(v) for v in vids]
        if not vids:
            return {}
        marks = ",".join("?" * len(vids))
        rows = self._query(f"SELECT vid, {HEADLINE_COLUMNS} FROM articles WHERE vid IN ({marks})", vids)
        return {row[0]: Headline(row[1], row[2], row[3], row[4], row[5],
                                 datetime.fromisoformat(row[6]) if row[6] else None, row[7], row[8], row[9])
                for row in rows}

    def max_vid(self) -> int:
        return self._query("SELECT COALESCE(MAX(vid), 0) FROM vectors")[0][0]

    def ids_needing_vectors(self, model: str) -> list[str]:
        """Articles with no vector from `model` (new model, or stored without one or without its headline's)."""
        rows = self._query(
            "SELECT a.id FROM articles a LEFT JOIN vectors v ON v.vid = a.vid "
            "WHERE v.vid IS NULL OR v.model != ? OR v.headline IS NULL ORDER BY a.id",
            (model,),
        )
        return [r[0] for r in rows]

    def get_many(self, ids: Sequence[str]) -> list[Article]:
        out: list[Article] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            marks = ",".join("?" * len(chunk))
            out += [_row_to_article(r) for r in self._query(f"SELECT * FROM articles WHERE id IN ({marks})", chunk)]
        return out

    def latest(self, limit: int = 20, lang: str | None = None) -> list[Article]:
        sql = "SELECT * FROM articles" + (" WHERE lang = ?" if lang else "")
        sql += " ORDER BY published_ts DESC, id LIMIT ?"
        return [_row_to_article(r) for r in self._query(sql, ((lang,) if lang else ()) + (limit,))]
