"""The HTTP API through FastAPI's TestClient, on the tiny model."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from conftest import STORY_OF
from recsys.api import create_app

KEY = "test-key"


@pytest.fixture()
def client(engine, settings) -> TestClient:  # noqa: ANN001
    """A client that sends a valid API key with every request (writes need one)."""
    keyed = settings.model_copy(update={"api_keys": SecretStr(KEY)})
    return TestClient(create_app(keyed, engine), headers={"X-API-Key": KEY})


def test_related_by_id_fills_limit_same_story_first(client: TestClient) -> None:
    body = client.get("/v1/related/b1", params={"limit": 4}).json()
    assert body["count"] == 4 and len(body["items"]) == 4 and body["article_id"] == "b1"
    ids = [item["id"] for item in body["items"]]
    assert STORY_OF[ids[0]] == "b" and "b1" not in ids and len(set(ids)) == 4
    assert set(body["items"][0]) >= {"id", "url", "title", "source", "published_at", "lang", "score"}
    assert body["items"][0]["published_at"].endswith("+03:00")
    assert body["lang_policy"] == "same" and body["relaxed"] == [] and body["index_build"]


def test_answers_have_the_documented_shape_and_field_order(client: TestClient) -> None:
    # the body is built as a dict (no model per item): it must stay what RelatedResponse documents
    from recsys.answers import Item, RelatedResponse

    for response in (client.get("/v1/related/b1", params={"limit": 3}),
                     client.post("/v1/related", json={"title": "Нацбанк знизив облікову ставку", "lang": "uk"})):
        body = response.json()
        assert list(body) == list(RelatedResponse.model_fields) and body["items"]
        assert all(list(item) == list(Item.model_fields) for item in body["items"])
        assert RelatedResponse.model_validate_json(response.content).model_dump(mode="json") == body


def test_filters_and_exclusions(client: TestClient) -> None:
    body = client.get("/v1/related/b1", params={"limit": 3, "lang_policy": "any", "exclude": "b2,b3"}).json()
    assert not {"b1", "b2", "b3"} & {i["id"] for i in body["items"]}
    body = client.get("/v1/related/b1", params=[("limit", 2), ("exclude", "b2"), ("exclude", "b4")]).json()
    assert not {"b2", "b4"} & {i["id"] for i in body["items"]}
    body = client.get("/v1/related/d1", params={"limit": 2, "section": "economy"}).json()
    assert [i["id"] for i in body["items"]][0] == "d2" and body["relaxed"] == ["section"]
    body = client.get("/v1/related/c1", params={"limit": 1, "max_age_days": 100000}).json()
    assert body["items"][0]["id"] == "c3"


def test_limit_is_capped(client: TestClient, settings) -> None:  # noqa: ANN001
    body = client.get("/v1/related/a2", params={"limit": 10_000}).json()
    at_cap = client.get("/v1/related/a2", params={"limit": settings.max_limit}).json()
    assert body["limit"] == settings.max_limit and body["items"] == at_cap["items"]
    assert body["count"] > settings.default_limit and body["relaxed"] == ["lang_policy"]


def test_related_by_url_and_for_a_draft(client: TestClient) -> None:
    body = client.get("/v1/related", params={"url": "https://news.example/c1", "limit": 1}).json()
    assert body["article_id"] == "c1" and body["items"][0]["id"] == "c3"
    body = client.post("/v1/related", json={"title": "Марченко біатлон спринт", "lang": "uk", "limit": 2}).json()
    assert body["article_id"] is None and STORY_OF[body["items"][0]["id"]] == "c"
    detected = client.post("/v1/related", json={"title": "Марченко виграла біатлон спринт у Естерсунді"}).json()
    assert STORY_OF[detected["items"][0]["id"]] == "c" and detected["items"][0]["lang"] == "uk"


@pytest.mark.parametrize(("method", "path", "kwargs", "status"), [
    ("get", "/v1/related/nope", {}, 404),
    ("get", "/v1/related", {"params": {"url": "https://nowhere.example/x"}}, 404),
    ("get", "/v1/related", {}, 422),
    ("get", "/v1/related/a1", {"params": {"limit": 0}}, 422),
    ("get", "/v1/related/a1", {"params": {"limit": "many"}}, 422),
    ("get", "/v1/related/a1", {"params": {"lang_policy": "mine"}}, 422),
    ("get", "/v1/related/a1", {"params": {"max_age_days": -3}}, 422),
    ("post", "/v1/related", {"json": {"title": "", "text": ""}}, 422),
    ("post", "/v1/related", {"json": {"title": "x", "lang": "Ukrainian"}}, 422),
    ("post", "/v1/articles", {"content": b"{not json"}, 422),
    ("post", "/v1/articles", {"json": []}, 422),
    ("post", "/v1/articles", {"json": [{"id": "z", "lang": "uk"}]}, 422),
    ("delete", "/v1/articles/nope", {}, 404),
    ("get", "/v1/articles/nope", {}, 404),
])
def test_bad_requests_get_4xx_with_a_message(client: TestClient, method: str, path: str, kwargs: dict, status: int) -> None:
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status
    assert response.json()["detail"]


def test_oversized_bodies_are_refused(engine, settings) -> None:  # noqa: ANN001
    small = settings.model_copy(update={"max_body_bytes": 2048, "max_batch": 3, "api_keys": SecretStr(KEY)})
    client = TestClient(create_app(small, engine), headers={"X-API-Key": KEY})
    big = client.post("/v1/articles", json=[{"id": "x", "title": "t" * 4000, "lang": "en"}])
    assert big.status_code == 413 and "bytes" in big.json()["detail"]

    def chunks():  # noqa: ANN202 - no Content-Length: the limit must count streamed bytes
        for _ in range(10):
            yield b" " * 1000

    assert client.post("/v1/articles", content=chunks()).status_code == 413
    many = client.post("/v1/articles", json=[{"id": str(i), "title": "t", "lang": "en"} for i in range(4)])
    assert many.status_code == 413 and "at most 3" in many.json()["detail"]
    assert engine.store.count() == 17


def test_post_shows_up_at_once_then_delete_hides_it(client: TestClient) -> None:
    batch = [
        {"id": "n1", "title": "Злива знову затопила набережну Дніпра", "text": "Рятувальники відкачують воду", "lang": "uk",
         "url": "https://news.example/n1", "published_at": "2026-10-06T08:00:00+03:00", "source": "Нове видання"},
        {"id": "bad", "title": "no language given and none detectable", "lang": "xx-long"},
    ]
    response = client.post("/v1/articles", json={"articles": batch})
    body = response.json()
    assert response.status_code == 200 and body["stored"] == 1 and body["inserted"] == 1
    assert body["errors"] == [{"index": 1, "id": "bad", "reason": body["errors"][0]["reason"]}]
    assert "lang" in body["errors"][0]["reason"]
    assert "n1" in [i["id"] for i in client.get("/v1/related/b1", params={"limit": 5}).json()["items"]]
    assert client.get("/v1/articles/n1").json()["source"] == "Нове видання"
    assert client.delete("/v1/articles/n1").json() == {"deleted": "n1"}
    assert "n1" not in [i["id"] for i in client.get("/v1/related/b1", params={"limit": 20}).json()["items"]]
    assert client.get("/v1/related/n1").status_code == 404


def test_docs_and_redoc_work_offline(client: TestClient) -> None:
    import re

    for page in ("/docs", "/redoc"):
        html = client.get(page)
        assert html.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text) + re.findall(r"url: ?'([^']+)'", html.text)
        assert assets and not [a for a in assets if a.startswith(("http:", "https:", "//"))], assets
        for asset in assets:
            assert client.get(asset).status_code == 200, asset


def test_demo_page_only_when_turned_on(engine, settings) -> None:  # noqa: ANN001
    production = TestClient(create_app(settings, engine))
    assert production.get("/demo").status_code == 404 and production.get("/demo/b1").status_code == 404
    assert production.get("/", follow_redirects=False).status_code == 404


def test_health_docs_and_demo_page(engine, settings) -> None:  # noqa: ANN001
    client = TestClient(create_app(settings.model_copy(update={"demo": True}), engine))
    health = client.get("/healthz").json()
    assert health["articles"] == 17 and health["index"]["dimension"] == health["dimension"]
    assert health["index"]["live_vectors"] == 17 and health["model"]
    assert client.get("/docs").status_code == 200
    assert "/v1/related/{article_id}" in client.get("/openapi.json").json()["paths"]
    page = client.get("/demo/b1")
    # The related block is drawn by the widget (tests/test_widget_browser.py checks it in Chromium).
    assert page.status_code == 200 and 'data-recsys-article="b1"' in page.text
    assert '<script src="/widget.js" async></script>' in page.text and "<h1>Повінь у Дніпрі" in page.text
    fragment = client.get("/v1/related/b1/fragment").text  # the same block, server-rendered
    assert 'aria-labelledby="recsys-heading-' in fragment and "Читайте також" in fragment
    assert '<span class="recsys__outlet">– Голос Харкова</span>' in fragment  # b2, the same story, with its outlet
    assert client.get("/", follow_redirects=False).headers["location"] == "/demo"
    assert client.get("/demo").status_code == 200
    assert client.get("/demo/nope").status_code == 404
