"""The floor `recsys bench` compares against: bare FastAPI with the same route, a fixed answer.

`uvicorn --factory recsys.bench_bare:app_from_env` serves `GET /v1/related/{article_id}` with the
answer in the file named by RECSYS_BENCH_BODY (a real 5-item answer saved from the recsys server),
or a built-in body of the same shape. Two kinds (RECSYS_BENCH_BARE_KIND):
- `json`: the handler returns the answer as a dict and FastAPI serialises it, as a plain FastAPI
  endpoint returning a 5-item JSON does (the comparator of the serving targets);
- `bytes`: the handler returns ready bytes: only uvicorn, routing and parameter parsing are left,
  the least any FastAPI endpoint costs (reported beside it as the floor).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import Response


def default_body() -> bytes:
    """A related answer of the usual shape: five items."""
    items = [{"id": f"a{i}", "title": f"Headline number {i} about the same story", "url": f"https://news.example/a{i}",
              "source": "Example News", "lang": "en", "published_at": "2026-10-01T09:00:00+00:00",
              "score": round(0.9 - i / 20, 4)} for i in range(5)]
    return json.dumps({"article_id": "a", "items": items, "count": 5, "limit": 5}).encode()


def create_bare_app(body: bytes, kind: str = "bytes") -> FastAPI:
    """FastAPI with `GET /v1/related/{article_id}?limit=` answering `body` (as bytes, or as a dict)."""
    app = FastAPI(title="bare", openapi_url=None, docs_url=None, redoc_url=None)
    answer = json.loads(body)

    if kind == "json":
        @app.get("/v1/related/{article_id}")
        async def related_json(article_id: str, limit: int | None = None) -> dict:
            return answer
    else:
        @app.get("/v1/related/{article_id}")
        async def related(article_id: str, limit: int | None = None) -> Response:
            return Response(body, media_type="application/json")

    return app


def app_from_env() -> FastAPI:
    """The zero-argument factory uvicorn calls (`--factory`)."""
    path = os.environ.get("RECSYS_BENCH_BODY")
    kind = os.environ.get("RECSYS_BENCH_BARE_KIND", "bytes")
    return create_bare_app(Path(path).read_bytes() if path else default_body(), kind)
