"""HTTP stage: the FastAPI app factory. The model and index are loaded once, in create_app.

Middleware, outermost first: metrics (sees every answer), CORS (configured origins only), size
limits. Routes then depend on the Guard: anonymous reads are rate-limited per client, writes and
the click-through report need an API key, and /healthz, /metrics and /widget.js are exempt.
"""

from __future__ import annotations

import gc
import hashlib
import logging
from typing import Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi_offline import FastAPIOffline

from recsys import demo, request_guard, widget
from recsys.allocator import limit_malloc_arenas
from recsys.answers import JSON, Answers, RelatedResponse, make_filters, params_key, related_body
from recsys.api_schema import (CACHED, HTML, TEXT, CtrReport, Deleted, DraftRequest, EventsStored, Health,
                               LangPolicy, Upserted, UpsertRefused, article_body, event_body, related_ok, responses)
from recsys.article import Article
from recsys.cache import ResponseCache, etag_matches
from recsys.engine import Engine, open_engine
from recsys.errors import InvalidInput
from recsys.events import EventStore, ctr_by_position, epoch_bound, parse_events
from recsys.hot_path import HotPath
from recsys.ingest import batch_rows, detect_lang, parse_article
from recsys.materialize import Materializer
from recsys.monitoring import MetricsMiddleware, Monitoring
from recsys.protection import ApiKeys, BodyLimit, Guard, TokenBucket, split_csv
from recsys.request_guard import SafeJSONResponse, json_body
from recsys.safe_json import plain
from recsys.settings import Settings, load_settings
from recsys.wire_types import IsoTime

log = logging.getLogger(__name__)

# What each kind of route can answer besides its 200 (see api_schema.WHEN). A route with parameters
# declares 422 even where they cannot fail (an id is any text): FastAPI would declare its own.
BLOCK_ERRORS = (304, 404, 414, 422, 429)
KEYED_ERRORS = (401, 403, 414, 429)


def _batch(body: Any, max_batch: int) -> list[Any]:
    return batch_rows(body, "articles", max_batch)


def _changed_ids(engine: Engine, articles: list[Any]) -> set[str]:
    """Ids whose stored state the upsert changes (re-sent unchanged articles keep their cache entries)."""
    before = {a.id: a.model_dump(mode="json") for a in engine.store.get_many([a.id for a in articles])}
    return {a.id for a in articles if before.get(a.id) != a.model_dump(mode="json")}


def _upsert(engine: Engine, cache: ResponseCache, materializer: Materializer, rows: list[Any]) -> JSONResponse:
    good, errors = [], []
    for position, raw in enumerate(rows):
        try:
            good.append(parse_article(raw))
        except InvalidInput as exc:
            ident = plain(raw.get("id")) if isinstance(raw, dict) else None  # echoed: may be any JSON
            errors.append({"index": position, "id": ident, "reason": exc.message})
    changed = _changed_ids(engine, good) if good else set()
    vectors_before = engine.store.fingerprints(changed)
    result = engine.upsert(good) if good else None
    vectors_after = engine.store.fingerprints(changed)
    moved = {i for i in changed if vectors_after.get(i) != vectors_before.get(i)}
    # A new or re-embedded article may now belong in other blocks; cosine is symmetric, so those
    # are the blocks of its own nearest neighbours.
    stale = changed | engine.neighbours(moved, engine.settings.invalidate_neighbours)
    cache.invalidate(stale)
    materializer.enqueue(sorted(stale))
    body = {"stored": len(good), "errors": errors, **(result.__dict__ if result else {})}
    if not good:
        body["detail"] = f"no valid article among {len(rows)}: {errors[0]['reason']}"
    return SafeJSONResponse(body, status_code=200 if good else 422)


def _add_middleware(app: FastAPI, settings: Settings, monitoring: Monitoring, answers: Answers, guard: Guard) -> None:
    app.add_middleware(HotPath, answers=answers, guard=guard, route=lambda: _route(app, "/v1/related/{article_id}"))
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes, max_url_bytes=settings.max_url_bytes,
                       per_path={"/v1/events": settings.max_event_body_bytes})
    origins = split_csv(settings.cors_origins)
    if origins:
        # No X-API-Key in allow_headers: pages on other origins must never send write keys.
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"], expose_headers=["ETag", "Retry-After"], max_age=600)
    app.add_middleware(MetricsMiddleware, monitoring=monitoring, root=lambda: app)


def _route(app: FastAPI, path: str) -> object:
    return next(route for route in app.router.routes if getattr(route, "path", None) == path)


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The API over one recsys instance; loads model and index now unless an engine is given."""
    engine = engine or open_engine(settings)
    app = FastAPIOffline(title="recsys", version="0.1.0", description="Related headlines for news sites",
                         default_response_class=SafeJSONResponse, dependencies=[Depends(request_guard.one_value_each)])
    cache = ResponseCache(settings.cache_max_entries, settings.cache_ttl, max_bytes=settings.cache_max_bytes)
    guard = Guard(ApiKeys(split_csv(settings.api_keys)),
                  TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst, settings.rate_limit_clients),
                  settings.trusted_proxy_hops, split_csv(settings.cors_origins))
    monitoring = Monitoring(engine, cache, guard)
    app.state.engine, app.state.cache, app.state.guard, app.state.monitoring = engine, cache, guard, monitoring
    app.state.events = EventStore(engine.store.path)
    answers = Answers(engine, cache, settings)
    _add_middleware(app, settings, monitoring, answers, guard)
    if not split_csv(settings.api_keys):
        log.warning("RECSYS_API_KEYS is unset: writes over HTTP (POST/DELETE /v1/articles) are refused")

    request_guard.install(app)
    app.state.materializer = materializer = Materializer(answers)
    if settings.materialize and settings.cache_max_entries > 0:
        materializer.start()
    _related_routes(app, settings, answers, guard)
    _article_routes(app, settings, answers, guard)
    _event_routes(app, settings, guard, monitoring)
    _page_routes(app, settings, engine, guard, monitoring)
    return app


def serving_app(settings: Settings) -> FastAPI:
    """The app of a server process. Its model, index and catalog are ~400k long-lived objects: moved
    out of the collector's reach, a full collection no longer walks them (0.2 s stalls under load)."""
    limit_malloc_arenas(settings.malloc_arenas)  # before the model's and the server's threads start
    app = create_app(settings)
    gc.collect()
    gc.freeze()
    return app


def _related_routes(app: FastAPI, settings: Settings, answers: Answers, guard: Guard) -> None:
    engine, read = answers.engine, [Depends(guard.read)]
    limit_q = Query(None, ge=1, description=f"items wanted (capped at {settings.max_limit})")
    # None, not default_factory=list: pydantic inspects a builtin factory's signature on every request
    exclude_q = Query(None, description="ids to leave out (repeat or comma-separate)")
    url_q = Query(..., min_length=1, description="canonical URL of a stored article")
    lang_q = Query(None, pattern=r"^[a-z]{2}$", description="page language (heading, dates)")
    fill_q = Query(None, description="fill a short block with the newest items (reason=fill); "
                   "default RECSYS_FILL")
    block = responses(*BLOCK_ERRORS, ok=related_ok(JSON))
    fragment = {"response_class": Response, "responses": responses(*BLOCK_ERRORS, ok=related_ok(HTML))}

    @app.get("/v1/related/{article_id}", responses=block, dependencies=read, tags=["related"])
    async def related_by_id(request: Request, article_id: str, limit: int | None = limit_q,
                            lang_policy: LangPolicy = "same", max_age_days: float | None = Query(None, gt=0),
                            section: str | None = None, exclude: list[str] | None = exclude_q,
                            fill: bool | None = fill_q) -> Response:
        filters = make_filters(settings, limit, lang_policy, max_age_days, section, exclude, fill)
        key = answers.key_by_id(article_id, filters)
        return await answers.serve(request, key, lambda b: answers.json(article_id, filters, key, b))

    @app.get("/v1/related", responses=block, dependencies=read, tags=["related"])
    async def related_by_url(request: Request, url: str = url_q, limit: int | None = limit_q,
                             lang_policy: LangPolicy = "same", max_age_days: float | None = Query(None, gt=0),
                             section: str | None = None, exclude: list[str] | None = exclude_q,
                             fill: bool | None = fill_q) -> Response:
        filters = make_filters(settings, limit, lang_policy, max_age_days, section, exclude, fill)
        key = ("json", "url", url, params_key(filters))
        return await answers.serve(request, key, lambda b: answers.json(answers.article(url=url).id, filters, key, b))

    @app.get("/v1/related/{article_id}/fragment", **fragment, dependencies=read, tags=["related"])
    async def related_fragment(request: Request, article_id: str, limit: int | None = limit_q,
                               lang_policy: LangPolicy = "same", max_age_days: float | None = Query(None, gt=0),
                               section: str | None = None, exclude: list[str] | None = exclude_q,
                               lang: str | None = lang_q, thumbnails: bool = False,
                               fill: bool | None = fill_q) -> Response:
        """The block as server-rendered HTML, for pages without JavaScript."""
        filters = make_filters(settings, limit, lang_policy, max_age_days, section, exclude, fill)
        key = ("html", "id", article_id, params_key(filters), lang, thumbnails)
        return await answers.serve(request, key, lambda b: answers.fragment(
            answers.article(article_id), filters, key, b, lang, thumbnails))

    @app.get("/v1/fragment", **fragment, dependencies=read, tags=["related"])
    async def related_fragment_by_url(request: Request, url: str = url_q, limit: int | None = limit_q,
                                      lang_policy: LangPolicy = "same", max_age_days: float | None = Query(None, gt=0),
                                      section: str | None = None, exclude: list[str] | None = exclude_q,
                                      lang: str | None = lang_q, thumbnails: bool = False,
                                      fill: bool | None = fill_q) -> Response:
        """The block as server-rendered HTML, for the article with this canonical URL."""
        filters = make_filters(settings, limit, lang_policy, max_age_days, section, exclude, fill)
        key = ("html", "url", url, params_key(filters), lang, thumbnails)
        return await answers.serve(request, key, lambda b: answers.fragment(
            answers.article(url=url), filters, key, b, lang, thumbnails))

    @app.post("/v1/related", response_class=Response, dependencies=read, tags=["related"],
              responses=responses(400, 413, 414, 422, 429, ok={"model": RelatedResponse, "description": "the block"}))
    def related_to_draft(draft: DraftRequest) -> Response:
        filters = make_filters(settings, draft.limit, draft.lang_policy, draft.max_age_days, draft.section,
                               draft.exclude, draft.fill)
        sample = f"{draft.title} {draft.text}".strip()  # blank: the engine refuses the draft
        lang = draft.lang or (detect_lang(sample) if sample else "en")
        related = engine.related_to_draft(draft.title, draft.text, lang, filters, url=draft.url)
        return Response(related_body(engine, None, related, filters), media_type=JSON)


def _article_routes(app: FastAPI, settings: Settings, answers: Answers, guard: Guard) -> None:
    engine, cache, keyed = answers.engine, answers.cache, [Depends(guard.keyed)]

    @app.get("/v1/articles/{article_id}", response_model=Article, responses=responses(404, 414, 422, 429),
             dependencies=[Depends(guard.read)], tags=["articles"])
    def get_article(article_id: str) -> Article:
        return answers.article(article_id)

    @app.post("/v1/articles", dependencies=keyed, tags=["articles"], openapi_extra=article_body(settings),
              responses=responses(*KEYED_ERRORS, 413, 422, 503, ok={"model": Upserted, "description": "stored"},
                                  bodies={422: UpsertRefused}))
    async def upsert_articles(request: Request) -> JSONResponse:
        """Batch upsert; needs the X-API-Key header."""
        rows = _batch(await json_body(request), settings.max_batch)
        return await run_in_threadpool(_upsert, engine, cache, app.state.materializer, rows)

    @app.delete("/v1/articles/{article_id}", response_model=Deleted, dependencies=keyed, tags=["articles"],
                responses=responses(*KEYED_ERRORS, 404, 422, 503))
    def delete_article(article_id: str) -> dict[str, str]:
        """Delete an article; needs the X-API-Key header. Cached answers that show it are dropped."""
        engine.delete(article_id)
        cache.invalidate([article_id])
        return {"deleted": article_id}


def _event_routes(app: FastAPI, settings: Settings, guard: Guard, monitoring: Monitoring) -> None:
    events_store: EventStore = app.state.events

    @app.post("/v1/events", response_model=EventsStored, openapi_extra=event_body(settings), tags=["events"],
              dependencies=[Depends(guard.page_origin), Depends(guard.read)],
              responses=responses(403, 413, 414, 422, 429, 503))
    async def post_events(request: Request) -> dict[str, int]:
        """Impressions and clicks from the widget (any content type: sendBeacon posts text/plain)."""
        events = parse_events(await json_body(request), settings.max_events, settings.max_limit)
        known = app.state.engine.store.fingerprints  # ids of unknown articles are counted apart, not stored
        recorded = await run_in_threadpool(events_store.record, events, lambda ids: set(known(ids)))
        for kind, n in {**recorded.by_type, "unknown": recorded.unknown}.items():
            monitoring.events.labels(kind).inc(n)
        return {"stored": recorded.stored, "unknown": recorded.unknown}

    @app.get("/v1/events/ctr", response_model=CtrReport, dependencies=[Depends(guard.keyed)], tags=["events"],
             responses=responses(*KEYED_ERRORS, 422))
    def click_through(since: IsoTime | None = None, until: IsoTime | None = None) -> dict[str, Any]:
        """Impressions, clicks and click-through rate by position; needs the X-API-Key header."""
        bounds = [epoch_bound(t) for t in (since, until)]
        stats = ctr_by_position(events_store.counts(*bounds))
        return {
            "positions": [{"position": s.position, "impressions": s.impressions, "clicks": s.clicks, "ctr": s.ctr}
                          for s in stats],
            "impressions": sum(s.impressions for s in stats), "clicks": sum(s.clicks for s in stats),
            "unknown": events_store.unknown(*bounds),
        }


def _page_routes(app: FastAPI, settings: Settings, engine: Engine, guard: Guard, monitoring: Monitoring) -> None:
    script = widget.widget_js()
    script_etag = '"' + hashlib.sha256(script).hexdigest()[:32] + '"'

    @app.get("/widget.js", response_class=Response, tags=["ops"], responses=responses(304, 414, ok={
        "description": "the widget script", "content": {"text/javascript": TEXT}, "headers": CACHED}))
    def widget_script(request: Request) -> Response:
        headers = {"ETag": script_etag, "Cache-Control": f"public, max-age={settings.widget_max_age}"}
        if etag_matches(request.headers.get("if-none-match"), script_etag):
            return Response(status_code=304, headers=headers)
        return Response(script, media_type="text/javascript; charset=utf-8", headers=headers)

    @app.get("/metrics", response_class=Response, tags=["ops"], responses=responses(414, ok={
        "description": "Prometheus metrics (text format)", "content": {"text/plain": TEXT}}))
    def metrics() -> Response:
        return Response(monitoring.render(), media_type=monitoring.content_type)

    @app.get("/healthz", response_model=Health, responses=responses(414), tags=["ops"])
    def healthz() -> dict[str, object]:
        materializer = app.state.materializer
        return {**engine.health(),  # status "degraded", with a reason, after a start that set a build aside
                "materialized": {"blocks": materializer.done, "pending": materializer.pending}}

    if not settings.demo:  # a page that lists the corpus is for trying recsys out, not for production
        return

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/demo")

    @app.get("/demo", response_class=HTMLResponse, include_in_schema=False, dependencies=[Depends(guard.read)])
    @app.get("/demo/{article_id}", response_class=HTMLResponse, include_in_schema=False,
             dependencies=[Depends(guard.read)])
    def demo_page(article_id: str | None = None, lang_policy: LangPolicy = "same") -> HTMLResponse:
        return HTMLResponse(demo.page(engine, article_id, lang_policy))



def app_from_env() -> FastAPI:
    """Zero-argument factory for `uvicorn --factory recsys.api:app_from_env` (one app per worker process)."""
    settings = load_settings()
    return serving_app(settings)
