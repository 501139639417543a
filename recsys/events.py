"""Widget events: impressions and clicks of related links, stored in SQLite for click-through analysis.

One row per link and event. An impression of a block of five links is five rows with positions
1..5; a click is one row. Positions start at 1 (the top link). The table lives in the same
database file as the articles (WAL mode), on a connection of its own.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from recsys.errors import InvalidInput
from recsys.ingest import batch_rows

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    type TEXT NOT NULL CHECK (type IN ('impression', 'click')),
    origin_id TEXT NOT NULL,
    article_id TEXT NOT NULL,
    position INTEGER NOT NULL CHECK (position >= 1),
    client_ts REAL,
    received_ts REAL NOT NULL,
    page_url TEXT,
    index_build TEXT
);
CREATE INDEX IF NOT EXISTS events_received ON events(received_ts);
CREATE INDEX IF NOT EXISTS events_origin ON events(origin_id);
"""

MAX_POSITION = 1000
ID = Field(min_length=1, max_length=512)


class Event(BaseModel):
    """One event as the widget sends it."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    type: Literal["impression", "click"]
    origin_id: str = ID
    article_id: str | None = Field(default=None, min_length=1, max_length=512)
    article_ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_POSITION)
    position: int | None = Field(default=None, ge=1, le=MAX_POSITION)
    ts: datetime | None = None
    page_url: str | None = Field(default=None, max_length=2048)
    index_build: str | None = Field(default=None, max_length=128)

    @field_validator("article_ids")
    @classmethod
    def _ids_not_blank(cls, ids: list[str] | None) -> list[str] | None:
        if ids is not None and any(not isinstance(i, str) or not i.strip() or len(i) > 512 for i in ids):
            raise ValueError("article_ids must be non-empty strings of at most 512 characters")
        return ids

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


def parse_events(body: Any, max_events: int) -> list[Event]:
    """Validate `{"events": [...]}`, a list of events or one event; 4xx errors name the bad event."""
    rows = batch_rows(body, "events", max_events)
    events = []
    for position, raw in enumerate(rows):
        try:
            events.append(Event.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = "".join(f"{part}: " for part in first["loc"][:1])
            raise InvalidInput(f"event {position}: {where}{first['msg'].removeprefix('Value error, ')}") from exc
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
    """The events table; safe to share between threads."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(Path(path), check_same_thread=False, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, events: Sequence[Event], now: float | None = None) -> int:
        """Store the events in one transaction; the number of rows written."""
        now = time.time() if now is None else now
        rows = [
            (kind, e.origin_id, article_id, position, _epoch(e.ts), now, e.page_url, e.index_build)
            for e in events for kind, article_id, position in e.rows()
        ]
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "INSERT INTO events (type, origin_id, article_id, position, client_ts, received_ts, page_url, "
                "index_build) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
        return len(rows)

    def counts(self, since: float | None = None, until: float | None = None) -> list[tuple[int, int, int]]:
        """(position, impressions, clicks) of the events received in [since, until)."""
        sql = ("SELECT position, SUM(type = 'impression'), SUM(type = 'click') FROM events "
               "WHERE received_ts >= ? AND received_ts < ? GROUP BY position ORDER BY position")
        bounds = (float("-inf") if since is None else since, float("inf") if until is None else until)
        with self._lock:
            return [(int(p), int(i), int(c)) for p, i, c in self._db.execute(sql, bounds).fetchall()]
