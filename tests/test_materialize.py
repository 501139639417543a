"""Materialised answers: every default block computed in the background, recomputed after writes."""

from __future__ import annotations

import gc
import time

from fastapi.testclient import TestClient

from conftest import story_articles
from recsys.api import create_app
from recsys.article import Article
from recsys.settings import Settings


def _drained(app, timeout: float = 60.0) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while app.state.materializer.pending and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the last item may still be computing after the queue emptied


def test_default_blocks_are_ready_before_anyone_asks_and_a_write_refreshes_them(engine, settings: Settings) -> None:  # noqa: ANN001
    app = create_app(settings.model_copy(update={"materialize": True, "rate_limit_per_s": 0.0,
                                                 "api_keys": "k"}), engine)
    _drained(app)
    cache, ids = app.state.cache, [a.id for a in story_articles()]
    assert app.state.materializer.done == len(ids) and len(cache) == len(ids)
    assert gc.get_freeze_count() > 0  # the long-lived answers are kept out of cycle collection
    client = TestClient(app)
    hits = cache.hits
    first = client.get("/v1/related/a1")  # the default block: served from what was materialised
    assert first.status_code == 200 and cache.hits == hits + 1
    assert client.get("/healthz").json()["materialized"] == {"blocks": len(ids), "pending": 0}
    new = Article(id="a9", title="Трамвай на Сихів: нова лінія у Львові запрацювала", lang="uk",
                  text="Львів відкрив трамвайну лінію на Сихів", url="https://news.example/a9")
    assert client.post("/v1/articles", json=[new.model_dump(mode="json")], headers={"X-API-Key": "k"}).status_code == 200
    _drained(app)
    hits = cache.hits
    again = client.get("/v1/related/a1")  # dropped by the write, recomputed in the background: a hit again
    assert again.status_code == 200 and cache.hits == hits + 1
    assert app.state.materializer.done > len(ids)  # the blocks the write dropped were computed again
