"""Protection of the HTTP layer: request size limits, API keys, per-client rate limits, origins."""

from __future__ import annotations

import hmac
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

from fastapi import Security
from fastapi.security import APIKeyHeader
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from recsys.errors import Forbidden, PayloadTooLarge, TooManyRequests, Unauthorized

API_KEY_HEADER = "X-API-Key"
# Declared as a security scheme so /docs shows which routes need the key (and an Authorize button).
API_KEY_SCHEME = APIKeyHeader(name=API_KEY_HEADER, auto_error=False, description="one of RECSYS_API_KEYS")


def split_csv(value: str | SecretStr | None) -> list[str]:
    """The non-empty, stripped parts of a comma-separated setting."""
    text = value.get_secret_value() if isinstance(value, SecretStr) else (value or "")
    return [part.strip() for part in text.split(",") if part.strip()]


class BodyLimit:
    """Refuse request lines over `max_url_bytes` (414) and bodies over their limit (413).

    Bodies are counted as they stream in, so a request without Content-Length cannot slip by.
    `per_path` gives some paths a smaller limit (events from browsers are tiny).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_url_bytes: int = 8192,
                 per_path: Mapping[str, int] | None = None) -> None:
        self.app, self.max_bytes, self.max_url_bytes = app, max_bytes, max_url_bytes
        self.per_path = dict(per_path or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") > self.max_url_bytes:
            detail = f"request line over {self.max_url_bytes} bytes"
            return await JSONResponse({"detail": detail}, status_code=414)(scope, receive, send)
        limit = self.per_path.get(scope["path"], self.max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            detail = f"request body over {limit} bytes"
            return await JSONResponse({"detail": detail}, status_code=413)(scope, receive, send)
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit:
                raise PayloadTooLarge(f"request body over {limit} bytes")
            return message

        await self.app(scope, counting, send)


class TokenBucket:
    """Per-client token buckets: `rate` tokens a second up to `burst`; the idlest clients are forgotten.

    Forgetting a client only refills its bucket, so the memory bound never refuses anyone wrongly.
    """

    def __init__(self, rate: float, burst: int, max_clients: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.burst, self.max_clients, self.clock = rate, burst, max_clients, clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Spend one token; 0 when allowed, else the seconds until a token is back."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.pop(client, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate
            self._buckets[client] = (tokens - 1.0 if wait == 0.0 else tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


def client_of(request: Request, trusted_hops: int) -> str:
    """The client address: the socket peer, or the entry our own proxies appended to X-Forwarded-For.

    Entries further left were written by the client itself and could be forged, so with N trusted
    proxies the N-th entry from the right is the one to believe.
    """
    peer = request.client.host if request.client else "unknown"
    if trusted_hops <= 0:
        return peer
    hops = [part.strip() for part in request.headers.get("x-forwarded-for", "").split(",") if part.strip()]
    if not hops:
        return peer
    return hops[-trusted_hops] if len(hops) >= trusted_hops else hops[0]


class ApiKeys:
    """The configured write keys, checked in constant time."""

    def __init__(self, keys: list[str]) -> None:
        self._keys = [key.encode() for key in keys]

    def valid(self, presented: str | None) -> bool:
        if not presented or not self._keys:
            return False
        given = presented.encode()
        # Compare against every key without stopping early: timing must not tell which one nearly matched.
        return any([hmac.compare_digest(given, key) for key in self._keys])

    def require(self, presented: str | None) -> None:
        """Raise unless `presented` is a configured key; the message says what to do."""
        if not self._keys:
            raise Forbidden("writes are disabled: no API key is configured on this server; "
                            f"set RECSYS_API_KEYS=key1,key2 and send one in the {API_KEY_HEADER} header")
        if not presented:
            raise Unauthorized(f"this endpoint needs an API key in the {API_KEY_HEADER} header")
        if not self.valid(presented):
            raise Unauthorized(f"the {API_KEY_HEADER} header does not match any configured key")


class Guard:
    """What the routes depend on: rate limits for anonymous callers, keys for writes."""

    def __init__(self, keys: ApiKeys, bucket: TokenBucket, trusted_hops: int, origins: list[str]) -> None:
        self.keys, self.bucket, self.trusted_hops = keys, bucket, trusted_hops
        self.origins = set(origins)
        self.limited = 0  # requests refused with 429, for /metrics

    def _spend(self, request: Request) -> None:
        wait = self.bucket.take(client_of(request, self.trusted_hops))
        if wait > 0:
            self.limited += 1
            raise TooManyRequests("too many requests from this client; retry later", max(1, math.ceil(wait)))

    async def read(self, request: Request) -> None:
        """Rate-limit anonymous reads; callers with a valid key (the site's own backend) are not limited."""
        if not self.keys.valid(request.headers.get(API_KEY_HEADER)):
            self._spend(request)

    async def keyed(self, request: Request, presented: str | None = Security(API_KEY_SCHEME)) -> None:
        """Require a key; failed attempts spend the client's tokens, which slows down key guessing."""
        if not self.keys.valid(presented):
            self._spend(request)
            self.keys.require(presented)

    async def page_origin(self, request: Request) -> None:
        """Refuse browser posts from pages on origins that are neither configured nor our own."""
        origin = request.headers.get("origin")
        if origin is None or "*" in self.origins or origin in self.origins:
            return
        if origin.split("://", 1)[-1] == request.headers.get("host"):
            return
        raise Forbidden(f"origin {origin!r} is not allowed; add it to RECSYS_CORS_ORIGINS")
