"""The HTTP layer a news site needs: caching with ETags, CORS, API keys, rate limits, size limits, /metrics."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from recsys.answers import Answers
from recsys.api import create_app
from recsys.protection import TokenBucket

KEY = "s3cret-key"
PAGE = "https://news.example"


def make_client(engine, settings, **changes) -> TestClient:  # noqa: ANN001
    changes.setdefault("api_keys", SecretStr(f"other-key,{KEY}"))
    return TestClient(create_app(settings.model_copy(update=changes), engine))


@pytest.fixture()
def client(engine, settings) -> TestClient:  # noqa: ANN001
    return make_client(engine, settings, cors_origins=PAGE, rate_limit_per_s=0)


def upsert(client: TestClient, **fields: str) -> None:
    article = client.get(f"/v1/articles/{fields['id']}").json()
    response = client.post("/v1/articles", json={**article, **fields}, headers={"X-API-Key": KEY})
    assert response.status_code == 200, response.text


# -- caching ----------------------------------------------------------------------------------
def test_related_answers_carry_etag_and_cache_control_and_repeat_requests_get_304(client: TestClient) -> None:
    first = client.get("/v1/related/b1", params={"limit": 3})
    etag = first.headers["etag"]
    assert first.status_code == 200 and re.fullmatch(r'"[0-9a-f]{32}"', etag)
    assert first.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=600"
    again = client.get("/v1/related/b1", params={"limit": 3}, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    weak_list = client.get("/v1/related/b1", params={"limit": 3}, headers={"If-None-Match": f'"x", W/{etag}'})
    assert weak_list.status_code == 304
    stale = client.get("/v1/related/b1", params={"limit": 3}, headers={"If-None-Match": '"not-it"'})
    assert stale.status_code == 200 and stale.json() == first.json()
    # Another variant of the same article is another answer with another tag.
    other = client.get("/v1/related/b1", params={"limit": 2})
    assert other.headers["etag"] != etag
    by_url = client.get("/v1/related", params={"url": "https://news.example/b1", "limit": 3})
    assert by_url.json()["items"] == first.json()["items"] and by_url.headers["etag"]
    fragment = client.get("/v1/related/b1/fragment", params={"limit": 3})
    assert fragment.headers["etag"] not in (etag, by_url.headers["etag"])
    assert client.get("/v1/related/b1/fragment", params={"limit": 3},
                      headers={"If-None-Match": fragment.headers["etag"]}).status_code == 304


def test_cached_default_blocks_skip_routing_and_answer_exactly_as_the_route(
        client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    routed = client.get("/v1/related/b1?limit=3&lang_policy=same")  # another shape: routed, computed, cached
    hits = client.app.state.cache.hits
    again = client.get("/v1/related/b1?limit=3")  # the same cache key, found below the routing
    assert client.app.state.cache.hits == hits + 1 and again.content == routed.content
    assert {k: v for k, v in again.headers.items() if k != "date"} == {
        k: v for k, v in routed.headers.items() if k != "date"}

    def routed_again(*args: object) -> None:
        raise AssertionError("the route ran")

    monkeypatch.setattr(Answers, "serve", routed_again)
    assert client.get("/v1/related/b1?limit=3").content == routed.content
    assert client.get("/v1/related/b1?limit=3", headers={"If-None-Match": routed.headers["etag"]}).status_code == 304
    with pytest.raises(AssertionError, match="the route ran"):
        client.get("/v1/related/b1?limit=3&lang_policy=same")  # any other shape is routed
    computed = client.get("/v1/related/b1?limit=4")  # a miss is computed below the routing too
    missing = client.get("/v1/related/no-such-id")
    assert missing.status_code == 404 and missing.json() == {"detail": "no article with id 'no-such-id'"}
    monkeypatch.setattr(type(client.app.state.engine), "in_sync", lambda self: False)
    with pytest.raises(AssertionError, match="the route ran"):  # other processes' writes to take in: routed
        client.get("/v1/related/b2?limit=4")
    monkeypatch.undo()
    client.app.state.cache.invalidate(["b1"])
    by_route = client.get("/v1/related/b1?limit=4&lang_policy=same")
    assert computed.content == by_route.content and computed.headers["etag"] == by_route.headers["etag"]
    assert client.get("/v1/related/b1?limit=0").status_code == 422  # invalid input still meets validation
    metrics = client.get("/metrics").text  # answered below the routing, labelled as the route
    assert 'method="GET",route="/v1/related/{article_id}",status="200"} 5.0' in metrics
    assert 'method="GET",route="/v1/related/{article_id}",status="404"} 1.0' in metrics


def test_equal_requests_share_one_entry(client: TestClient) -> None:
    cache = client.app.state.cache
    a = client.get("/v1/related/b1", params=[("limit", 3), ("exclude", "b3,b2")])
    b = client.get("/v1/related/b1", params=[("exclude", "b2"), ("exclude", "b3"), ("limit", 3)])
    assert a.headers["etag"] == b.headers["etag"] and len(cache) == 1 and cache.hits == 1


def test_a_changed_article_stales_only_the_answers_that_show_it(client: TestClient) -> None:
    cache = client.app.state.cache
    b1 = client.get("/v1/related/b1", params={"limit": 3})
    c1 = client.get("/v1/related/c1", params={"limit": 1})
    shown_in_b1 = {i["id"] for i in b1.json()["items"]}
    assert "b2" in shown_in_b1 and "b2" not in {i["id"] for i in c1.json()["items"]} and len(cache) == 2

    upsert(client, id="b2", source="Харківський кур'єр")  # metadata only: not even re-embedded
    assert len(cache) == 1  # b1's answer went; c1's stayed
    hits = cache.hits
    assert client.get("/v1/related/c1", params={"limit": 1},
                      headers={"If-None-Match": c1.headers["etag"]}).status_code == 304
    assert cache.hits == hits + 1  # c1 still served from the cache
    fresh = client.get("/v1/related/b1", params={"limit": 3}, headers={"If-None-Match": b1.headers["etag"]})
    assert fresh.status_code == 200 and fresh.headers["etag"] != b1.headers["etag"]
    assert {i["id"]: i["source"] for i in fresh.json()["items"]}["b2"] == "Харківський кур'єр"

    # Re-sending an unchanged article keeps every entry.
    upsert(client, id="b2")
    assert len(cache) == 2


def test_a_new_article_enters_cached_blocks_of_its_neighbours_at_once(client: TestClient) -> None:
    before = client.get("/v1/related/d1", params={"limit": 1, "exclude": "d2"})
    assert before.json()["items"][0]["id"] != "d9"
    new = {"id": "d9", "title": "Нацбанк знизив облікову ставку, інфляція сповільнилась", "lang": "uk",
           "text": "Облікова ставка Нацбанку знижена до дванадцяти відсотків"}
    assert client.post("/v1/articles", json=[new], headers={"X-API-Key": KEY}).status_code == 200
    after = client.get("/v1/related/d1", params={"limit": 1, "exclude": "d2"},
                       headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.json()["items"][0]["id"] == "d9"


def test_an_article_of_its_own_and_a_deleted_item_are_invalidated(client: TestClient) -> None:
    cache = client.app.state.cache
    b1 = client.get("/v1/related/b1", params={"limit": 3})
    upsert(client, id="b1", section="weather")  # the query article itself changed
    assert len(cache) == 0
    b1 = client.get("/v1/related/b1", params={"limit": 3})
    gone = b1.json()["items"][0]["id"]
    assert client.delete(f"/v1/articles/{gone}", headers={"X-API-Key": KEY}).status_code == 200
    after = client.get("/v1/related/b1", params={"limit": 3}, headers={"If-None-Match": b1.headers["etag"]})
    assert after.status_code == 200 and gone not in {i["id"] for i in after.json()["items"]}


def test_the_cache_can_be_turned_off(engine, settings) -> None:  # noqa: ANN001
    client = make_client(engine, settings, cache_max_entries=0, cache_max_age=0)
    first = client.get("/v1/related/a2")
    assert first.headers["cache-control"].startswith("public, max-age=0")
    assert client.get("/v1/related/a2", headers={"If-None-Match": first.headers["etag"]}).status_code == 304
    assert len(client.app.state.cache) == 0


# -- CORS ---------------------------------------------------------------------------------------
def test_cors_only_for_configured_origins(client: TestClient) -> None:
    allowed = client.get("/v1/related/b1", headers={"Origin": PAGE})
    assert allowed.headers["access-control-allow-origin"] == PAGE
    assert "etag" in allowed.headers["access-control-expose-headers"].lower()
    foreign = client.get("/v1/related/b1", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in foreign.headers
    preflight = {"Origin": PAGE, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    assert client.options("/v1/events", headers=preflight).status_code == 200
    # Pages never get to send write keys across origins.
    keyed = {**preflight, "Access-Control-Request-Method": "DELETE", "Access-Control-Request-Headers": "x-api-key"}
    assert client.options("/v1/articles/b1", headers=keyed).status_code == 400


def test_no_cors_headers_when_no_origin_is_configured(engine, settings) -> None:  # noqa: ANN001
    response = make_client(engine, settings).get("/v1/related/b1", headers={"Origin": PAGE})
    assert response.status_code == 200 and "access-control-allow-origin" not in response.headers


# -- API keys -----------------------------------------------------------------------------------
ROW = {"id": "n1", "title": "Новий міст через Дніпро", "lang": "uk"}


def test_writes_need_a_valid_key(client: TestClient) -> None:
    missing = client.post("/v1/articles", json=ROW)
    assert missing.status_code == 401 and "X-API-Key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"].startswith("ApiKey")
    wrong = client.post("/v1/articles", json=ROW, headers={"X-API-Key": KEY + "x"})
    assert wrong.status_code == 401 and "does not match" in wrong.json()["detail"]
    assert client.delete("/v1/articles/b1").status_code == 401
    assert client.get("/v1/events/ctr").status_code == 401
    assert client.get("/v1/articles/n1").status_code == 404  # nothing was written
    assert client.post("/v1/articles", json=ROW, headers={"X-API-Key": KEY}).json()["stored"] == 1
    assert client.post("/v1/articles", json=ROW, headers={"X-API-Key": "other-key"}).json()["updated"] == 1
    assert client.delete("/v1/articles/n1", headers={"X-API-Key": KEY}).json() == {"deleted": "n1"}
    spec = client.get("/openapi.json").json()  # /docs shows which routes need the key
    assert spec["components"]["securitySchemes"]["APIKeyHeader"]["name"] == "X-API-Key"
    assert "security" in spec["paths"]["/v1/articles"]["post"] and "security" not in spec["paths"]["/v1/related"]["get"]


def test_writes_are_refused_when_no_key_is_configured(engine, settings) -> None:  # noqa: ANN001
    client = make_client(engine, settings, api_keys=SecretStr(""))
    for response in (client.post("/v1/articles", json=ROW, headers={"X-API-Key": "anything"}),
                     client.delete("/v1/articles/b1", headers={"X-API-Key": ""})):
        assert response.status_code == 403 and "RECSYS_API_KEYS" in response.json()["detail"]
    assert client.get("/v1/articles/b1").status_code == 200


# -- rate limits --------------------------------------------------------------------------------
def test_reads_are_rate_limited_per_client_with_retry_after(engine, settings) -> None:  # noqa: ANN001
    client = make_client(engine, settings, rate_limit_per_s=0.01, rate_limit_burst=2)
    assert [client.get("/v1/related/b1").status_code for _ in range(2)] == [200, 200]
    limited = client.get("/v1/related/b1/fragment")
    assert limited.status_code == 429 and limited.json()["detail"]
    assert 90 <= int(limited.headers["retry-after"]) <= 100  # one token at 0.01/s
    assert client.post("/v1/events", json={"type": "click", "origin_id": "b1", "article_id": "b2",
                                           "position": 1}).status_code == 429
    assert client.get("/healthz").status_code == 200 and client.get("/widget.js").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/v1/related/b1", headers={"X-API-Key": KEY}).status_code == 200  # the site's backend
    # Without a key a write attempt spends tokens too, so guessing keys is slow.
    assert client.post("/v1/articles", json=ROW, headers={"X-API-Key": "guess"}).status_code == 429
    assert 'recsys_rate_limited_total 3.0' in client.get("/metrics").text


def test_forwarded_for_counts_only_behind_trusted_proxies(engine, settings) -> None:  # noqa: ANN001
    direct = make_client(engine, settings, rate_limit_per_s=0.01, rate_limit_burst=1)
    assert direct.get("/v1/related/b1", headers={"X-Forwarded-For": "1.1.1.1"}).status_code == 200
    spoofed = direct.get("/v1/related/b1", headers={"X-Forwarded-For": "2.2.2.2"})
    assert spoofed.status_code == 429  # the header is ignored: same socket peer
    proxied = make_client(engine, settings, rate_limit_per_s=0.01, rate_limit_burst=1, trusted_proxy_hops=1)
    assert proxied.get("/v1/related/b1", headers={"X-Forwarded-For": "9.9.9.9, 1.1.1.1"}).status_code == 200
    assert proxied.get("/v1/related/b1", headers={"X-Forwarded-For": "8.8.8.8, 2.2.2.2"}).status_code == 200
    # The client-written part (left of our proxy's entry) cannot buy a fresh bucket.
    assert proxied.get("/v1/related/b1", headers={"X-Forwarded-For": "7.7.7.7, 1.1.1.1"}).status_code == 429


def test_token_bucket_refills_and_forgets_the_idlest_clients() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2.0, burst=3, max_clients=2, clock=lambda: now[0])
    assert [bucket.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take("a") == pytest.approx(0.5)  # empty: one token comes back in 1/2 s
    now[0] = 0.25
    assert bucket.take("a") == pytest.approx(0.25)
    now[0] = 0.5
    assert bucket.take("a") == 0.0 and bucket.take("a") > 0
    bucket.take("b")
    bucket.take("c")  # over max_clients: "a", the idlest, is forgotten (and so refilled)
    assert len(bucket) == 2 and bucket.take("a") == 0.0
    assert TokenBucket(rate=0, burst=1).take("x") == 0.0  # rate 0 turns limits off


# -- size limits --------------------------------------------------------------------------------
def test_oversized_requests_get_413_or_414_or_422(engine, settings) -> None:  # noqa: ANN001
    client = make_client(engine, settings, max_event_body_bytes=1024, max_events=2, max_exclude=3, max_url_bytes=512)
    big = client.post("/v1/events", content=b"[" + b" " * 2000 + b"]")
    assert big.status_code == 413 and "1024 bytes" in big.json()["detail"]
    click = {"type": "click", "origin_id": "b1", "article_id": "b2", "position": 1}
    many = client.post("/v1/events", json=[click] * 3)
    assert many.status_code == 413 and "at most 2" in many.json()["detail"]
    long_url = client.get("/v1/related/b1", params={"section": "x" * 600})
    assert long_url.status_code == 414 and "512 bytes" in long_url.json()["detail"]
    excluded = client.get("/v1/related/b1", params={"exclude": "a1,a2,a3,a4"})
    assert excluded.status_code == 422 and "at most 3" in excluded.json()["detail"]
    metrics = client.get("/metrics").text  # refused before routing, still labelled by route template
    assert 'route="/v1/events",status="413"' in metrics and 'route="/v1/related/{article_id}",status="414"' in metrics


# -- /metrics and /widget.js --------------------------------------------------------------------
def test_metrics_in_prometheus_format(client: TestClient, engine) -> None:  # noqa: ANN001
    for article_id in ("a1", "b1", "c1"):
        client.get(f"/v1/related/{article_id}")
    client.get("/no/such/path")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'recsys_http_requests_total{method="GET",route="/v1/related/{article_id}",status="200"} 3.0' in text
    assert 'route="<unmatched>",status="404"' in text and "/v1/related/a1" not in text
    assert re.search(r'recsys_http_request_duration_seconds_count\{method="GET",route="/v1/related/\{article_id\}"\} 3\.0', text)
    assert 'recsys_http_request_duration_seconds_bucket{le="0.005"' in text
    assert f"recsys_articles {engine.store.count()}.0" in text and f"recsys_index_vectors {engine.live.ntotal}.0" in text
    assert f'recsys_index_info{{build_id="{engine.live.manifest.build_id}"' in text
    assert "recsys_index_build_timestamp_seconds 1." in text and "recsys_cache_misses_total 3.0" in text


def test_widget_script_is_served_cacheable(client: TestClient) -> None:
    script = client.get("/widget.js")
    assert script.status_code == 200 and script.headers["content-type"].startswith("text/javascript")
    assert "IntersectionObserver" in script.text and script.headers["cache-control"] == "public, max-age=3600"
    assert client.get("/widget.js", headers={"If-None-Match": script.headers["etag"]}).status_code == 304


def test_fragment_by_canonical_url_matches_the_one_by_id(client: TestClient) -> None:
    by_id = client.get("/v1/related/b1/fragment", params={"limit": 3})
    by_url = client.get("/v1/fragment", params={"url": "https://news.example/b1", "limit": 3})
    assert by_url.status_code == 200 and by_url.headers["content-type"].startswith("text/html")
    assert by_url.text == by_id.text and by_url.headers["etag"] == by_id.headers["etag"]  # same bytes, same tag
    again = client.get("/v1/fragment", params={"url": "https://news.example/b1", "limit": 3},
                       headers={"If-None-Match": by_url.headers["etag"]})
    assert again.status_code == 304
    assert client.get("/v1/fragment", params={"url": "https://nowhere.example/x"}).status_code == 404
    assert client.get("/v1/fragment").status_code == 422
