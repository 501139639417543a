"""Soak: the shipped server over the 100k-article benchmark corpus, read by wrk for 10 minutes while one
article is written (upserted through the API) every second; the server's resident memory every 30 s.

Target (issue 11, bounded memory): RSS after 10 minutes <= 1.2 x RSS after the first minute. Start-up
(loading the model and index, materialising the default blocks) happens before the clock starts, as a
site would see it. The result goes into docs/bench.json under "soak" (the rest of the file is kept).

    python scripts/bench_soak.py --dataset ../shared/data --articles 100000 --seconds 600
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

from recsys.bench_corpus import prepare
from recsys.bench_http import related_paths, wait_materialized
from recsys.bench_servers import Server, free_port, get, uvicorn_argv
from recsys.bench_wrk import find_wrk, rss_mib, run_wrk, write_script
from recsys.settings import Settings

log = logging.getLogger("soak")
KEY = "soak-writer"


def _writer(url: str, texts: list[dict], stop: threading.Event, tally: dict) -> None:
    """One upsert a second: an existing article with a changed text (so it is re-embedded and re-indexed)."""
    rng = random.Random(0)
    while not stop.wait(1.0):
        row = rng.choice(texts)
        status, body = get(f"{url}/v1/articles/{urllib.parse.quote(row['id'], safe='')}")
        if status != 200:
            continue
        stored = json.loads(body)
        article = {**{k: stored[k] for k in ("id", "title", "lang", "url", "source") if stored.get(k)},
                   "text": f"{row['text']} [{tally['sent']}]"}
        request = urllib.request.Request(f"{url}/v1/articles", data=json.dumps(article).encode(), method="POST",
                                         headers={"Content-Type": "application/json", "X-API-Key": KEY})
        tally["sent"] += 1
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - loopback only
                tally["ok"] += answer.status == 200
        except OSError as exc:
            tally["failed"] += 1
            log.warning("write failed: %s", exc)


def soak(args: argparse.Namespace) -> dict:
    corpus = prepare(Path(args.dataset), args.articles, Path(args.work_dir).expanduser(), Settings())
    texts = corpus.texts()
    folder = Path(args.work_dir).expanduser() / "soak"
    folder.mkdir(parents=True, exist_ok=True)
    script = write_script(folder, "related", related_paths(corpus.ids, 5))
    env = {"RECSYS_DB_PATH": str(corpus.db_path), "RECSYS_INDEX_DIR": str(corpus.index_dir),
           "RECSYS_RATE_LIMIT_PER_S": "0", "RECSYS_API_KEYS": KEY}
    port = free_port()
    wrk, samples, tally = find_wrk(args.wrk), [], {"sent": 0, "ok": 0, "failed": 0}
    with Server("recsys-soak", uvicorn_argv("recsys.api:app_from_env", port), port, "/healthz", folder, env) as server:
        materialize_s = wait_materialized(server)
        start_rss, stop = rss_mib(server.pid), threading.Event()
        writer = threading.Thread(target=_writer, args=(server.url, texts, stop, tally), daemon=True)
        writer.start()
        start = time.monotonic()
        while time.monotonic() - start < args.seconds:
            run = run_wrk(wrk, server.url, script, 16, 2, args.sample, server.pid)
            samples.append({"t_s": round(time.monotonic() - start, 1), "rss_mib": run["server_rss_mib"],
                            "requests_per_s": run["requests_per_s"], "p99_ms": run["p99_ms"],
                            "non_2xx_3xx": run["non_2xx_3xx"], "writes_ok": tally["ok"],
                            "loadavg": list(os.getloadavg())})
            log.info("soak %s", samples[-1])
        stop.set()
        writer.join(timeout=60)
    after_minute = next(s["rss_mib"] for s in samples if s["t_s"] >= 60)
    end = samples[-1]["rss_mib"]
    return {"articles": len(corpus.ids), "seconds": args.seconds, "sample_s": args.sample,
            "materialize_s": materialize_s, "rss_at_start_mib": start_rss, "rss_after_first_minute_mib": after_minute,
            "rss_at_end_mib": end, "ratio_end_to_first_minute": end / after_minute, "target_ratio": 1.2,
            "met": end / after_minute <= 1.2, "writes": tally, "samples": samples,
            "command": "python scripts/bench_soak.py " + " ".join(f"--{k.replace('_', '-')} {v}"
                                                                 for k, v in vars(args).items() if k != "out")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="../shared/data")
    p.add_argument("--articles", type=int, default=100_000)
    p.add_argument("--seconds", type=int, default=600)
    p.add_argument("--sample", type=int, default=30, help="seconds per wrk slice; RSS is read after each")
    p.add_argument("--work-dir", default="~/.cache/recsys/bench")
    p.add_argument("--wrk", default="wrk")
    p.add_argument("--out", default="docs/bench.json")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = soak(args)
    out = Path(args.out)
    data = json.loads(out.read_text()) if out.exists() else {}
    data["soak"] = result
    out.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    log.info("RSS %.0f MiB after the first minute, %.0f MiB at the end: ratio %.2f (target <= 1.2)",
             result["rss_after_first_minute_mib"], result["rss_at_end_mib"], result["ratio_end_to_first_minute"])


if __name__ == "__main__":
    main()
