"""Widget events: impressions and clicks of related links, counted in SQLite for click-through analysis.

Stored as counters, never one row per request or per link, so a flood cannot grow the database: one row per
(minute, type, position) — at most 60 x (2 x RECSYS_MAX_LIMIT + 1) rows an hour — and one per (day, article,
type) for articles that exist. Links naming an unknown article are not counted as impressions or clicks but
under type "unknown". Positions start at 1 (the top link) and stop at the largest block (RECSYS_MAX_LIMIT).
The tables live in the same database file as the articles (WAL mode), on a connection of their own.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from recsys.errors import InvalidInput
from recsys.ingest import batch_rows
from recsys.store import writing
from recsys.wire_types import JSON_INTEGER, IsoTime, sent_length

SCHEMA = """
CREATE TABLE IF NOT EXISTS event_minutes (
    minute INTEGER NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('impression', 'click', 'unknown')),
    position INTEGER NOT NULL CHECK (position >= 0),
    n INTEGER NOT NULL,
    PRIMARY KEY (minute, type, position)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS event_articles (
    day INTEGER NOT NULL,
    article_id TEXT NOT NULL,
    type TEXT NOT NULL CHECK (type IN ('impression', 'click')),
    n INTEGER NOT NULL,
    PRIMARY KEY (day, article_id, type)
) WITHOUT ROWID;
"""
# a database from before the counters held one row per link: folded into them once, then dropped
MIGRATE_ROWS = """
INSERT INTO event_minutes (minute, type, position, n)
    SELECT CAST(received_ts / 60 AS INTEGER), type, position, COUNT(*) FROM events GROUP BY 1, 2, 3
    ON CONFLICT (minute, type, position) DO UPDATE SET n = n + excluded.n;
INSERT INTO event_articles (day, article_id, type, n)
    SELECT CAST(received_ts / 86400 AS INTEGER), article_id, type, COUNT(*) FROM events GROUP BY 1, 2, 3
    ON CONFLICT (day, article_id, type) DO UPDATE SET n = n + excluded.n;
DROP TABLE events;
"""

MAX_POSITION = 1000
Id = Annotated[str, Field(min_length=1), sent_length(512)]  # not blank once stripped


class Event(BaseModel):
    """One event as the widget sends it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    type: Literal["impression", "click"]
    origin_id: Id
    article_id: Id | None = None
    article_ids: list[Id] | None = Field(default=None, min_length=1, max_length=MAX_POSITION)
    position: Annotated[int, Field(ge=1, le=MAX_POSITION), JSON_INTEGER] | None = None
    ts: IsoTime | None = None
    page_url: Annotated[str, sent_length(2048)] | None = None
    index_build: Annotated[str, sent_length(128)] | None = None

    @model_validator(mode="after")
    def _one_shape(self) -> Event:
        if self.article_ids is not None:
            if self.type != "impression" or self.article_id is not None or self.position is not None:
                raise ValueError("article_ids (positions 1..n) is for impressions, without article_id or position")
        elif self.article_id is None or self.position is None:
            raise ValueError("send article_id and position (or, for an impression, article_ids)")
        return self

    def rows(self) -> list[tuple[str, str, int]]:
        """(type, article_id, position) for each link the event is about."""
        if self.article_ids is not None:
            return [(self.type, article_id, pos) for pos, article_id in enumerate(self.article_ids, start=1)]
        assert self.article_id is not None and self.position is not None
        return [(self.type, self.article_id, self.position)]


def parse_events(body: Any, max_events: int, max_position: int = MAX_POSITION) -> list[Event]:
    """Validate `{"events": [...]}`, a list of events or one event; 4xx errors name the bad event.
    No link may sit below ``max_position`` (the largest block the API serves)."""
    rows = batch_rows(body, "events", max_events)
    events = []
    for position, raw in enumerate(rows):
        try:
            event = Event.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "".join(f"{part}: " for part in first["loc"][:1])
            raise InvalidInput(f"event {position}: {where}{first['msg'].removeprefix('Value error, ')}") from exc
        deepest = max(p for _, _, p in event.rows())
        if deepest > max_position:
            raise InvalidInput(f"event {position}: position {deepest} is beyond the largest block "
                               f"({max_position} links, RECSYS_MAX_LIMIT)")
        events.append(event)
    return events


@dataclass(frozen=True)
class PositionStats:
    """Impressions, clicks and click-through rate of one position."""

    position: int
    impressions: int
    clicks: int

    @property
    def ctr(self) -> float | None:
        return self.clicks / self.impressions if self.impressions else None


def ctr_by_position(counts: Sequence[tuple[int, int, int]]) -> list[PositionStats]:
    """(position, impressions, clicks) rows, summed per position, in position order."""
    merged: dict[int, list[int]] = {}
    for position, impressions, clicks in counts:
        totals = merged.setdefault(int(position), [0, 0])
        totals[0] += int(impressions)
        totals[1] += int(clicks)
    return [PositionStats(p, imp, clk) for p, (imp, clk) in sorted(merged.items())]


@dataclass(frozen=True)
class Recorded:
    """What one POST counted: links of known articles, and links naming an unknown one."""

    stored: int
    unknown: int
    by_type: dict[str, int]


def tally(events: Sequence[Event], known: set[str], now: float) -> tuple[Counter, Counter, int]:
    """Counter increments per (minute, type, position) and per (day, article, type); links of unknown ids apart."""
    minute, day = int(now // 60), int(now // 86400)
    cells: Counter = Counter()
    articles: Counter = Counter()
    unknown = 0
    for event in events:
        for kind, article_id, position in event.rows():
            if event.origin_id not in known or article_id not in known:
                unknown += 1
                continue
            cells[(minute, kind, position)] += 1
            articles[(day, article_id, kind)] += 1
    if unknown:
        cells[(minute, "unknown", 0)] += unknown
    return cells, articles, unknown


def _epoch(value: datetime | None) -> float | None:
    """Epoch seconds; a naive time is UTC (as for articles: never the server's local time, whose
    conversion overflows for year 1 and differs from one server to the next)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()


def epoch_bound(value: datetime | None) -> float | None:
    """A `since`/`until` bound in epoch seconds (None: open); InvalidInput for a time out of range."""
    try:
        return _epoch(value)
    except (OverflowError, ValueError, OSError) as exc:
        raise InvalidInput(f"time {value} is out of range: {exc}") from exc


class EventStore:
    """The event counters; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self._lock, self._path = threading.Lock(), Path(path)
        self._db = sqlite3.connect(Path(path), check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        if self._db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'events'").fetchone():
            self._db.executescript(f"BEGIN IMMEDIATE; {MIGRATE_ROWS} COMMIT;")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, events: Sequence[Event], known: Callable[[set[str]], set[str]] | None = None,
               now: float | None = None) -> Recorded:
        """Count the events in one transaction. ``known`` says which ids exist (all, when not given)."""
        now = time.time() if now is None else now
        ids = {e.origin_id for e in events} | {a for e in events for _, a, _ in e.rows()}
        cells, articles, unknown = tally(events, ids if known is None else known(ids), now)
        with writing(self._path), self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO event_minutes (minute, type, position, n) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (minute, type, position) DO UPDATE SET n = n + excluded.n",
                [(*key, n) for key, n in cells.items()])
            self._db.executemany(
                "INSERT INTO event_articles (day, article_id, type, n) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (day, article_id, type) DO UPDATE SET n = n + excluded.n",
                [(*key, n) for key, n in articles.items()])
        by_type: Counter = Counter()
        for (_, _, kind), n in articles.items():
            by_type[kind] += n
        return Recorded(sum(articles.values()), unknown, dict(by_type))

    def counts(self, since: float | None = None, until: float | None = None) -> list[tuple[int, int, int]]:
        """(position, impressions, clicks) of the minutes that began in [since, until)."""
        sql = ("SELECT position, SUM(n * (type = 'impression')), SUM(n * (type = 'click')) FROM event_minutes "
               "WHERE minute * 60 >= ? AND minute * 60 < ? AND type != 'unknown' GROUP BY position ORDER BY position")
        with self._lock:
            return [(int(p), int(i), int(c)) for p, i, c in self._db.execute(sql, _bounds(since, until)).fetchall()]

    def unknown(self, since: float | None = None, until: float | None = None) -> int:
        """Links that named an article not in the store, in the minutes that began in [since, until)."""
        sql = "SELECT COALESCE(SUM(n), 0) FROM event_minutes WHERE minute * 60 >= ? AND minute * 60 < ? AND type = 'unknown'"
        with self._lock:
            return int(self._db.execute(sql, _bounds(since, until)).fetchone()[0])


def _bounds(since: float | None, until: float | None) -> tuple[float, float]:
    return (float("-inf") if since is None else since, float("inf") if until is None else until)
