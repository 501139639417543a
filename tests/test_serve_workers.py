"""`recsys serve --workers 2`: two uvicorn worker processes, each answering from its own app.

Which worker holds a connection is read from /proc (the server side of the TCP connection is a
socket inode in exactly one worker's fd table), so the test proves both workers answer 200.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from recsys.bench_servers import free_port, get

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc")


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (the uvicorn supervisor's workers and helpers)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def owner(server_port: int, client_port: int, pids: set[int]) -> int | None:
    """The pid holding the server end of 127.0.0.1:client_port -> 127.0.0.1:server_port."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    inodes = {line.split()[9] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
              if line.split()[1] == local and line.split()[2] == remote}
    for pid in pids:
        try:
            links = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            return pid
    return None


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "recsys serve exited early"
        try:
            if get(url, timeout=5)[0] == 200:
                return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} not ready after {timeout}s")


def stop(proc: subprocess.Popen, workers: set[int]) -> None:
    """SIGTERM to the supervisor by pid; SIGKILL to it and its workers if they linger."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    for pid in workers:
        try:
            if b"python" in Path(f"/proc/{pid}/cmdline").read_bytes():  # still ours, not a reused pid
                os.kill(pid, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


def test_serve_with_two_workers_answers_from_both(tmp_path: Path, tiny_model_path: Path) -> None:
    env = {**os.environ, "RECSYS_MODEL": str(tiny_model_path), "RECSYS_DB_PATH": str(tmp_path / "w.db"),
           "RECSYS_INDEX_DIR": str(tmp_path / "idx"), "RECSYS_RATE_LIMIT_PER_S": "0"}
    demo = subprocess.run([sys.executable, "-m", "recsys.cli", "demo", "--no-serve"], env=env, capture_output=True,
                          text=True, timeout=300)
    assert demo.returncode == 0, demo.stderr[-2000:]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "recsys.cli", "serve", "--workers", "2", "--port", str(port)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    workers: set[int] = set()
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
        seen: dict[int, list[int]] = {}
        deadline = time.monotonic() + 120  # the second worker may still be loading when the first answers
        while time.monotonic() < deadline:
            workers = descendants(proc.pid)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.connect()
            statuses = []
            for path in ("/healthz", "/v1/related/a1001?limit=5"):
                conn.request("GET", path)
                answer = conn.getresponse()
                answer.read()
                statuses.append(answer.status)
            pid = owner(port, conn.sock.getsockname()[1], workers)
            conn.close()
            if pid is not None:
                seen.setdefault(pid, []).extend(statuses)
            if len(seen) >= 2:
                break
            time.sleep(0.1)
        assert len(seen) == 2, f"answers came from {sorted(seen)} only"
        assert all(set(statuses) == {200} for statuses in seen.values()), seen
    finally:
        stop(proc, workers | descendants(proc.pid))


def test_forged_forwarded_for_does_not_escape_the_rate_limit(tmp_path: Path, tiny_model_path: Path) -> None:
    """With no trusted proxies (the default) the client is the socket peer, whatever X-Forwarded-For says."""
    env = {**os.environ, "RECSYS_MODEL": str(tiny_model_path), "RECSYS_DB_PATH": str(tmp_path / "p.db"),
           "RECSYS_INDEX_DIR": str(tmp_path / "idx"), "RECSYS_RATE_LIMIT_PER_S": "0.5",
           "RECSYS_RATE_LIMIT_BURST": "5", "RECSYS_MATERIALIZE": "false"}
    loaded = subprocess.run([sys.executable, "-m", "recsys.cli", "demo", "--no-serve"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr[-2000:]
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "recsys.cli", "serve", "--port", str(port)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_ready(f"http://127.0.0.1:{port}/healthz", proc)
        statuses = []
        for i in range(20):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            conn.request("GET", "/v1/related/a1001", headers={"X-Forwarded-For": f"203.0.113.{i}"})
            statuses.append(conn.getresponse().status)
            conn.close()
        assert statuses.count(200) <= 7 and statuses.count(429) >= 13, statuses
    finally:
        stop(proc, descendants(proc.pid))
