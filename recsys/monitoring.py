"""Prometheus metrics: requests and latency by route template, plus index, store and cache state.

Each app gets its own registry (several apps may live in one process, as in the tests). Routes
are labelled by their template (`/v1/related/{article_id}`), never the raw path, so the number
of series stays bounded; paths that match no route share the label `<unmatched>`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from recsys.cache import ResponseCache
    from recsys.engine import Engine
    from recsys.protection import Guard

UNMATCHED = "<unmatched>"
MAX_CHILDREN = 1024  # labelled metric children kept for reuse
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _StateCollector(Collector):
    """Gauges read at scrape time from the engine, the cache and the rate limiter."""

    def __init__(self, engine: Engine, cache: ResponseCache, guard: Guard) -> None:
        self.engine, self.cache, self.guard = engine, cache, guard

    def collect(self) -> Iterator[Metric]:
        manifest = self.engine.live.manifest
        yield GaugeMetricFamily("recsys_articles", "articles in the store", value=self.engine.store.count())
        yield GaugeMetricFamily("recsys_index_vectors", "vectors in the live index", value=self.engine.live.ntotal)
        yield GaugeMetricFamily("recsys_index_degraded", "1 after a start that set a broken build aside "
                                "(served an older build or rebuilt from the store), until the next build",
                                value=float(bool(self.engine.index_warnings)))
        info = GaugeMetricFamily("recsys_index_info", "the live index build (always 1)",
                                 labels=["build_id", "model", "index_type"])
        info.add_metric([manifest.build_id, manifest.model, manifest.index_type], 1)
        yield info
        try:
            created = datetime.fromisoformat(manifest.created_at).timestamp()
        except (TypeError, ValueError):
            created = 0.0
        yield GaugeMetricFamily("recsys_index_build_timestamp_seconds", "when the live build was made",
                                value=created)
        yield GaugeMetricFamily("recsys_cache_entries", "answers in the in-process cache", value=len(self.cache))
        yield _counter("recsys_cache_hits", "related answers served from the cache", self.cache.hits)
        yield _counter("recsys_cache_misses", "related answers computed", self.cache.misses)
        yield _counter("recsys_rate_limited", "requests refused with 429", self.guard.limited)


def _counter(name: str, doc: str, value: float) -> Metric:
    return CounterMetricFamily(name, doc, value=value)


class Monitoring:
    """The registry of one app and the metrics that handlers update."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self, engine: Engine, cache: ResponseCache, guard: Guard) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("recsys_http_requests", "HTTP requests by route and status",
                                ["method", "route", "status"], registry=self.registry)
        self.latency = Histogram("recsys_http_request_duration_seconds", "HTTP request latency by route",
                                 ["method", "route"], buckets=BUCKETS, registry=self.registry)
        self.events = Counter("recsys_events", "widget events stored, by type", ["type"], registry=self.registry)
        self.registry.register(_StateCollector(engine, cache, guard))
        # labels() validates and locks on every call: the few (method, route, status) children are kept
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        children = self._children.get(key)
        if children is None:
            children = (self.requests.labels(method, route, str(status)), self.latency.labels(method, route))
            if len(self._children) < MAX_CHILDREN:  # methods and statuses are few; never unbounded
                self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)


def route_template(app: ASGIApp, scope: Scope) -> str:
    """The template of the route that handled (or would handle) the request."""
    route = scope.get("route")
    if route is None:  # answered before routing (413, 414): find the route it was meant for
        for candidate in getattr(getattr(app, "router", None), "routes", []):
            match, _ = candidate.matches(scope)
            if match == Match.FULL:
                route = candidate
                break
    return getattr(route, "path", None) or UNMATCHED


class MetricsMiddleware:
    """Count and time every HTTP request, including those refused by inner middleware."""

    def __init__(self, app: ASGIApp, monitoring: Monitoring, root: Callable[[], ASGIApp]) -> None:
        self.app, self.monitoring, self.root = app, monitoring, root

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        started = time.perf_counter()

        async def recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, recording)
        finally:
            route = route_template(self.root(), scope)
            self.monitoring.observe(scope["method"], route, status, time.perf_counter() - started)
