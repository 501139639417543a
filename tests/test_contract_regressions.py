"""What the OpenAPI contract run (test_openapi_contract.py) found besides undeclared statuses: one
regression test each, so each stays fixed even if a later generator misses it."""

from __future__ import annotations

import py3langid
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recsys.api import create_app
from recsys.errors import InvalidInput
from recsys.ingest import detect_lang, parse_article

KEY = "test-key"
CLICK = {"type": "click", "origin_id": "b1", "article_id": "b2", "position": 1}


@pytest.fixture()
def client(engine, settings) -> TestClient:  # noqa: ANN001
    keyed = settings.model_copy(update={"api_keys": SecretStr(KEY), "rate_limit_per_s": 0})
    return TestClient(create_app(keyed, engine), headers={"X-API-Key": KEY}, raise_server_exceptions=False)


@pytest.mark.parametrize("draft", [
    {"title": " ", "text": "Flood hits Dnipro embankment", "lang": "en"},  # was a 500: a blank title
    {"title": "", "text": " " * 300 + "Flood hits Dnipro embankment", "lang": "en"},  # was a 500: blank lead
    {"title": "", "text": "Flood hits the Dnipro embankment after rain. " * 200},  # was a 422: title > 2000
])
def test_a_draft_with_a_text_is_answered_whatever_its_title(client: TestClient, draft: dict) -> None:
    response = client.post("/v1/related", json=draft)
    assert response.status_code == 200, response.text
    assert response.json()["items"]


def test_detected_languages_are_two_letter_codes() -> None:
    text = "hello world"
    assert len(py3langid.classify(text)[0]) == 3  # the model's own pick (fuv) is no ISO 639-1 code
    assert len(detect_lang(text)) == 2
    assert parse_article({"id": "x", "title": text}).lang == detect_lang(text)  # was refused: lang 'fuv'


def test_a_boolean_id_is_no_id() -> None:
    with pytest.raises(InvalidInput, match="^id"):
        parse_article({"id": False, "title": "x", "lang": "en"})  # was stored as the article "False"
    assert parse_article({"id": 7, "title": "x", "lang": "en"}).id == "7"


@pytest.mark.parametrize("query", ["limit=2&limit=3", "max_age_days=1&max_age_days=2", "section=a&section=b"])
def test_a_repeated_single_value_parameter_is_refused(client: TestClient, query: str) -> None:
    response = client.get(f"/v1/related/b1?{query}")  # the last one used to win, silently
    assert response.status_code == 422 and "more than once" in response.json()["detail"]
    assert client.get("/v1/related/b1?exclude=b2&exclude=b3").status_code == 200  # a list may repeat


def test_405_names_every_method_of_the_path(client: TestClient) -> None:
    assert client.options("/v1/related").headers["allow"] == "GET, POST"  # was GET only: two routes
    assert client.put("/v1/articles/b1").headers["allow"] == "DELETE, GET"


@pytest.mark.parametrize("event", [{**CLICK, "position": "1"}, {**CLICK, "position": True},
                                   {**CLICK, "ts": 0.5}, {**CLICK, "ts": "1700000000"}])
def test_event_numbers_and_times_are_what_the_document_says(client: TestClient, event: dict) -> None:
    assert client.post("/v1/events", json=event).status_code == 422
    assert client.post("/v1/events", json={**CLICK, "position": 1.0, "ts": "2026-11-20T10:00:00Z"}).status_code == 200


@pytest.mark.parametrize("query", ["until=0.5", "since=1700000000"])
def test_click_through_bounds_are_iso_times(client: TestClient, query: str) -> None:
    assert client.get(f"/v1/events/ctr?{query}").status_code == 422  # were Unix times
    assert client.get("/v1/events/ctr?since=2026-11-01&until=2026-11-20T10:00:00").status_code == 200


@pytest.mark.parametrize("draft", [{"limit": True}, {"limit": "3"}, {"max_age_days": True}, {"fill": 1}])
def test_draft_numbers_and_flags_are_what_the_document_says(client: TestClient, draft: dict) -> None:
    assert client.post("/v1/related", json={"title": "Flood in Dnipro", **draft}).status_code == 422
    assert client.post("/v1/related", json={"title": "Flood in Dnipro", "limit": 3.0, "max_age_days": 2,
                                            "fill": False}).status_code == 200
