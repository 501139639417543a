"""Many threads against a real server: every answer 2xx and identical to the single-threaded one."""

from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from recsys.api import create_app
from recsys.settings import Settings
from conftest import story_articles


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def server(engine, settings: Settings):  # noqa: ANN001, ANN201
    import uvicorn

    # a cache far smaller than the set of keys: entries are evicted while other threads read them
    small = settings.model_copy(update={"cache_max_entries": 4, "rate_limit_per_s": 0.0})
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(small, engine), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_concurrent_requests_all_succeed_and_match_the_single_threaded_answers(server: str) -> None:
    ids = [a.id for a in story_articles()]
    paths = [f"/v1/related/{i}?limit={limit}&lang_policy={policy}"
             for i in ids for limit in (2, 5) for policy in ("same", "any", "prefer")]
    with httpx.Client(base_url=server) as client:
        expected = {p: client.get(p).json() for p in paths}
    local = threading.local()

    def call(path: str) -> tuple[str, int, dict]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server, timeout=30)
        response = local.client.get(path)
        return path, response.status_code, response.json()

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(call, paths * 6))
    assert {status for _, status, _ in answers} == {200}
    assert all(body == expected[path] for path, _, body in answers)
