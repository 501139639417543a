"""The load generator of `recsys bench`: wrk, a separate process, driven by a small Lua script.

The script picks a random request path from a list file and counts response statuses per wrk
thread; its `done` hook prints one JSON line with the counts and the exact totals, next to wrk's
own text report (which `parse_wrk` also reads).
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

from recsys.errors import RecsysError

log = logging.getLogger(__name__)

MARKER = "RECSYS_WRK "

LUA = r"""-- written by recsys bench: GET a random path from a list; count statuses per thread
paths = {}
for line in io.lines(PATHS_FILE) do
  if #line > 0 then paths[#paths + 1] = line end
end
counts = {}
threads = {}
seed = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("seed", #threads)
end

function init(args)
  math.randomseed(os.time() * 1000 + seed)
  for _ = 1, 10 do math.random() end
end

function request()
  return wrk.format(nil, paths[math.random(#paths)])
end

function response(status, headers, body)
  counts[status] = (counts[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("counts")) do
      total[status] = (total[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(total) do
    parts[#parts + 1] = string.format('"%d": %d', status, n)
  end
  local e = summary.errors
  io.write(string.format(
    'RECSYS_WRK {"status_counts": {%s}, "requests": %d, "duration_us": %.0f, "p50_us": %.0f, "p90_us": %.0f, ' ..
    '"p99_us": %.0f, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\n',
    table.concat(parts, ", "), summary.requests, summary.duration, latency:percentile(50),
    latency:percentile(90), latency:percentile(99), e.connect, e.read, e.write, e.status, e.timeout))
end
"""


class WrkMissing(RecsysError):
    """wrk is not installed: the HTTP benchmark cannot run."""

    exit_code = 2


def find_wrk(binary: str = "wrk") -> str:
    """The wrk executable, or WrkMissing with how to install it."""
    found = shutil.which(binary)
    if found is None:
        raise WrkMissing(f"{binary!r} not found: the HTTP benchmark needs the wrk load generator "
                         "(Debian/Ubuntu: `apt-get install wrk`; macOS: `brew install wrk`), "
                         "or run `recsys bench --skip-api`")
    return found


def wrk_version(binary: str) -> str:
    """wrk's own version line (`wrk -v` prints it and exits 1)."""
    done = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[0].strip() if lines else "unknown"


def write_script(folder: Path, name: str, paths: Iterable[str]) -> Path:
    """A Lua script for wrk that requests a random one of `paths`; returns the script's path."""
    listing = folder / f"{name}.paths"
    listing.write_text("".join(p + "\n" for p in paths), encoding="utf-8")
    script = folder / f"{name}.lua"
    script.write_text(f"PATHS_FILE = {json.dumps(str(listing.resolve()))}\n" + LUA, encoding="utf-8")
    return script


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_LATENCY = re.compile(r"^\s*(50|75|90|99)%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.M)


def _number(pattern: str, text: str, default: float | None = None) -> float | None:
    found = re.search(pattern, text, re.M)
    return float(found.group(1)) if found else default


def parse_wrk(stdout: str) -> dict:
    """requests/s, latency percentiles (ms), non-2xx/3xx and socket errors from wrk's report."""
    latency = {f"p{q}_ms": float(v) * _UNITS[u] for q, v, u in _LATENCY.findall(stdout)}
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", stdout)
    result: dict = {
        "requests": int(_number(r"^\s*(\d+) requests in", stdout, 0) or 0),
        "requests_per_s": _number(r"^Requests/sec:\s+([\d.]+)", stdout),
        "non_2xx_3xx": int(_number(r"Non-2xx or 3xx responses:\s+(\d+)", stdout, 0) or 0),
        "socket_errors": dict(zip(("connect", "read", "write", "timeout"), map(int, socket.groups())))
        if socket else {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        **latency,
    }
    line = next((ln for ln in stdout.splitlines() if ln.startswith(MARKER)), None)
    if line is not None:
        exact = json.loads(line[len(MARKER):])
        result["status_counts"] = dict(sorted(exact["status_counts"].items()))
        result["duration_s"] = exact["duration_us"] / 1e6
        result.update({f"p{q}_ms": exact[f"p{q}_us"] / 1000 for q in (50, 90, 99)})
        result["requests_per_s"] = exact["requests"] / result["duration_s"] if exact["duration_us"] else 0.0
    return result


def cpu_seconds(pid: int | None) -> float | None:
    """User plus system CPU seconds of a running process, from /proc (None where unavailable)."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of a running process in MiB, from /proc (None where unavailable)."""
    if pid is None:
        return None
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    line = next((x for x in status.splitlines() if x.startswith("VmRSS:")), None)
    return None if line is None else int(line.split()[1]) / 1024


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_wrk(binary: str, url: str, script: Path, connections: int, threads: int, duration_s: int,
            server_pid: int | None = None) -> dict:
    """One wrk run: its report, wall time, wrk's CPU time, the server's CPU time and the load average."""
    cmd = [binary, f"-t{max(1, min(threads, connections))}", f"-c{connections}", f"-d{duration_s}s",
           "--latency", "--timeout", "10s", "-s", str(script), url]
    load_before, server_before, wrk_before = os.getloadavg(), cpu_seconds(server_pid), _children_cpu()
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=duration_s + 120, check=False)
    wall = time.perf_counter() - start
    wrk_cpu, server_after = _children_cpu() - wrk_before, cpu_seconds(server_pid)
    if done.returncode != 0 or MARKER not in done.stdout:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip() or done.stdout.strip()}")
    server_cpu = None if server_before is None or server_after is None else server_after - server_before
    return {**parse_wrk(done.stdout), "connections": connections, "threads": max(1, min(threads, connections)),
            "wall_s": wall, "wrk_cpu_s": wrk_cpu, "wrk_cpu_per_wall": wrk_cpu / wall,
            "server_cpu_s": server_cpu, "server_cpu_per_wall": None if server_cpu is None else server_cpu / wall,
            "loadavg_before": list(load_before), "loadavg_after": list(os.getloadavg()),
            "server_rss_mib": rss_mib(server_pid)}
