"""HTTP part of `recsys bench`: the related endpoint next to a bare FastAPI endpoint, same run.

Both servers run in this process on loopback ports and are driven by the same concurrent
clients, so the ratio says what recsys adds on top of FastAPI and uvicorn themselves.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Sequence

from fastapi import FastAPI

from recsys.bench import _concurrent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Background:
    """A uvicorn server on a thread, stopped on exit."""

    def __init__(self, app: FastAPI) -> None:
        import uvicorn

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Background:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("benchmark server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def bare_app(sample: dict) -> FastAPI:
    """Returns a fixed body of the same shape as a real answer: the floor of what HTTP costs."""
    app = FastAPI()

    @app.get("/v1/related/{article_id}")
    def related(article_id: str) -> dict:
        return sample

    return app


def _drive(port: int, ids: Sequence[str], clients: int, per_client: int) -> dict:
    import httpx

    local = threading.local()
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def call(i: int) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        status = local.client.get(f"/v1/related/{ids[i % len(ids)]}", params={"limit": 5}).status_code
        with lock:
            statuses[status] = statuses.get(status, 0) + 1

    result = _concurrent(call, clients, per_client)
    return {**result, "status_counts": statuses}


def bench_api(app: FastAPI, ids: Sequence[str], clients: int = 8, per_client: int = 50) -> dict:
    """requests/s and p50/p99 of GET /v1/related/{id}, recsys versus a bare endpoint."""
    with Background(app) as real:
        import httpx

        sample = httpx.get(f"http://127.0.0.1:{real.port}/v1/related/{ids[0]}", params={"limit": 5}).json()
        _drive(real.port, ids, clients, 5)  # warm-up
        recsys_side = _drive(real.port, ids, clients, per_client)
    with Background(bare_app(sample)) as bare:
        _drive(bare.port, ids, clients, 5)
        bare_side = _drive(bare.port, ids, clients, per_client)
    return {
        "clients": clients, "requests_per_client": per_client,
        "recsys": recsys_side, "bare_fastapi": bare_side,
        "throughput_ratio": recsys_side["requests_per_s"] / bare_side["requests_per_s"],
        "p50_ratio": recsys_side["p50_ms"] / bare_side["p50_ms"],
        "p99_ratio": recsys_side["p99_ms"] / bare_side["p99_ms"],
    }
