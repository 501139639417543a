"""HTTP stage: the FastAPI app factory. The model and index are loaded once, in create_app."""

from __future__ import annotations

import json
import logging
from typing import Any, Literal

from fastapi import FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys import demo
from recsys.engine import Engine, Related, open_engine
from recsys.errors import InvalidInput, NotFound, PayloadTooLarge, RecsysError
from recsys.ingest import parse_article
from recsys.recommend import Filters
from recsys.settings import Settings

log = logging.getLogger(__name__)


class Item(BaseModel):
    id: str
    url: str | None
    title: str
    source: str | None
    published_at: str | None
    lang: str
    score: float
    section: str | None = None
    image_url: str | None = None


class RelatedResponse(BaseModel):
    article_id: str | None = Field(description="the article the block is for (null for a draft)")
    items: list[Item]
    count: int
    limit: int
    lang_policy: str
    relaxed: list[str] = Field(description="filters relaxed, in order, to fill the limit")
    model: str
    index_build: str


class DraftRequest(BaseModel):
    title: str = Field(default="", max_length=2000)
    text: str = Field(default="", max_length=100_000)
    lang: str | None = Field(default=None, pattern=r"^[a-z]{2}$")
    limit: int | None = Field(default=None, ge=1)
    lang_policy: Literal["same", "any"] = "same"
    max_age_days: float | None = Field(default=None, gt=0)
    section: str | None = None
    exclude: list[str] = Field(default_factory=list)


class BodyLimit:
    """Refuse request bodies over `max_bytes` with 413, counting streamed chunks too."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await _too_large(self.max_bytes)(scope, receive, send)
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise PayloadTooLarge(f"request body over {self.max_bytes} bytes")
            return message

        await self.app(scope, counting, send)


def _too_large(limit: int) -> JSONResponse:
    return JSONResponse({"detail": f"request body over {limit} bytes"}, status_code=413)


def _filters(settings: Settings, limit: int | None, lang_policy: str, max_age_days: float | None,
             section: str | None, exclude: list[str]) -> Filters:
    ids = frozenset(part.strip() for value in exclude for part in value.split(",") if part.strip())
    capped = min(settings.default_limit if limit is None else limit, settings.max_limit)
    return Filters(capped, lang_policy, max_age_days, section or None, ids)


def _response(engine: Engine, article_id: str | None, related: Related, filters: Filters) -> RelatedResponse:
    items = [
        Item(
            id=a.id, url=a.url, title=a.title, source=a.source, lang=a.lang, score=round(score, 6),
            published_at=a.published_at.isoformat() if a.published_at else None,
            section=a.section, image_url=a.image_url,
        )
        for a, score in related.items
    ]
    return RelatedResponse(
        article_id=article_id, items=items, count=len(items), limit=filters.limit,
        lang_policy=filters.lang_policy, relaxed=related.relaxed, model=engine.embedder.name,
        index_build=engine.live.manifest.build_id,
    )


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}") from exc


def _batch(body: Any, max_batch: int) -> list[Any]:
    rows = body.get("articles") if isinstance(body, dict) and "articles" in body else body
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list) or not rows:
        raise InvalidInput("send an article object, a list of them, or {\"articles\": [...]}")
    if len(rows) > max_batch:
        raise PayloadTooLarge(f"{len(rows)} articles in one request; at most {max_batch}")
    return rows


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The API over one recsys instance; loads model and index now unless an engine is given."""
    engine = engine or open_engine(settings)
    app = FastAPI(title="recsys", version="0.1.0", description="Related headlines for news sites")
    app.state.engine = engine
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)

    @app.exception_handler(RecsysError)
    async def _recsys_error(_: Request, exc: RecsysError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=exc.http_status)

    @app.get("/v1/related/{article_id}", response_model=RelatedResponse, tags=["related"])
    def related_by_id(
        article_id: str,
        limit: int | None = Query(None, ge=1, description=f"items wanted (capped at {settings.max_limit})"),
        lang_policy: Literal["same", "any"] = "same",
        max_age_days: float | None = Query(None, gt=0),
        section: str | None = None,
        exclude: list[str] = Query(default_factory=list, description="ids to leave out (repeat or comma-separate)"),
    ) -> RelatedResponse:
        filters = _filters(settings, limit, lang_policy, max_age_days, section, exclude)
        return _response(engine, article_id, engine.related_to_article(article_id, filters), filters)

    @app.get("/v1/related", response_model=RelatedResponse, tags=["related"])
    def related_by_url(
        url: str = Query(..., min_length=1, description="canonical URL of a stored article"),
        limit: int | None = Query(None, ge=1),
        lang_policy: Literal["same", "any"] = "same",
        max_age_days: float | None = Query(None, gt=0),
        section: str | None = None,
        exclude: list[str] = Query(default_factory=list),
    ) -> RelatedResponse:
        filters = _filters(settings, limit, lang_policy, max_age_days, section, exclude)
        article = engine.store.get_by_url(url)
        if article is None:
            raise NotFound(f"no article with url {url!r}")
        return _response(engine, article.id, engine.related_to_article(article.id, filters), filters)

    @app.post("/v1/related", response_model=RelatedResponse, tags=["related"])
    def related_to_draft(draft: DraftRequest) -> RelatedResponse:
        filters = _filters(settings, draft.limit, draft.lang_policy, draft.max_age_days, draft.section, draft.exclude)
        lang = draft.lang or parse_article({"id": "draft", "title": draft.title or draft.text}).lang
        return _response(engine, None, engine.related_to_draft(draft.title, draft.text, lang, filters), filters)

    @app.post("/v1/articles", tags=["articles"])
    async def upsert_articles(request: Request) -> JSONResponse:
        rows = _batch(await _json_body(request), settings.max_batch)
        good, errors = [], []
        for position, raw in enumerate(rows):
            try:
                good.append(parse_article(raw))
            except InvalidInput as exc:
                ident = raw.get("id") if isinstance(raw, dict) else None
                errors.append({"index": position, "id": ident, "reason": exc.message})
        result = engine.upsert(good) if good else None
        body = {"stored": len(good), "errors": errors, **(result.__dict__ if result else {})}
        if not good:
            body["detail"] = f"no valid article among {len(rows)}: {errors[0]['reason']}"
        return JSONResponse(body, status_code=200 if good else 422)

    @app.get("/v1/articles/{article_id}", tags=["articles"])
    def get_article(article_id: str) -> dict[str, Any]:
        article = engine.store.get(article_id)
        if article is None:
            raise NotFound(f"no article with id {article_id!r}")
        return article.model_dump(mode="json")

    @app.delete("/v1/articles/{article_id}", tags=["articles"])
    def delete_article(article_id: str) -> dict[str, str]:
        engine.delete(article_id)
        return {"deleted": article_id}

    @app.get("/healthz", tags=["ops"])
    def healthz() -> dict[str, object]:
        return {"status": "ok", **engine.health()}

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/demo")

    @app.get("/demo", response_class=HTMLResponse, include_in_schema=False)
    @app.get("/demo/{article_id}", response_class=HTMLResponse, include_in_schema=False)
    def demo_page(article_id: str | None = None, lang_policy: Literal["same", "any"] = "same") -> HTMLResponse:
        return HTMLResponse(demo.page(engine, article_id, lang_policy))

    return app

