"""Servers under test in `recsys bench`: each a uvicorn process of its own on 127.0.0.1.

A server is started with `subprocess.Popen`, waited for until one URL answers 200, and ended by
its pid (SIGTERM, then SIGKILL if it does not stop). Its output goes to a log file whose tail is
shown when it fails to start.
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def uvicorn_argv(app: str, port: int, python: str = sys.executable, factory: bool = True,
                 workers: int = 1) -> list[str]:
    """uvicorn on 127.0.0.1, uvloop and httptools when installed ("auto"), no access log."""
    argv = [python, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
            "--loop", "auto", "--http", "auto", "--log-level", "warning", "--no-access-log"]
    return argv + (["--factory"] if factory else [])


def server_stack() -> dict[str, str | None]:
    """Versions of uvicorn and of the optional uvloop and httptools that "auto" picks up."""
    out: dict[str, str | None] = {}
    for name in ("uvicorn", "uvloop", "httptools", "fastapi"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def get(url: str, timeout: float = 10.0) -> tuple[int, bytes]:
    """Status and body of a GET (urllib: no client library needed)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 - loopback only
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


class Server:
    """One server process on 127.0.0.1; a context manager that starts it and ends it by pid."""

    def __init__(self, name: str, argv: Sequence[str], port: int, ready_path: str, log_dir: Path,
                 env: Mapping[str, str] | None = None, start_timeout_s: float = 300.0) -> None:
        self.name, self.argv, self.port, self.ready_path = name, list(argv), port, ready_path
        self.env = {**os.environ, **(env or {})}
        self.log_path = log_dir / f"{name}-{port}.log"
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def __enter__(self) -> Server:
        with open(self.log_path, "wb") as out:
            self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("%s server up on %s (pid %d)", self.name, self.url, self.proc.pid)
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} server exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if get(self.url + self.ready_path, timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} server not ready after {self.start_timeout_s:.0f}s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM to the pid, SIGKILL after 20 s; reaps the process."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
