"""docs/bench.md from the benchmark JSON: the method, then the measured tables."""

from __future__ import annotations

from collections.abc import Iterable

METHOD = """\
## Method

- **Servers.** recsys runs as `uvicorn --factory recsys.api:app_from_env` and the floor as
  `uvicorn --factory recsys.bench_bare:app_from_env`, each a process of its own on 127.0.0.1 with
  one worker, `--loop auto --http auto` (uvloop and httptools when installed) and no access log.
  The bare app has the same route, `GET /v1/related/{id}?limit=5`, and an `async` handler that
  answers a real 5-item recsys answer, in two kinds run side by side: `bare_json` returns it as
  a dict that FastAPI serialises (a plain FastAPI endpoint returning a comparable 5-item JSON:
  the comparator of the targets), `bare_bytes` returns ready bytes (only uvicorn, routing and
  parameter parsing are left: the floor). Rate limiting is off in recsys (wrk is one client on
  purpose).
- **Modes.** *cold*: `RECSYS_CACHE_MAX_ENTRIES=0`, every request is ranked. *shipped*: default
  settings, measured once the server has materialised the default block of every article (its
  `/healthz` reports nothing pending; the time it took is `materialize_s`). A cached default
  block is answered by recsys's hot path below FastAPI's routing and validation, which the bare
  endpoints pass through: that is why shipped recsys can outrun them. In cold mode the hot path
  computes each block itself, on the event loop.
- **Load.** wrk (an external C program, not Python) runs as a separate process. Its Lua script
  picks a random stored id per request from a list file and counts response statuses per thread
  (printed by its `done` hook). Runs at each connection level use `-t min(2, connections)`,
  `--latency` for p50/p99 and `--timeout 10s`, after a short warm-up of each server.
- **Interleaving.** Runs alternate between the sides in rounds (round 0: bare then recsys, round
  1: recsys then bare, ...), so drift of a shared machine hits both alike. Each table cell is the
  median over rounds; the ratio is recsys/bare of those medians (per-round ratios are in the JSON).
- **Is wrk the bottleneck?** Each run records wrk's own CPU seconds (`getrusage(RUSAGE_CHILDREN)`
  deltas) and the server's (from `/proc/PID/stat`) next to its wall time, and the load average
  before and after. The bare rate is the most this machine shows through this client; a server at
  about 1.0 CPU-second per second is saturated, and wrk well below that is not the limit.
- **Reading it.** Absolute numbers depend on the machine and what else runs on it (see the load
  average). Read the ratios measured in one run.
"""


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _load(runs: Iterable[dict]) -> str:
    values = [r["loadavg_before"][0] for r in runs] + [r["loadavg_after"][0] for r in runs]
    return f"{min(values):.2f}–{max(values):.2f}" if values else "–"


def _cpu(runs: list[dict], key: str) -> str:
    shares = [r[key] for r in runs if r.get(key) is not None]
    return _fmt(sum(shares) / len(shares), 2) if shares else "–"


def levels_table(levels: list[dict], top: str, bottom: str) -> list[str]:
    """One row per connection level: both sides' medians, the ratio, CPU shares, load average."""
    lines = [f"| connections | {bottom} req/s | {top} req/s | {top}/{bottom} | {bottom} p50 / p99 ms | "
             f"{top} p50 / p99 ms | non-2xx {top} / {bottom} | wrk CPU/wall ({bottom} runs) | "
             f"server CPU/wall {bottom} / {top} | load 1 min |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for lv in levels:
        a, b = lv[top], lv[bottom]
        runs = a["runs"] + b["runs"]
        lines.append(
            f"| {lv['connections']} | {_fmt(b['requests_per_s'], 0)} | {_fmt(a['requests_per_s'], 0)} | "
            f"{lv['ratio']['requests_per_s']:.3f} | {_fmt(b['p50_ms'], 2)} / {_fmt(b['p99_ms'], 2)} | "
            f"{_fmt(a['p50_ms'], 2)} / {_fmt(a['p99_ms'], 2)} | {a['non_2xx_3xx']} / {b['non_2xx_3xx']} | "
            f"{_cpu(b['runs'], 'wrk_cpu_per_wall')} | {_cpu(b['runs'], 'server_cpu_per_wall')} / "
            f"{_cpu(a['runs'], 'server_cpu_per_wall')} | {_load(runs)} |")
    return lines


def _corpus(corpus: dict) -> list[str]:
    sets = ", ".join(f"{k} {v:,}" for k, v in corpus.get("by_set", {}).items())
    return ["## Corpus", "",
            f"{corpus['articles']:,} articles ({sets}), model `{corpus.get('model')}`. Ingest through the engine: "
            f"{_fmt(corpus.get('ingest_articles_per_s'), 0)} articles/s ({_fmt(corpus.get('ingest_s'))} s), "
            f"index build {_fmt(corpus.get('build_s'))} s" + (" (the ingest reused from an earlier run, the build made "
                                                              "and timed in this one)." if corpus.get("reused")
                                                              else "."), ""]


def _txtai(txtai: dict) -> list[str]:
    if "skipped" in txtai:
        return ["## txtai", "", f"Skipped: {txtai['skipped']}", ""]
    return ["## recsys versus txtai", "",
            f"txtai {txtai['txtai']} `{txtai['request']}` against recsys in cold mode, same corpus and model, "
            "same wrk script, interleaved rounds. txtai embeds each query; recsys reads the stored vector. "
            f"txtai indexed the texts in {_fmt(txtai.get('index_build_s'))} s (– when reused).", "",
            *levels_table(txtai["levels"], "recsys", "txtai"), ""]


def command(options: dict, http: dict) -> str:
    """The command line that reproduces a run, from the options recorded in the JSON."""
    parts = ["recsys bench"]
    if options.get("dataset"):
        parts += ["--dataset", options["dataset"], "--articles", str(options["articles"])]
    if http:
        parts += ["--connections", ",".join(map(str, http["connections"])), "-d", str(http["duration_s"]),
                  "--rounds", str(http["rounds"]), "--modes", ",".join(http["modes"])]
        parts += ["--txtai-venv", http["txtai_venv"]] if http.get("txtai_venv") else []
        parts += ["--soak", str(http["soak_s"])] if http.get("soak_s") else []
    parts += ["--sizes", ",".join(map(str, options.get("sizes", [])))] if options.get("micro") else ["--skip-micro"]
    return " ".join(parts + ([] if options.get("api", True) else ["--skip-api"]))


def markdown(result: dict) -> str:
    """The bench page: environment, corpus, HTTP tables per mode, txtai, encoder and index headline."""
    http = result.get("http", {})
    env = result.get("environment", {})
    lines = ["# recsys bench", "", f"Written by `recsys bench` on {env.get('time', '?')} from the JSON next to it:",
             "", f"    {command(result.get('options', {}), http.get('config', {}))}", "", METHOD]
    if http:
        stack = ", ".join(f"{k} {v or 'absent'}" for k, v in http["servers"].items())
        cfg = http["config"]
        lines += ["## Machine", "", f"{http['cpus']} CPUs; {http['wrk']}; {stack}. Runs of {cfg['duration_s']} s, "
                  f"{cfg['rounds']} rounds, wrk threads ≤ {cfg['threads']}.", ""]
    if "corpus" in result:
        lines += _corpus(result["corpus"])
    for mode, data in http.get("modes", {}).items():
        lines += [f"## recsys versus bare FastAPI (JSON), {mode}", "",
                  *levels_table(data["levels"], "recsys", "bare_json"), ""]
        if "vs_bytes_floor" in data:
            lines += [f"Against the bytes floor, {mode}:", "",
                      *levels_table(data["vs_bytes_floor"], "recsys", "bare_bytes"), ""]
        if data.get("recsys_rss", {}).get("first_mib"):
            rss = data["recsys_rss"]
            lines += [f"recsys resident memory, {mode}: {rss['first_mib']:.0f} MiB after the first run, "
                      f"{rss['last_mib']:.0f} MiB after the last (max {rss['max_mib']:.0f} MiB) over "
                      f"{rss['under_load_s']:.0f} s under load.", ""]
        if data.get("soak"):
            lines += [f"Sustained load, {mode} (16 connections, one row a minute):", "",
                      "| minute | req/s | p99 ms | non-2xx | RSS MiB | load 1 min |", "|---:|---:|---:|---:|---:|---:|"]
            lines += [f"| {i + 1} | {_fmt(r['requests_per_s'], 0)} | {_fmt(r['p99_ms'], 2)} | {r['non_2xx_3xx']} | "
                      f"{_fmt(r['server_rss_mib'], 0)} | {r['loadavg_after'][0]:.2f} |" for i, r in enumerate(data["soak"])]
            lines.append("")
        if data.get("materialize_s"):
            lines += [f"Materialising every default block took {data['materialize_s']:.0f} s after start-up.", ""]
    if "txtai" in result:
        lines += _txtai(result["txtai"])
    if "encoder" in result:
        enc = result["encoder"]
        lines += ["## Encoder and index", "", f"Encoder: {_fmt(enc['sentences_per_s'], 0)} sentences/s "
                  f"({enc['model']}). Index runs: see `index_real`, `index_synthetic` and `blas` in the JSON.", ""]
    return "\n".join(lines).rstrip() + "\n"
