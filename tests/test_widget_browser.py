"""The widget in a real browser: Debian's headless Chromium, driven by Playwright's Python client.

Local servers run on threads: the recsys API (tiny model, the hand-made corpus) and a
"publisher site" on another port (so another origin) that embeds the widget the way a customer
would and also plays a broken API (HTTP 500) and a slow one. The same site on a third port is an
origin that RECSYS_CORS_ORIGINS does not list. Everything stays on 127.0.0.1 (a page on a public
origin could not reach a loopback API at all: Chromium's private network rules forbid it).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from conftest import story_articles
from recsys.api import create_app
from recsys.settings import Settings

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
KEY = "browser-test-key"
FALLBACK = "Більше новин на головній"

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")
if not Path(CHROMIUM).exists():
    pytest.skip("chromium is not installed: run `sh tests/install_chromium.sh` (apt-get install chromium) "
                "to run the browser test", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """A uvicorn server on a thread, on a free loopback port."""

    def __init__(self, app: Callable, port: int) -> None:
        import uvicorn

        self.port, self.origin = port, f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "test server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def publisher_page(article_id: str, widget_src: str, attrs: str = "", spacer: bool = False) -> str:
    """An article page of a customer's site: text, the placeholder with a quiet fallback, the script."""
    gap = '<div style="height:3000px">advertising</div>' if spacer else ""
    return f"""<!doctype html><html lang="uk"><head><meta charset="utf-8"><title>Site</title></head><body>
<article id="story"><h1>Стаття на сайті видавця</h1><p>Текст статті.</p></article>{gap}
<div id="block" data-recsys-article="{article_id}" data-recsys-limit="3" {attrs}><p class="fallback">{FALLBACK}</p></div>
<footer id="footer">© Видавець</footer>
<script src="{widget_src}" async></script></body></html>"""


def site_app(api: str, slow_answer: dict) -> Starlette:
    """The publisher's pages, plus an API that fails (500) and one that answers too late."""

    async def article(request: Request) -> HTMLResponse:
        attrs = {"broken": 'data-recsys-api="/broken"', "slow": 'data-recsys-api="/slow" data-recsys-timeout="300"'}
        return HTMLResponse(publisher_page(request.path_params["article_id"], f"{api}/widget.js",
                                           attrs.get(request.query_params.get("api", ""), ""),
                                           spacer="far" in request.query_params))

    async def broken(_: Request) -> Response:
        return JSONResponse({"detail": "internal error"}, status_code=500)

    async def slow(_: Request) -> Response:
        await asyncio.sleep(1.2)
        return JSONResponse(slow_answer)

    return Starlette(routes=[
        Route("/article/{article_id}", article),
        Route("/broken/v1/related/{article_id}", broken),
        Route("/slow/v1/related/{article_id}", slow),
        Route("/{api}/v1/events", broken, methods=["POST"]),
    ])


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory, tiny_model_path: Path, tiny_embedder) -> Iterator[dict]:  # noqa: ANN001
    from recsys.engine import open_engine

    folder = tmp_path_factory.mktemp("browser")
    api_port, site_port, foreign_port = free_port(), free_port(), free_port()
    settings = Settings(model=str(tiny_model_path), db_path=folder / "recsys.db", index_dir=folder / "index",
                        recency_weight=0.0, api_keys=SecretStr(KEY), cors_origins=f"http://127.0.0.1:{site_port}",
                        demo=True)
    engine = open_engine(settings, embedder=tiny_embedder)
    engine.upsert(story_articles())
    api_origin = f"http://127.0.0.1:{api_port}"
    with Server(create_app(settings, engine), api_port) as api:
        answer = httpx.get(f"{api.origin}/v1/related/b1", params={"limit": 3}, headers={"X-API-Key": KEY}).json()
        with Server(site_app(api_origin, answer), site_port) as site, \
                Server(site_app(api_origin, answer), foreign_port) as foreign:
            yield {"api": api.origin, "site": site.origin, "foreign": foreign.origin, "db": settings.db_path}
    engine.store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator:  # noqa: ANN201
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):  # noqa: ANN001, ANN201
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="uk-UA")
    tab = context.new_page()
    tab.errors, tab.console = [], []
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    tab.on("console", lambda message: tab.console.append(f"{message.type}: {message.text}"))
    yield tab
    context.close()


def related(servers: dict, article_id: str, limit: int) -> list[dict]:
    params = {"limit": limit}
    return httpx.get(f"{servers['api']}/v1/related/{article_id}", params=params, headers={"X-API-Key": KEY}).json()["items"]


def events(db: Path, kind: str) -> tuple[list[tuple], list[tuple]]:
    """(position, count) and (article, count) of the counted events of one type (recsys.events)."""
    with sqlite3.connect(db) as conn:
        positions = conn.execute("SELECT position, SUM(n) FROM event_minutes WHERE type = ? GROUP BY position "
                                 "ORDER BY position", (kind,)).fetchall()
        articles = conn.execute("SELECT article_id, SUM(n) FROM event_articles WHERE type = ? GROUP BY article_id "
                                "ORDER BY article_id", (kind,)).fetchall()
    return (positions, articles) if positions else ([], [])


def wait_for(check: Callable[[], object], seconds: float = 5.0) -> object:
    deadline = time.monotonic() + seconds
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def test_demo_page_renders_the_block_and_a_click_records_an_event(servers: dict, page) -> None:  # noqa: ANN001
    expected = related(servers, "b1", 5)
    page.goto(f"{servers['api']}/demo/b1")
    region = page.get_by_role("region", name="Читайте також")
    links = region.get_by_role("link")
    links.first.wait_for()
    assert links.count() == 5 and page.locator(".recsys__list > li").count() == 5
    hrefs = links.evaluate_all("links => links.map(a => a.href)")
    assert hrefs == [f"{servers['api']}/demo/{item['id']}" for item in expected]
    assert [links.nth(i).inner_text() for i in range(5)] == [i["title"] for i in expected]
    assert [links.nth(i).get_attribute("data-recsys-position") for i in range(5)] == ["1", "2", "3", "4", "5"]
    assert {links.nth(i).get_attribute("data-recsys-origin") for i in range(5)} == {"b1"}
    outlets = page.locator(".recsys__outlet").all_inner_texts()
    assert outlets == [f"– {i['source']}" for i in expected] and "– Голос Харкова" in outlets
    first_date = page.locator(".recsys__date").first
    assert first_date.get_attribute("datetime") == expected[0]["published_at"]
    assert "жовтня 2026" in first_date.inner_text()  # b2, 5 October 2026, in the page's language
    assert page.locator("h1").inner_text().startswith("Повінь у Дніпрі")  # the article body is still there

    # The block is on screen, so its impression is counted: once at each position 1..5, once for each link.
    positions, articles = wait_for(lambda: events(servers["db"], "impression")[0] and events(servers["db"], "impression"))
    assert positions == [(n, 1) for n in range(1, 6)]
    assert articles == sorted((item["id"], 1) for item in expected)

    links.nth(1).click()
    page.wait_for_url(f"**/demo/{expected[1]['id']}")
    positions, articles = wait_for(lambda: events(servers["db"], "click")[0] and events(servers["db"], "click"))
    assert (positions, articles) == ([(2, 1)], [(expected[1]["id"], 1)])
    assert page.errors == []


def test_a_page_on_another_allowed_origin_links_to_canonical_urls(servers: dict, page) -> None:  # noqa: ANN001
    expected = related(servers, "c1", 3)
    page.goto(f"{servers['site']}/article/c1")
    page.locator(".recsys__link").first.wait_for()
    hrefs = page.locator(".recsys__link").evaluate_all("links => links.map(a => a.href)")
    assert hrefs == [item["url"] for item in expected]
    assert page.locator(".fallback").count() == 0 and page.locator("#block").get_attribute("data-recsys-state") == "ready"
    assert page.locator("#footer").is_visible() and page.errors == []


def test_the_block_loads_only_when_it_nears_the_viewport(servers: dict, page) -> None:  # noqa: ANN001
    asked: list[str] = []
    page.on("request", lambda request: asked.append(request.url) if "/v1/related/" in request.url else None)
    page.goto(f"{servers['site']}/article/d1?far=1")
    page.wait_for_function("() => window.recsys && window.recsys.version")
    page.wait_for_timeout(300)
    assert asked == [] and page.locator(".fallback").count() == 1  # below the fold: not fetched yet
    page.locator("#block").scroll_into_view_if_needed()
    page.locator(".recsys__link").first.wait_for()
    assert len(asked) == 1 and asked[0].startswith(f"{servers['api']}/v1/related/d1?")


@pytest.mark.parametrize("case", ["broken", "slow", "foreign-origin"])
def test_a_failing_or_slow_api_leaves_the_page_intact(servers: dict, page, case: str) -> None:  # noqa: ANN001
    if case == "foreign-origin":  # the browser refuses the answer: no Access-Control-Allow-Origin for it
        page.goto(f"{servers['foreign']}/article/b1")
    else:
        page.goto(f"{servers['site']}/article/b1?api={case}")
    block = page.locator("#block")
    try:
        page.wait_for_function("() => document.getElementById('block').dataset.recsysState === 'failed'", timeout=5000)
    except sync_api.TimeoutError:
        pytest.fail(f"the widget did not give up: state {block.get_attribute('data-recsys-state')!r}, console {page.console}")
    if case == "slow":
        page.wait_for_timeout(1500)  # the late answer arrives after the timeout and must be ignored
    assert block.get_attribute("data-recsys-state") == "failed"
    assert page.locator(".fallback").inner_text() == FALLBACK and page.locator(".recsys").count() == 0
    assert page.locator("#story h1").is_visible() and page.locator("#footer").is_visible()
    assert page.errors == []
