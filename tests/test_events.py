"""Widget events: validation, storage, and click-through by position with hand-computed numbers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recsys.api import create_app
from recsys.errors import InvalidInput, PayloadTooLarge
from recsys.events import EventStore, PositionStats, ctr_by_position, parse_events

KEY = "data-team"


def impression(origin: str, *ids: str) -> dict:
    return {"type": "impression", "origin_id": origin, "article_ids": list(ids)}


def click(origin: str, article_id: str, position: int) -> dict:
    return {"type": "click", "origin_id": origin, "article_id": article_id, "position": position}


def test_ctr_by_position_is_clicks_over_impressions_per_position() -> None:
    stats = ctr_by_position([(2, 40, 2), (1, 50, 5), (3, 0, 0), (1, 30, 3)])
    assert stats == [PositionStats(1, 80, 8), PositionStats(2, 40, 2), PositionStats(3, 0, 0)]
    assert [s.ctr for s in stats] == [0.1, 0.05, None]  # no impressions: no rate, not zero


def test_parse_events_shapes_and_errors() -> None:
    events = parse_events({"events": [impression("a1", "a2", "a3"), click("a1", "a3", 2)]}, max_events=10)
    assert [e.rows() for e in events] == [[("impression", "a2", 1), ("impression", "a3", 2)], [("click", "a3", 2)]]
    assert parse_events(click("a1", "a2", 1), 10)[0].position == 1
    assert parse_events([{**click("a1", "a2", 1), "ts": "2026-11-20T10:00:00Z"}], 10)[0].ts.year == 2026
    bad = [
        {"type": "view", "origin_id": "a1", "article_id": "a2", "position": 1},
        {"type": "click", "origin_id": "a1", "article_id": "a2"},
        {"type": "click", "origin_id": "a1", "article_ids": ["a2"]},
        {"type": "impression", "origin_id": "a1", "article_ids": []},
        {"type": "impression", "origin_id": "a1", "article_ids": [" "]},
        {**click("a1", "a2", 1), "position": 0},
        {**click("a1", "a2", 1), "origin_id": ""},
        {**click("a1", "a2", 1), "cookie": "tracking"},
        {**click("a1", "a2", 1), "ts": "yesterday"},
        "click",
    ]
    for raw in bad:
        with pytest.raises(InvalidInput, match="event 0"):
            parse_events([raw], 10)
    for empty in ([], {}, "x", None):
        with pytest.raises(InvalidInput):
            parse_events(empty, 10)
    with pytest.raises(PayloadTooLarge):
        parse_events([click("a1", "a2", 1)] * 3, 2)


def test_event_store_counts_by_position_within_a_time_window(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "recsys.db")
    events = parse_events([impression("o1", "x", "y", "z"), impression("o2", "y", "x"), click("o1", "y", 2)], 10)
    assert store.record(events, now=100.0).stored == 6  # minute 1
    store.record(parse_events([click("o2", "x", 2), impression("o3", "q")], 10), now=200.0)  # minute 3
    assert store.counts() == [(1, 3, 0), (2, 2, 2), (3, 1, 0)]
    assert store.counts(since=150.0) == [(1, 1, 0), (2, 0, 1)]
    assert store.counts(until=150.0) == [(1, 2, 0), (2, 2, 1), (3, 1, 0)]
    store.close()
    db = sqlite3.connect(tmp_path / "recsys.db")
    assert db.execute("SELECT minute, type, position, n FROM event_minutes ORDER BY 1, 2, 3").fetchall() == [
        (1, "click", 2, 1), (1, "impression", 1, 2), (1, "impression", 2, 2), (1, "impression", 3, 1),
        (3, "click", 2, 1), (3, "impression", 1, 1)]
    assert db.execute("SELECT article_id, type, n FROM event_articles WHERE day = 0 ORDER BY 1, 2").fetchall() == [
        ("q", "impression", 1), ("x", "click", 1), ("x", "impression", 2), ("y", "click", 1), ("y", "impression", 2),
        ("z", "impression", 1)]


def test_links_to_unknown_articles_are_counted_apart(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "recsys.db")
    known = {"o1", "x", "y"}.intersection
    recorded = store.record(parse_events([impression("o1", "x", "nope", "y"), impression("ghost", "x"),
                                          click("o1", "nope", 2)], 10), known=known, now=60.0)
    assert (recorded.stored, recorded.unknown, recorded.by_type) == (2, 3, {"impression": 2})
    assert store.counts() == [(1, 1, 0), (3, 1, 0)] and store.unknown() == 3 and store.unknown(since=120.0) == 0


def test_positions_beyond_the_largest_block_are_refused() -> None:
    with pytest.raises(InvalidInput, match="position 51 is beyond the largest block"):
        parse_events([click("a1", "a2", 51)], 10, max_position=50)
    with pytest.raises(InvalidInput, match="position 6"):
        parse_events([impression("a1", *[f"b{i}" for i in range(6)])], 10, max_position=5)
    assert len(parse_events([click("a1", "a2", 50)], 10, max_position=50)) == 1


def test_old_per_link_rows_are_folded_into_the_counters(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "recsys.db")
    db.executescript("CREATE TABLE events (id INTEGER PRIMARY KEY, type TEXT, origin_id TEXT, article_id TEXT, "
                     "position INTEGER, client_ts REAL, received_ts REAL, page_url TEXT, index_build TEXT);")
    db.executemany("INSERT INTO events (type, origin_id, article_id, position, received_ts) VALUES (?, ?, ?, ?, ?)",
                   [("impression", "o", "x", 1, 61.0), ("impression", "o", "x", 1, 62.0), ("click", "o", "x", 1, 90.0)])
    db.commit()
    db.close()
    store = EventStore(tmp_path / "recsys.db")
    assert store.counts() == [(1, 2, 1)]
    tables = {r[0] for r in sqlite3.connect(tmp_path / "recsys.db").execute("SELECT name FROM sqlite_master")}
    assert "events" not in tables


def test_a_flood_grows_the_database_by_counters_only(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "recsys.db")
    ids = [f"a{i}" for i in range(50)]
    batch = parse_events([impression(ids[i % 50], *ids[:50]) for i in range(100)], 100, max_position=50)
    store.record(batch, now=0.0)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = (tmp_path / "recsys.db").stat().st_size
    for minute in range(30):  # 30 minutes of floods, 100 requests of 5,000 links a minute
        for _ in range(100):
            store.record(batch, now=60.0 * minute + 1)
    rows = sqlite3.connect(tmp_path / "recsys.db").execute("SELECT COUNT(*) FROM event_minutes").fetchone()[0]
    assert rows == 30 * 50  # one row per minute and position, whatever the volume
    assert store.counts()[0] == (1, 100 * 3000 + 100, 0)
    store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the WAL is a reused scratch file, not growth
    assert (tmp_path / "recsys.db").stat().st_size - size < 200_000  # 30 flooded minutes: under 200 KB


@pytest.fixture()
def client(engine, settings) -> TestClient:  # noqa: ANN001
    changed = {"api_keys": SecretStr(KEY), "cors_origins": "https://site.example", "rate_limit_per_s": 0}
    return TestClient(create_app(settings.model_copy(update=changed), engine))


def test_events_endpoint_stores_and_reports_click_through(client: TestClient) -> None:
    # Two page views of b1 with 3 links each, one of c1 with 2; clicks at positions 1, 1 and 2.
    batch = [impression("b1", "b2", "a3", "c3"), impression("b1", "b2", "a3", "c3"), impression("c1", "c3", "e3"),
             click("b1", "b2", 1), click("c1", "c3", 1), click("b1", "a3", 2)]
    response = client.post("/v1/events", json={"events": batch}, headers={"Origin": "https://site.example"})
    assert response.status_code == 200 and response.json() == {"stored": 11, "unknown": 0}
    # sendBeacon posts a string as text/plain
    beacon = client.post("/v1/events", content='{"events": [{"type": "impression", "origin_id": "d1", '
                         '"article_ids": ["d2"]}]}', headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert beacon.json() == {"stored": 1, "unknown": 0}
    report = client.get("/v1/events/ctr", headers={"X-API-Key": KEY}).json()
    assert report["positions"] == [
        {"position": 1, "impressions": 4, "clicks": 2, "ctr": 0.5},
        {"position": 2, "impressions": 3, "clicks": 1, "ctr": pytest.approx(1 / 3)},
        {"position": 3, "impressions": 2, "clicks": 0, "ctr": 0.0},
    ]
    assert report["impressions"] == 9 and report["clicks"] == 3 and report["unknown"] == 0
    later = client.get("/v1/events/ctr", params={"since": "2999-01-01T00:00:00Z"}, headers={"X-API-Key": KEY})
    assert later.json() == {"positions": [], "impressions": 0, "clicks": 0, "unknown": 0}
    ghost = client.post("/v1/events", json=[impression("b1", "no-such-article", "b2"), click("b1", "b2", 99)])
    assert ghost.status_code == 422 and "position 99" in ghost.json()["detail"]
    ghost = client.post("/v1/events", json=[impression("b1", "no-such-article", "b2")])
    assert ghost.json() == {"stored": 1, "unknown": 1}
    metrics = client.get("/metrics").text
    assert 'recsys_events_total{type="impression"} 10.0' in metrics and 'recsys_events_total{type="unknown"} 1.0' in metrics


@pytest.mark.parametrize(("body", "headers", "status"), [
    (b"{oops", {}, 422),
    (b'{"events": [{"type": "click", "origin_id": "b1"}]}', {}, 422),
    (b'[]', {}, 422),
    (b'{"type": "click", "origin_id": "b1", "article_id": "b2", "position": 1}', {"Origin": "https://evil.example"}, 403),
    (b'{"type": "click", "origin_id": "b1", "article_id": "b2", "position": 1}', {"Origin": "http://testserver"}, 200),
])
def test_bad_events_get_4xx_with_a_message(client: TestClient, body: bytes, headers: dict, status: int) -> None:
    response = client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == status and (status == 200 or response.json()["detail"])
