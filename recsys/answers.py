"""Related answers as cacheable HTTP responses: JSON or an HTML fragment, with ETag, Cache-Control and 304."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import orjson
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from recsys import widget
from recsys.article import Article
from recsys.cache import Entry, ResponseCache, etag_matches, make_etag
from recsys.engine import Engine, Related
from recsys.errors import InvalidInput, NotFound
from recsys.recommend import Filters
from recsys.settings import Settings

JSON = "application/json"
HTML = "text/html; charset=utf-8"


class Item(BaseModel):
    id: str
    url: str | None
    title: str
    source: str | None
    published_at: str | None
    lang: str
    score: float = Field(description="the ranking key: fused relevance plus closeness in time (related items); "
                         "relevance to the article (fill items)")
    reason: str = Field(description="related: above the model's relevance floor; fill: newest in the section or site")
    section: str | None = None
    image_url: str | None = None
    original_source: str | None = None


class RelatedResponse(BaseModel):
    article_id: str | None = Field(description="the article the block is for (null for a draft)")
    items: list[Item]
    count: int
    limit: int
    lang_policy: str
    relaxed: list[str] = Field(description="filters relaxed, in order, to fill the limit")
    model: str
    index_build: str


def make_filters(settings: Settings, limit: int | None, lang_policy: str, max_age_days: float | None,
                 section: str | None, exclude: list[str] | None, fill: bool | None = None) -> Filters:
    """Filters from request parameters: the limit capped, `exclude` split on commas and bounded."""
    ids = frozenset(part.strip() for value in exclude or () for part in value.split(",") if part.strip())
    if len(ids) > settings.max_exclude:
        raise InvalidInput(f"{len(ids)} ids in exclude; at most {settings.max_exclude}")
    capped = min(settings.default_limit if limit is None else limit, settings.max_limit)
    return Filters(capped, lang_policy, max_age_days, section or None, ids,
                   fill=settings.fill if fill is None else fill)


def params_key(filters: Filters) -> tuple[Hashable, ...]:
    """The filters in a canonical form: equal requests share one cache entry."""
    return (filters.limit, filters.lang_policy, filters.max_age_days, filters.section, tuple(sorted(filters.exclude)),
            filters.fill)


def related_body(engine: Engine, article_id: str | None, related: Related, filters: Filters,
                 build_id: str | None = None) -> bytes:
    """The JSON of a related block, in RelatedResponse's shape and field order (the model documents
    the API; building this dict directly costs a tenth of validating one model per item)."""
    items = [
        {"id": a.id, "url": a.url, "title": a.title, "source": a.source,
         "published_at": a.published_at.isoformat() if a.published_at else None, "lang": a.lang,
         "score": round(score, 6), "reason": reason, "section": a.section, "image_url": a.image_url,
         "original_source": a.original_source}
        for (a, score), reason in zip(related.items, related.reasons)
    ]
    answer = {"article_id": article_id, "items": items, "count": len(items), "limit": filters.limit,
              "lang_policy": filters.lang_policy, "relaxed": related.relaxed, "model": engine.embedder.name,
              "index_build": build_id or engine.live.manifest.build_id}
    return orjson.dumps(answer)  # compact UTF-8 like json.dumps(ensure_ascii=False), 10x faster


class Answers:
    """Serves related blocks through the response cache."""

    def __init__(self, engine: Engine, cache: ResponseCache, settings: Settings) -> None:
        self.engine, self.cache, self.settings = engine, cache, settings
        self.cache_control = (f"public, max-age={settings.cache_max_age}, "
                              f"stale-while-revalidate={settings.cache_stale_while_revalidate}")

    async def serve(self, request: Request, key: Hashable, compute: Callable[[str], Entry]) -> Response:
        """The cached answer for `key` (computed once on a miss, off the event loop), or 304 when the
        client's copy is current. A hit never leaves the event loop."""
        build_id = self.engine.live.manifest.build_id
        entry = self.cache.get(key, build_id)
        if entry is None:
            entry = await run_in_threadpool(self.cache.get_or_compute, key, build_id, compute)
        status, headers = self.head(entry, request.headers.get("if-none-match"))
        if status == 304:
            return Response(status_code=304, headers=headers)
        return Response(entry.body, media_type=entry.media_type, headers=headers)

    def head(self, entry: Entry, if_none_match: str | None) -> tuple[int, dict[str, str]]:
        """Status and headers of a cached answer: 304 when the client's copy (If-None-Match) is current."""
        headers = {"ETag": entry.etag, "Cache-Control": self.cache_control}
        if entry.media_type == HTML:
            headers |= {"Content-Security-Policy": widget.FRAGMENT_CSP, "X-Content-Type-Options": "nosniff"}
        return (304 if etag_matches(if_none_match, entry.etag) else 200), headers

    @staticmethod
    def key_by_id(article_id: str, filters: Filters) -> tuple[Hashable, ...]:
        """Cache key of the JSON block of a stored article by id."""
        return ("json", "id", article_id, params_key(filters))

    def default_key(self, article_id: str) -> tuple[tuple[Hashable, ...], Filters]:
        """Cache key of `GET /v1/related/{id}` with no parameters: the block every article page asks for."""
        filters = make_filters(self.settings, None, "same", None, None, [])
        return self.key_by_id(article_id, filters), filters

    def materialize(self, article_id: str) -> None:
        """Compute and cache the default block of one article (no-op if it is cached or gone)."""
        key, filters = self.default_key(article_id)
        build_id = self.engine.live.manifest.build_id
        try:
            self.cache.get_or_compute(key, build_id, lambda b: self.json(article_id, filters, key, b))
        except NotFound:
            pass

    def article(self, article_id: str | None = None, url: str | None = None) -> Article:
        """The query article by id or canonical URL; NotFound names what was asked for."""
        article = self.engine.store.get(article_id) if article_id is not None else self.engine.store.get_by_url(url or "")
        if article is None:
            raise NotFound(f"no article with id {article_id!r}" if article_id is not None else f"no article with url {url!r}")
        return article

    def json(self, article_id: str, filters: Filters, key: Hashable, build_id: str, synced: bool = False) -> Entry:
        """The JSON block of a stored article (the engine says NotFound when there is none)."""
        related = self.engine.related_to_article(article_id, filters, synced=synced)
        body = related_body(self.engine, article_id, related, filters, build_id)
        return self._entry(body, JSON, build_id, article_id, related)

    def fragment(self, article: Article, filters: Filters, key: Hashable, build_id: str,
                 lang: str | None, thumbnails: bool) -> Entry:
        related = self.engine.related_to_article(article.id, filters)
        body = widget.fragment(article.id, related.items, lang or article.lang, thumbnails)
        return self._entry(body.encode(), HTML, build_id, article.id, related)

    @staticmethod
    def _entry(body: bytes, media_type: str, build_id: str, article_id: str, related: Related) -> Entry:
        etag = make_etag(body, media_type)
        ids = frozenset([article_id, *(a.id for a, _ in related.items)])
        return Entry(body, media_type, etag, build_id, ids)
