"""Bad input never becomes a 500 or a traceback: each cause found from outside, one regression test each."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from scipy import sparse

from recsys import blocks, lexical
from recsys import candidates as cand
from recsys import index as idx
from recsys.api import create_app
from recsys.article import Article
from recsys.catalog import Catalog, Meta
from recsys.cli import main
from recsys.errors import InvalidInput
from recsys.recommend import Filters, Query
from recsys.safe_json import loads, plain
from recsys.widget import safe_url

KEY = "test-key"
DEEP = "[" * 1000 + "]" * 1000
HUGE = "1" * 5000


@pytest.fixture()
def client(engine, settings) -> TestClient:  # noqa: ANN001
    keyed = settings.model_copy(update={"api_keys": SecretStr(KEY), "demo": True})
    return TestClient(create_app(keyed, engine), headers={"X-API-Key": KEY}, raise_server_exceptions=False)


def strict(response) -> dict:  # noqa: ANN001
    """The body as strict JSON: NaN or Infinity tokens raise, as in a strict client."""
    def refuse(token: str) -> None:
        raise ValueError(f"{token} in the body")
    return json.loads(response.content, parse_constant=refuse)


def post(client: TestClient, path: str, text: str):  # noqa: ANN201
    return client.post(path, content=text.encode("utf-8"), headers={"Content-Type": "application/json"})


# -- 1 and 2: deep nesting, huge integers ---------------------------------------------------------

@pytest.mark.parametrize(("path", "text", "reason"), [
    ("/v1/articles", DEEP, "nested too deeply"),
    ("/v1/events", DEEP, "nested too deeply"),
    ("/v1/articles", '{"id": %s, "title": "x", "lang": "en"}' % HUGE, "more than 4300 digits"),
    ("/v1/events", '{"type": "click", "origin_id": "a1", "article_id": "a2", "position": %s}' % HUGE,
     "more than 4300 digits"),
    ("/v1/articles", '{"id": "n1", "title": "x", "lang": "en", "published_at": NaN}', "NaN is not a JSON number"),
    ("/v1/articles", '{"id": "n1", "title": "x", "lang": "en", "published_at": 1e999}', "too large"),
])
def test_bodies_python_cannot_read_are_422_with_the_reason(client: TestClient, path: str, text: str,
                                                           reason: str) -> None:
    response = post(client, path, text)
    assert response.status_code == 422
    assert reason in strict(response)["detail"] and strict(response)["detail"].startswith("body is not valid JSON")


@pytest.mark.parametrize("text", [f'{{"title": "x", "exclude": {DEEP}}}', f'{{"title": "x", "limit": {HUGE}}}'])
def test_draft_bodies_python_cannot_read_are_400(client: TestClient, text: str) -> None:
    response = post(client, "/v1/related", text)
    assert response.status_code == 400 and strict(response)["detail"]


def test_a_huge_integer_in_the_query_is_422_and_its_echo_is_cut(client: TestClient) -> None:
    response = client.get("/v1/related/a1", params={"limit": HUGE})
    detail = strict(response)["detail"][0]
    assert response.status_code == 422 and detail["loc"] == ["query", "limit"] and len(detail["input"]) <= 201


# -- 3: echoes of NaN, Infinity and lone surrogates -------------------------------------------------

@pytest.mark.parametrize(("text", "field", "echo"), [
    ('{"title": "x", "max_age_days": NaN}', "max_age_days", "nan"),
    ('{"title": "x", "max_age_days": -1e999}', "max_age_days", "-inf"),
    ('{"title": "x", "limit": 1e999}', "limit", "inf"),
    ('{"title": "x", "lang": "\\ud800"}', "lang", "\\ud800"),
    ('{"title": "x\\ud800", "lang": "en"}', "title", "x\\ud800"),
])
def test_validation_errors_that_echo_bad_values_are_strict_json(client: TestClient, text: str, field: str,
                                                                echo: str) -> None:
    response = post(client, "/v1/related", text)
    detail = strict(response)["detail"][0]
    assert response.status_code == 422 and detail["loc"] == ["body", field] and detail["input"] == echo


def test_a_deep_echo_is_cut(client: TestClient) -> None:
    response = post(client, "/v1/related", '{"title": "x", "exclude": ' + "[" * 500 + "]" * 500 + "}")
    echo = strict(response)["detail"][0]["input"]
    assert response.status_code == 422 and len(response.content) < 300 and echo[0][0][0][0] == "…"


def test_a_row_whose_id_is_a_lone_surrogate_is_reported_not_a_500(client: TestClient) -> None:
    response = post(client, "/v1/articles", '[{"id": "\\udfff", "title": "x", "lang": "en"},'
                    ' {"id": "ok1", "title": "Lviv tram line", "lang": "en"}]')
    body = strict(response)
    assert response.status_code == 200 and body["stored"] == 1
    assert body["errors"][0]["id"] == "\\udfff" and "unicode" in body["errors"][0]["reason"]


def test_plain_makes_anything_encodable() -> None:
    value = {"nan": float("nan"), "big": 10 ** 5000, "s": "\ud800", "deep": [[[[[[[[1]]]]]]]], "x": object()}
    out = plain(value)
    assert json.loads(json.dumps(out, allow_nan=False)) == out
    assert out["nan"] == "nan" and out["big"].startswith("<integer") and out["s"] == "\\ud800"
    assert out["deep"][0][0][0][0][0] == "…"


def test_loads_refuses_what_is_not_strict_json_with_a_reason() -> None:
    assert loads('{"a": [1, 2.5, "\\ud83d\\ude00"]}') == {"a": [1, 2.5, "😀"]}
    for text, reason in (("Infinity", "Infinity"), ("-Infinity", "-Infinity"), (DEEP, "nested"), (HUGE, "digits"),
                         ("[1e400]", "too large"), ("{oops", "at character 1"), (b"\xff", "not UTF-8")):
        with pytest.raises(InvalidInput, match=reason):
            loads(text)


# -- 4: a naive year-1 bound on the click-through report ---------------------------------------------

def test_ctr_bounds_at_the_ends_of_time_are_answered(client: TestClient) -> None:
    event = {"type": "click", "origin_id": "b1", "article_id": "b2", "position": 1}
    assert client.post("/v1/events", json=event).json() == {"stored": 1, "unknown": 0}
    for params, clicks in (({"since": "0001-01-01T00:00:00"}, 1), ({"until": "0001-01-01T00:00:00"}, 0),
                           ({"until": "9999-12-31T23:59:59"}, 1), ({"since": "9999-12-31T23:59:59-12:00"}, 0),
                           ({"since": "0001-01-01T00:00:00+14:00"}, 1)):
        response = client.get("/v1/events/ctr", params=params)
        assert response.status_code == 200 and response.json()["clicks"] == clicks, params


# -- 5: the CLI reports such lines and goes on --------------------------------------------------------

def test_ingest_reports_unreadable_lines_with_their_number_and_keeps_the_rest(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_model_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in (("MODEL", tiny_model_path), ("DB_PATH", tmp_path / "cli.db"), ("INDEX_DIR", tmp_path / "i")):
        monkeypatch.setenv(f"RECSYS_{name}", str(value))
    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps({"id": "k0", "title": "Нацбанк знизив облікову ставку", "lang": "uk"}) + "\n")
    assert main(["ingest", str(first), "--quiet"]) == 0
    lines = [json.dumps({"id": "k1", "title": "Марченко виграла спринт біатлон", "lang": "uk"}), DEEP,
             '{"id": %s, "title": "x", "lang": "en"}' % HUGE, '{"id": "k9", "title": NaN, "lang": "en"}',
             json.dumps({"id": "k/2", "title": "slash", "lang": "en"}),
             json.dumps({"id": "k3", "title": "Біатлон: Марченко перемогла у спринті", "lang": "uk"})]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["ingest", str(path), "--quiet"]) == 2
    captured = capsys.readouterr()
    err = [line for line in captured.err.splitlines() if line.startswith(str(path))]
    assert err == [f"{path}:2: not valid JSON: nested too deeply",
                   f"{path}:3: not valid JSON: an integer has more than 4300 digits",
                   f"{path}:4: not valid JSON: NaN is not a JSON number",
                   f"{path}:5: id: must not contain '/': an id is one segment of URLs such as /v1/related/{{id}}, "
                   "so /, \\, ?, # and control characters are refused"]
    assert "Traceback" not in captured.err and json.loads(captured.out)["stored"] == 2
    assert main(["info"]) == 0 and json.loads(capsys.readouterr().out)["articles"] == 3  # k0 kept


# -- 6: ids that cannot be one URL path segment --------------------------------------------------------

@pytest.mark.parametrize("bad", ["a/b", "a\\b", "a?b", "a#b", "a\u0000b", "a\tb", "a\u0085b", ".", "..", "   "])
def test_ids_that_break_urls_are_refused_at_write_time(client: TestClient, bad: str) -> None:
    response = client.post("/v1/articles", json=[{"id": bad, "title": "x", "lang": "en"},
                                                 {"id": "fine-1", "title": "Lviv tram", "lang": "en"}])
    body = response.json()
    assert response.status_code == 200 and body["stored"] == 1 and body["errors"][0]["index"] == 0
    assert body["errors"][0]["reason"].startswith("id: ")
    assert client.get("/v1/articles/fine-1").status_code == 200


def test_an_id_with_other_characters_is_reachable_on_every_route(client: TestClient) -> None:
    ident = "a b,ü+ 50%"  # ("%2F" would also work, but TestClient decodes a path twice)
    assert client.post("/v1/articles", json={"id": ident, "title": "Lviv tram line to Sykhiv", "lang": "en"}
                       ).status_code == 200
    segment = quote(ident, safe="")
    for path in (f"/v1/articles/{segment}", f"/v1/related/{segment}", f"/v1/related/{segment}?section=x",
                 f"/v1/related/{segment}/fragment", f"/demo/{segment}"):
        assert client.get(path).status_code == 200, path
    assert f'href="/demo/{segment}"' in client.get(f"/demo/{segment}").text
    assert client.delete(f"/v1/articles/{segment}").json() == {"deleted": ident}


# -- 7: every rendered URL is http(s) ---------------------------------------------------------------

def test_demo_and_fragment_render_only_http_links(client: TestClient) -> None:
    rows = [{"id": "j1", "title": "Lviv tram line to Sykhiv opens", "lang": "en", "url": "javascript:alert(1)",
             "original_url": "javascript:alert(2)", "original_source": "Evil"},
            {"id": "j2", "title": "Lviv tram line Sykhiv twelve stops", "lang": "en", "url": "http://[x",
             "image_url": "http://[y", "original_url": "https://orig.example/j2", "original_source": "Orig"}]
    assert client.post("/v1/articles", json=rows).json()["stored"] == 2
    for path in ("/demo/j1", "/demo/j2", "/v1/related/j1/fragment?thumbnails=true&lang_policy=any&limit=20"):
        response = client.get(path)
        assert response.status_code == 200 and "javascript:" not in response.text and "http://[" not in response.text
    assert "Translated from Evil (" in client.get("/demo/j1").text
    assert '<a href="https://orig.example/j2">Orig</a>' in client.get("/demo/j2").text


def test_safe_url_is_none_for_what_is_not_absolute_http() -> None:
    for url in ("javascript:alert(1)", " JavaScript:alert(1)", "data:text/html,x", "http://[x", "//host/x", "/x", ""):
        assert safe_url(url) is None, url
    assert safe_url(" https://ok.example/a ") == "https://ok.example/a"


# -- 8: an unmatched filter is bounded ----------------------------------------------------------------

@pytest.fixture()
def counted(monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Every FAISS search of a request, and the rows each fill step was handed to read."""
    seen: dict[str, list] = {"searches": [], "fill": []}
    search, fill_rows = idx.LiveIndex.search, cand.fill_rows

    def counting_search(self, vector, k, lang=None):  # noqa: ANN001, ANN202
        seen["searches"].append(k)
        return search(self, vector, k, lang)

    def counting_fill(snap, order, query, filters, taken, need, section, policy):  # noqa: ANN001, ANN202
        seen["fill"].append((section, filters.max_age_days, len(order)))
        return fill_rows(snap, order, query, filters, taken, need, section, policy)

    monkeypatch.setattr(idx.LiveIndex, "search", counting_search)
    monkeypatch.setattr(cand, "fill_rows", counting_fill)
    return seen


def test_an_unknown_section_searches_once_and_reads_no_row_for_its_fill(engine, counted) -> None:  # noqa: ANN001
    engine.upsert([Article(id="x1", title="Theatre season opens", lang="en", section="culture")])
    engine.knobs = replace(engine.knobs, related_floor=-1.0)  # every candidate clears it: only the section filters
    engine._depth = blocks.Depth(first=1, deepest=16)  # a first search of 8 (limit 1), widened once to 16
    related = engine.related_to_article("b1", Filters(1, section="no-such-section"))
    assert counted["searches"] == [8]  # no row can match a section no row has: no search widens
    assert counted["fill"][0][2] == 0 and related.relaxed == ["section"] and len(related.items) == 1
    counted["searches"].clear()
    engine.related_to_article("b1", Filters(1, section="culture"))  # known, but no Ukrainian row has it
    assert counted["searches"] == [8, 16]  # widened, and only as deep as RECSYS_MAX_CANDIDATES


def test_fill_steps_read_only_rows_of_their_language_section_and_window(engine, counted) -> None:  # noqa: ANN001
    # b4 is Russian; no Russian row is in sport, and no row is within a second of another
    related = engine.related_to_article("b4", Filters(2, section="sport"))
    assert counted["fill"][0] == (engine.live.catalog.code_of("section", "sport"), None, 0)
    counted["fill"].clear()
    related = engine.related_to_article("b1", Filters(2, max_age_days=1e-6))
    # b1 alone is within a microsecond-day of itself (fill_rows then leaves it out)
    assert [rows for _, days, rows in counted["fill"] if days is not None] == [1, 1]
    assert related.relaxed == ["max_age_days"] and len(related.items) == 2


def test_a_fill_step_reads_at_most_fill_scan_rows(engine, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    snap = engine.live.catalog.snapshot()
    order = cand.NewestOrder().of(snap)
    query = Query(-1, -1, 0.0)
    assert len(cand.fill_rows(snap, order, query, Filters(5), np.zeros(0, np.int64), 5, None, "any")) == 5
    monkeypatch.setattr(cand, "FILL_SCAN_ROWS", 3)
    taken = order[:3]  # the only rows it may read are taken: it stops there, however many rows follow
    assert cand.fill_rows(snap, order, query, Filters(5), taken, 5, None, "any") == []


def test_newest_order_windows_hold_every_row_the_exact_test_keeps(engine) -> None:  # noqa: ANN001
    snap, newest = engine.live.catalog.snapshot(), cand.NewestOrder()
    ts = snap.col["ts"]
    full = newest.of(snap)
    dated = full[~np.isnan(ts[full])]
    assert list(dated) == sorted(dated, key=lambda r: -ts[r])  # newest first, undated (none here) last
    for anchor_row in (0, 5, 12):
        for days in (1e-6, 0.2, 3.0, 40.0, 1e9):
            query = Query(anchor_row, 0, float(ts[anchor_row]))
            exact = [r for r in full if not abs(ts[r] - query.anchor_ts) > days * 86400.0]
            bounds = cand.time_bounds(query, Filters(5, max_age_days=days))
            narrowed = [r for r in newest.of(snap, None, None, *bounds) if r in exact]
            assert narrowed == exact and len(newest.of(snap, None, None, *bounds)) <= len(exact) + 2


def test_newest_order_puts_every_dated_row_before_the_undated() -> None:
    # (it sorted undated rows as if dated 1970, before any row of year 1 to 1969)
    metas = [Meta(i + 1, f"r{i}", "en", ts, None, None, None, f"t{i}", i + 1)
             for i, ts in enumerate([-6.2e10, None, 50.0, -100.0])]
    catalog = Catalog(4, 8)
    catalog.append(metas, np.zeros((4, 4), np.float32), sparse.csr_matrix((4, lexical.N_FEATURES), dtype=np.float32))
    newest, snap = cand.NewestOrder(), catalog.snapshot()
    assert newest.of(snap).tolist() == [2, 3, 0, 1]
    assert newest.of(snap, None, None, -200.0, 60.0).tolist() == [2, 3, 1]
    assert newest.of(snap, None, None, -np.inf, 0.0, undated=False).tolist() == [3, 0]


@pytest.mark.parametrize(("fill", "count"), [("false", 0), ("true", 5)])
def test_an_unmatched_answer_is_cached_like_a_full_one(client: TestClient, monkeypatch: pytest.MonkeyPatch,
                                                       fill: str, count: int) -> None:
    made, assemble = [], blocks.assemble
    monkeypatch.setattr(blocks, "assemble", lambda *args: made.append(1) or assemble(*args))
    params = {"section": "no-such-section", "max_age_days": 1e-6, "fill": fill}
    first = client.get("/v1/related/b1", params=params)
    again = client.get("/v1/related/b1", params=params)
    assert first.json()["count"] == count and again.content == first.content and len(made) == 1
