"""HTTP stage: the article page's block answered below the framework.

Every article view asks `GET /v1/related/{id}` (at most with `limit`), and nearly every such answer
is already cached (materialised). FastAPI's routing and parameter validation would cost more than
the lookup itself, so this ASGI layer sits just inside the size limits: for that request shape it
applies the same rate limit, looks the answer up under the very key the route would use, and sends
the cached bytes (or 304). A miss is computed right here, on the event loop, through the same
single-flight cache and the same `Answers.json` as the route: a stored article's block takes about
a millisecond, less than the hop to a worker thread and back (measured: twice the throughput at 16
connections with the cache off). Only while the engine has writes of other processes to take in
(which may take longer) does a miss go to the route and its worker thread, like every other request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from recsys.answers import Answers, make_filters
from recsys.errors import RecsysError
from recsys.protection import Guard
from recsys.recommend import Filters
from recsys.request_guard import error_response

PREFIX = "/v1/related/"


class HotPath:
    """Serve `GET /v1/related/{id}[?limit=N]` below the routing (cached, else computed); pass the rest on."""

    def __init__(self, app: ASGIApp, answers: Answers, guard: Guard, route: Callable[[], object]) -> None:
        self.app, self.answers, self.guard, self._find_route = app, answers, guard, route
        self._route: object | None = None
        self._filters: dict[bytes, Filters] = {}  # by query string: an empty one or a lone limit=N

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self._target(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if target is None:
            return await self.app(scope, receive, send)
        article_id, filters = target
        key = self.answers.key_by_id(article_id, filters)
        cache, engine = self.answers.cache, self.answers.engine
        entry = cache.get(key, engine.live.manifest.build_id, count=False)
        if entry is None and not engine.in_sync():
            return await self.app(scope, receive, send)
        if self._route is None:
            self._route = self._find_route()
        scope["route"] = self._route  # metrics label it like the routed request
        try:
            await self.guard.read(Request(scope))
            cache.count(hit=entry is not None)
            if entry is None:
                await asyncio.sleep(0)  # let the requests already waiting go first: FIFO, not last-in-first-served
                entry = cache.get_or_compute(key, engine.live.manifest.build_id,
                                             lambda build: self.answers.json(article_id, filters, key, build,
                                                                             synced=True))
        except RecsysError as exc:
            return await error_response(exc)(scope, receive, send)
        status, headers = self.answers.head(entry, _header(scope, b"if-none-match"))
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        if status == 200:
            raw += [(b"content-type", entry.media_type.encode()), (b"content-length", str(len(entry.body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": raw})
        await send({"type": "http.response.body", "body": entry.body if status == 200 else b""})

    def _target(self, scope: Scope) -> tuple[str, Filters] | None:
        """(article id, the route's filters) of a `GET /v1/related/{id}[?limit=N]`; None for anything else."""
        path: str = scope["path"]
        article_id = path[len(PREFIX):]
        if not path.startswith(PREFIX) or not article_id or "/" in article_id:
            return None
        filters = self._filters_of(scope.get("query_string") or b"")
        return None if filters is None else (article_id, filters)

    def _filters_of(self, query: bytes) -> Filters | None:
        """The route's filters for an empty query or a lone `limit=N`; None otherwise."""
        known = self._filters.get(query)
        if known is not None or len(self._filters) > 256:
            return known
        limit: int | None = None
        if query:
            name, _, value = query.partition(b"=")
            if name != b"limit" or not value.isdigit() or len(value) > 4 or int(value) < 1:
                return None
            limit = int(value)
        self._filters[query] = make_filters(self.answers.settings, limit, "same", None, None, None)
        return self._filters[query]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return None
