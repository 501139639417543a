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
from collections.abc import Callable, Hashable

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from recsys.answers import HTML, Answers, make_filters, params_key
from recsys.cache import Entry, etag_matches
from recsys.errors import RecsysError
from recsys.protection import Guard
from recsys.widget import FRAGMENT_CSP

PREFIX = "/v1/related/"


def error_response(exc: RecsysError) -> JSONResponse:
    """The JSON error every route answers for a RecsysError (status and headers from the error)."""
    return JSONResponse({"detail": exc.message}, status_code=exc.http_status, headers=exc.headers())


class HotPath:
    """Serve cached `GET /v1/related/{id}[?limit=N]` answers without routing; pass the rest on."""

    def __init__(self, app: ASGIApp, answers: Answers, guard: Guard, route: Callable[[], object]) -> None:
        self.app, self.answers, self.guard, self._find_route = app, answers, guard, route
        self._route: object | None = None
        self._keys: dict[bytes, tuple[Hashable, ...]] = {}
        self._cache_control = answers.cache_control.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = self._target(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if target is None:
            return await self.app(scope, receive, send)
        key, article_id, limit = target
        cache, engine = self.answers.cache, self.answers.engine
        entry = cache.get(key, engine.live.manifest.build_id, count=False)
        if entry is None and not engine.in_sync():
            return await self.app(scope, receive, send)
        if self._route is None:
            self._route = self._find_route()
        scope["route"] = self._route  # metrics label it like the routed request
        try:
            await self.guard.read(Request(scope))
            if entry is None:
                await asyncio.sleep(0)  # let the requests already waiting go first: FIFO, not last-in-first-served
                cache.count_miss()
                filters = make_filters(self.answers.settings, limit, "same", None, None, None)
                entry = cache.get_or_compute(key, engine.live.manifest.build_id,
                                             lambda build: self.answers.json(article_id, filters, key, build))
            else:
                cache.count_hit()
        except RecsysError as exc:
            return await error_response(exc)(scope, receive, send)
        await self._send(scope, send, entry)

    def _target(self, scope: Scope) -> tuple[tuple[Hashable, ...], str, int | None] | None:
        """(cache key, article id, limit) of a `GET /v1/related/{id}[?limit=N]`; None for anything else."""
        path: str = scope["path"]
        article_id = path[len(PREFIX):]
        if not path.startswith(PREFIX) or not article_id or "/" in article_id:
            return None
        query = scope.get("query_string") or b""
        params = self._params_key(query)
        if params is None:
            return None
        return ("json", "id", article_id, params), article_id, (int(query.partition(b"=")[2]) if query else None)

    def _params_key(self, query: bytes) -> tuple[Hashable, ...] | None:
        """The route's normalised parameters for an empty query or a lone `limit=N`; None otherwise."""
        known = self._keys.get(query)
        if known is not None or len(self._keys) > 256:
            return known
        limit: int | None = None
        if query:
            name, _, value = query.partition(b"=")
            if name != b"limit" or not value.isdigit() or len(value) > 4 or int(value) < 1:
                return None
            limit = int(value)
        self._keys[query] = params_key(make_filters(self.answers.settings, limit, "same", None, None, None))
        return self._keys[query]

    async def _send(self, scope: Scope, send: Send, entry: Entry) -> None:
        headers = [(b"etag", entry.etag.encode()), (b"cache-control", self._cache_control)]
        if entry.media_type == HTML:  # never for this route today; kept in step with Answers.serve
            headers += [(b"content-security-policy", FRAGMENT_CSP.encode()), (b"x-content-type-options", b"nosniff")]
        if etag_matches(_header(scope, b"if-none-match"), entry.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        headers += [(b"content-type", entry.media_type.encode()), (b"content-length", str(len(entry.body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": entry.body})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return None
