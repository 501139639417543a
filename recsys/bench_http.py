"""HTTP part of `recsys bench`: the related endpoint next to a bare FastAPI endpoint, driven by wrk.

Each side is a uvicorn process of its own (one worker, uvloop/httptools when installed) and wrk is
a third process, so the client does not share an interpreter with the servers. Runs alternate
between the sides in rounds (round r: bare then recsys, round r+1 the other way), so slow drift of
a shared machine hits both sides alike; the ratio recsys/bare per connection level is the result.
Two modes: "cold" (in-process answer cache off) and "shipped" (default settings). Rate limiting is
off in both: wrk is one client hammering on purpose.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
import tempfile
import time
import urllib.parse
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path

from recsys.bench_corpus import Corpus
from recsys.bench_servers import Server, free_port, get, server_stack, uvicorn_argv
from recsys.bench_wrk import find_wrk, run_wrk, write_script, wrk_version

log = logging.getLogger(__name__)

MODES = {"cold": {"RECSYS_CACHE_MAX_ENTRIES": "0"}, "shipped": {}}


@dataclass(frozen=True)
class HttpConfig:
    """How wrk is run: connection levels, seconds per run, rounds, wrk threads, modes."""

    connections: tuple[int, ...] = (1, 16, 64)
    duration_s: int = 10
    rounds: int = 2
    threads: int = 2
    warmup_s: int = 2
    modes: tuple[str, ...] = ("cold", "shipped")
    wrk: str = "wrk"
    txtai_venv: Path | None = None
    limit: int = 5
    soak_s: int = 0  # after the shipped runs: this long at 16 connections, memory sampled each minute


@dataclass
class Target:
    """A running server and the wrk script that drives it."""

    name: str
    server: Server
    script: Path
    runs: list[dict] = field(default_factory=list)


def related_paths(ids: Sequence[str], limit: int) -> list[str]:
    """`/v1/related/{id}?limit=N` for each id, the id percent-encoded."""
    return [f"/v1/related/{urllib.parse.quote(i, safe='')}?limit={limit}" for i in ids]


def recsys_server(corpus: Corpus, mode: str, log_dir: Path) -> Server:
    """recsys through its uvicorn factory, over the benchmark corpus, in one of MODES."""
    env = {"RECSYS_DB_PATH": str(corpus.db_path), "RECSYS_INDEX_DIR": str(corpus.index_dir),
           "RECSYS_RATE_LIMIT_PER_S": "0", **MODES[mode]}
    port = free_port()
    return Server(f"recsys-{mode}", uvicorn_argv("recsys.api:app_from_env", port), port, "/healthz", log_dir, env)


def bare_server(body: Path, log_dir: Path, kind: str) -> Server:
    port = free_port()
    return Server(f"bare_{kind}", uvicorn_argv("recsys.bench_bare:app_from_env", port), port, "/v1/related/x?limit=5",
                  log_dir, {"RECSYS_BENCH_BODY": str(body), "RECSYS_BENCH_BARE_KIND": kind})


def wait_materialized(server: Server, timeout_s: float = 1800.0) -> float:
    """Seconds until the server reports no default block left to materialise (as shipped, after start-up)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        status, body = get(server.url + "/healthz")
        if status == 200 and json.loads(body).get("materialized", {}).get("pending", 0) == 0:
            return time.monotonic() - start
        time.sleep(1.0)
    raise RuntimeError(f"{server.name}: blocks still materialising after {timeout_s:.0f}s")


def sample_body(server: Server, paths: Sequence[str], limit: int) -> bytes:
    """A real answer with `limit` items (the first such among the first paths) for the bare server."""
    fallback = b""
    for path in paths[:50]:
        status, body = get(server.url + path)
        if status != 200:
            continue
        fallback = fallback or body
        if len(json.loads(body).get("items", [])) == limit:
            return body
    if not fallback:
        raise RuntimeError(f"recsys answered no 200 for the first ids:\n{server.log_tail()}")
    return fallback


def interleave(targets: Sequence[Target], config: HttpConfig) -> None:
    """Warm each side up, then per round and connection level one run per side, order rotating."""
    wrk = find_wrk(config.wrk)
    for t in targets:
        if config.warmup_s > 0:
            run_wrk(wrk, t.server.url, t.script, max(config.connections), config.threads, config.warmup_s)
    for r in range(config.rounds):
        order = list(targets[r % len(targets):]) + list(targets[: r % len(targets)])
        for connections in config.connections:
            for t in order:
                run = run_wrk(wrk, t.server.url, t.script, connections, config.threads, config.duration_s, t.server.pid)
                t.runs.append({"round": r, **run})
                log.info("round %d, %d conn, %s: %.0f req/s, p99 %.1f ms, non-2xx %d", r, connections, t.name,
                         run["requests_per_s"], run["p99_ms"], run["non_2xx_3xx"])


def _soak(server: Server, script: Path, config: HttpConfig) -> list[dict]:
    """Sustained load in one-minute slices: requests/s, p99, non-2xx and resident memory after each."""
    wrk, out = find_wrk(config.wrk), []
    for _ in range(max(1, config.soak_s // 60)):
        run = run_wrk(wrk, server.url, script, 16, config.threads, min(60, config.soak_s), server.pid)
        out.append({k: run[k] for k in ("requests_per_s", "p99_ms", "non_2xx_3xx", "server_rss_mib", "loadavg_after")})
        log.info("soak: %.0f req/s, RSS %.0f MiB", run["requests_per_s"], run["server_rss_mib"] or -1)
    return out


def _side(runs: list[dict]) -> dict:
    med = {k: statistics.median(r[k] for r in runs) for k in ("requests_per_s", "p50_ms", "p99_ms")}
    return {**med, "non_2xx_3xx": sum(r["non_2xx_3xx"] for r in runs),
            "socket_errors": sum(sum(r["socket_errors"].values()) for r in runs), "runs": runs}


def summarize(targets: Sequence[Target], connections: Sequence[int], numerator: str, denominator: str) -> list[dict]:
    """Per connection level: each side's medians over rounds, and numerator/denominator ratios."""
    by_name = {t.name: t for t in targets}
    levels = []
    for c in connections:
        sides = {name: _side([r for r in t.runs if r["connections"] == c]) for name, t in by_name.items()}
        top, bottom = sides[numerator], sides[denominator]
        pairs = zip(top["runs"], bottom["runs"])
        levels.append({"connections": c, **sides, "ratio": {
            "requests_per_s": top["requests_per_s"] / bottom["requests_per_s"],
            "p50": top["p50_ms"] / bottom["p50_ms"], "p99": top["p99_ms"] / bottom["p99_ms"],
            "by_round": [a["requests_per_s"] / b["requests_per_s"] for a, b in pairs]}})
    return levels


def _mode(mode: str, corpus: Corpus, config: HttpConfig, folder: Path) -> dict:
    paths = related_paths(corpus.ids, config.limit)
    script = write_script(folder, "related", paths)
    with ExitStack() as stack:
        recsys = stack.enter_context(recsys_server(corpus, mode, folder))
        warmup = wait_materialized(recsys) if mode == "shipped" else 0.0
        body = folder / "bare-body.json"
        if not body.exists():
            body.write_bytes(sample_body(recsys, paths, config.limit))
        targets = [Target(f"bare_{kind}", stack.enter_context(bare_server(body, folder, kind)), script)
                   for kind in ("json", "bytes")]
        targets.append(Target("recsys", recsys, script))
        interleave(targets, config)
        soak = _soak(recsys, script, config) if mode == "shipped" and config.soak_s > 0 else None
    runs = targets[-1].runs
    memory = {"first_mib": runs[0]["server_rss_mib"], "last_mib": runs[-1]["server_rss_mib"],
              "max_mib": max((r["server_rss_mib"] or 0.0) for r in runs), "under_load_s": sum(r["wall_s"] for r in runs)}
    return {"env": MODES[mode], "materialize_s": warmup, "recsys_rss": memory, "soak": soak,
            "levels": summarize(targets, config.connections, "recsys", "bare_json"),
            "vs_bytes_floor": summarize(targets, config.connections, "recsys", "bare_bytes")}


def bench_http(corpus: Corpus, config: HttpConfig) -> dict:
    """The HTTP section of the benchmark JSON: both modes, every connection level."""
    wrk = find_wrk(config.wrk)
    folder = Path(tempfile.mkdtemp(prefix="recsys-wrk-"))
    result: dict = {"wrk": wrk_version(wrk), "cpus": os.cpu_count(), "servers": server_stack(),
                    "config": {**asdict(config), "txtai_venv": str(config.txtai_venv or "")},
                    "request": f"GET /v1/related/{{random stored id}}?limit={config.limit}", "modes": {}}
    try:
        for mode in config.modes:
            log.info("HTTP benchmark, mode %s", mode)
            result["modes"][mode] = _mode(mode, corpus, config, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return result
