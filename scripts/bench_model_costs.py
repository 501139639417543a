"""What each model costs to run: ingest rate (title plus lead), draft query latency, memory and disk.

Each model runs in a child process of its own (so its memory is its own) through the real code path:
`open_engine` over an empty temporary store, `Engine.upsert` of the same articles with a body (text and
headline vectors, store writes, index sync), then `Engine.related_to_draft` for drafts that are not stored.
Models are interleaved in rounds, so a noisy machine slows every model alike; the load average is kept.

    python scripts/bench_model_costs.py --data ../shared/data --articles 1000 --rounds 3 --out docs/model_costs.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODELS = (
    ("builtin:multilingual-e5-small", "onnx-int8"),
    ("builtin:multilingual-e5-small", "onnx"),
    ("builtin:multilingual-e5-small", "torch"),
    ("builtin:static-multilingual", ""),  # RECSYS_MODEL_BACKEND is about e5 only
    ("builtin:all-MiniLM-L6-v2", ""),
    ("builtin:use-multilingual-v3", ""),
)


def _key(model: str, backend: str) -> str:
    return f"{model}@{backend}" if backend else model


SETS = ("tgcontest_toloka_pairs", "semeval2022_task8_subset", "ruwa_events_en")


def _rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _articles(data: Path, n: int, drafts: int) -> tuple[list[dict], list[dict]]:
    """Articles with a body (title plus lead is what is embedded), from the sample corpus and the shared sets."""
    from recsys.datasets import load_dataset
    from recsys.ingest import sample_corpus

    pool = list(load_dataset(sample_corpus()).articles)
    pool += [a for name in SETS if (data / name).is_dir() for a in load_dataset(data / name).articles]
    pool = [a for a in pool if a.text.strip()]
    chosen = random.Random(0).sample(pool, min(n + drafts, len(pool)))
    rows = [a.model_dump(mode="json") for a in chosen]
    for i, row in enumerate(rows):
        row["id"] = f"a{i}"  # sets reuse ids across files
    return rows[:n], rows[n:]


def child(spec: dict) -> dict:
    """One model, one round: load, ingest, drafts; what it took."""
    from recsys.article import Article
    from recsys.embed import load_embedder
    from recsys.engine import open_engine
    from recsys.recommend import Filters
    from recsys.settings import Settings

    base = _rss_mb()
    with tempfile.TemporaryDirectory() as tmp:
        backend = {"model_backend": spec["backend"]} if spec["backend"] else {}
        settings = Settings(model=spec["model"], db_path=Path(tmp) / "db.sqlite", index_dir=Path(tmp) / "index",
                            materialize=False, **backend)
        t0 = time.perf_counter()
        embedder = load_embedder(settings)
        embedder.encode(["warm up"])
        load_s, loaded = time.perf_counter() - t0, _rss_mb()
        engine = open_engine(settings, embedder)
        articles = [Article(**a) for a in spec["articles"]]
        t0 = time.perf_counter()
        engine.upsert(articles)
        ingest_s = time.perf_counter() - t0
        filters, waits = Filters(limit=5), []
        for d in spec["drafts"]:
            t0 = time.perf_counter()
            engine.related_to_draft(d["title"], d["text"], d["lang"], filters)
            waits.append(time.perf_counter() - t0)
        waits.sort()
        return {"load_s": load_s, "ingest_s": ingest_s, "articles_per_s": len(articles) / ingest_s,
                "draft_ms_p50": 1000 * waits[len(waits) // 2], "draft_ms_p95": 1000 * waits[int(len(waits) * 0.95)],
                "rss_base_mb": base, "rss_model_mb": loaded - base, "rss_after_mb": _rss_mb(),
                "rss_peak_mb": _rss_mb("VmHWM"), "loadavg": os.getloadavg()}


def _disk(model: str, backend: str) -> dict:
    """Bytes of the model's folder, and of the files its backend reads."""
    from recsys.embed import builtin_model_path

    folder = builtin_model_path(model)
    files = [p for p in folder.rglob("*") if p.is_file()]
    total = sum(p.stat().st_size for p in files)
    if model.endswith("e5-small"):
        skip = {"onnx-int8": ("model.safetensors", "model.onnx"), "onnx": ("model.safetensors", "model_int8.onnx"),
                "torch": ("model.onnx", "model_int8.onnx")}[backend]
        read = sum(p.stat().st_size for p in files if p.name not in skip)
    else:
        read = total
    return {"folder": str(folder), "folder_mb": total / 2**20, "read_mb": read / 2**20}


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    p.add_argument("--articles", type=int, default=1000)
    p.add_argument("--drafts", type=int, default=100)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("docs/model_costs.json"))
    p.add_argument("--only", action="append", help="run only the model@backend keys containing this")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(sys.stdin.read()))))
        return
    articles, drafts = _articles(args.data, args.articles, args.drafts)
    models = [(m, b) for m, b in MODELS if not args.only or any(o in _key(m, b) for o in args.only)]
    runs: dict[str, list[dict]] = {_key(m, b): [] for m, b in models}
    for r in range(args.rounds):
        for model, backend in models:
            spec = json.dumps({"model": model, "backend": backend, "articles": articles, "drafts": drafts})
            done = subprocess.run([sys.executable, __file__, "--child"], input=spec, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"{_key(model, backend)}: {done.stderr[-2000:]}")
            runs[_key(model, backend)].append(json.loads(done.stdout.strip().splitlines()[-1]))
            last = runs[_key(model, backend)][-1]
            print(f"round {r} {_key(model, backend)}: {last['articles_per_s']:.0f} articles/s, "
                  f"draft p50 {last['draft_ms_p50']:.1f} ms", flush=True)
    summary = {key: {"articles_per_s": _median([x["articles_per_s"] for x in xs]),
                     "draft_ms_p50": _median([x["draft_ms_p50"] for x in xs]),
                     "draft_ms_p95": _median([x["draft_ms_p95"] for x in xs]),
                     "rss_model_mb": _median([x["rss_model_mb"] for x in xs]),
                     "rss_peak_mb": _median([x["rss_peak_mb"] for x in xs]),
                     "load_s": _median([x["load_s"] for x in xs]), **_disk(*(key.split("@") + [""])[:2])}
               for key, xs in runs.items()}
    out = {"articles": len(articles), "drafts": len(drafts), "rounds": args.rounds, "cpus": os.cpu_count(),
           "summary": summary, "runs": runs}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(out))


def markdown(out: dict) -> str:
    """The summary as a table (medians over rounds)."""
    loads = [x["loadavg"][0] for xs in out["runs"].values() for x in xs]
    lines = [f"# What each model costs ({out['articles']} articles with a body, {out['drafts']} drafts, "
             f"{out['rounds']} interleaved rounds, {out['cpus']} cores, 1-min load average "
             f"{min(loads):.2f}-{max(loads):.2f})", "",
             "Made by `python scripts/bench_model_costs.py`; medians over rounds. Ingest: `Engine.upsert` into an empty "
             "store (text and headline vectors, store, index). Draft: `Engine.related_to_draft` end to end. Memory: "
             "resident set of the model after loading it (process RSS growth) and the process's peak.", "",
             "| model (@ backend) | ingest articles/s | draft p50 / p95 ms | model RSS MB | peak RSS MB | load s | "
             "disk read MB (folder) |", "|---|---|---|---|---|---|---|"]
    for key, s in out["summary"].items():
        lines.append(f"| `{key}` | {s['articles_per_s']:.0f} | {s['draft_ms_p50']:.1f} / {s['draft_ms_p95']:.1f} | "
                     f"{s['rss_model_mb']:.0f} | {s['rss_peak_mb']:.0f} | {s['load_s']:.1f} | "
                     f"{s['read_mb']:.0f} ({s['folder_mb']:.0f}) |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
