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
    assert store.record(events, now=100.0) == 6
    store.record(parse_events([click("o2", "x", 2), impression("o3", "q")], 10), now=200.0)
    assert store.counts() == [(1, 3, 0), (2, 2, 2), (3, 1, 0)]
    assert store.counts(since=150.0) == [(1, 1, 0), (2, 0, 1)]
    assert store.counts(until=150.0) == [(1, 2, 0), (2, 2, 1), (3, 1, 0)]
    store.close()
    rows = sqlite3.connect(tmp_path / "recsys.db").execute(
        "SELECT type, origin_id, article_id, position FROM events ORDER BY id").fetchall()
    assert rows[:3] == [("impression", "o1", "x", 1), ("impression", "o1", "y", 2), ("impression", "o1", "z", 3)]


@pytest.fixture()
def client(engine, settings) -> TestClient:  # noqa: ANN001
    changed = {"api_keys": SecretStr(KEY), "cors_origins": "https://site.example", "rate_limit_per_s": 0}
    return TestClient(create_app(settings.model_copy(update=changed), engine))


def test_events_endpoint_stores_and_reports_click_through(client: TestClient) -> None:
    # Two page views of b1 with 3 links each, one of c1 with 2; clicks at positions 1, 1 and 2.
    batch = [impression("b1", "b2", "a3", "c3"), impression("b1", "b2", "a3", "c3"), impression("c1", "c3", "e3"),
             click("b1", "b2", 1), click("c1", "c3", 1), click("b1", "a3", 2)]
    response = client.post("/v1/events", json={"events": batch}, headers={"Origin": "https://site.example"})
    assert response.status_code == 200 and response.json() == {"stored": 11}
    # sendBeacon posts a string as text/plain
    beacon = client.post("/v1/events", content='{"events": [{"type": "impression", "origin_id": "d1", '
                         '"article_ids": ["d2"]}]}', headers={"Content-Type": "text/plain;charset=UTF-8"})
    assert beacon.json() == {"stored": 1}
    report = client.get("/v1/events/ctr", headers={"X-API-Key": KEY}).json()
    assert report["positions"] == [
        {"position": 1, "impressions": 4, "clicks": 2, "ctr": 0.5},
        {"position": 2, "impressions": 3, "clicks": 1, "ctr": pytest.approx(1 / 3)},
        {"position": 3, "impressions": 2, "clicks": 0, "ctr": 0.0},
    ]
    assert report["impressions"] == 9 and report["clicks"] == 3
    later = client.get("/v1/events/ctr", params={"since": "2999-01-01T00:00:00Z"}, headers={"X-API-Key": KEY})
    assert later.json() == {"positions": [], "impressions": 0, "clicks": 0}
    assert 'recsys_events_total{type="impression"} 9.0' in client.get("/metrics").text


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
