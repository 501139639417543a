"""HTTP stage: the hottest request answered straight from the cache, below the framework.

Every article view asks `GET /v1/related/{id}` (at most with `limit`), and nearly every such answer
is already cached (materialised). FastAPI's routing and parameter validation would cost more than
the lookup itself, so this ASGI layer sits just inside the size limits: for that request shape it
applies the same rate limit, looks the answer up under the very key the route would use, and sends
the cached bytes (or 304). Anything else, a miss included, goes on to the app unchanged.
"""

from __future__ import annotations

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
        entry = self._cached(scope) if scope["type"] == "http" and scope["method"] == "GET" else None
        if entry is None:
            return await self.app(scope, receive, send)
        if self._route is None:
            self._route = self._find_route()
        scope["route"] = self._route  # metrics label it like the routed request
        try:
            await self.guard.read(Request(scope))
        except RecsysError as exc:
            return await error_response(exc)(scope, receive, send)
        await self._send(scope, send, entry)

    def _cached(self, scope: Scope) -> Entry | None:
        path: str = scope["path"]
        if not path.startswith(PREFIX) or "/" in path[len(PREFIX):] or len(path) == len(PREFIX):
            return None
        params = self._params_key(scope.get("query_string") or b"")
        if params is None:
            return None
        key = ("json", "id", path[len(PREFIX):], params)
        entry = self.answers.cache.get(key, self.answers.engine.live.manifest.build_id, count=False)
        if entry is not None:
            self.answers.cache.count_hit()
        return entry

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
