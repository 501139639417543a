"""What embedding each headline alone adds to ingest: encode time of the texts against that of the
headlines (recsys.embed.encode_headlines) for one mix of shared-data articles, interleaved in rounds.

    python scripts/bench_headline_cost.py --data ../shared/data --articles 1000 --out docs/bench_headlines.json
    python scripts/bench_headline_cost.py --own-only --out docs/bench_headlines_own.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from recsys.datasets import load_dataset
from recsys.embed import encode_headlines, load_embedder, own_headline
from recsys.ingest import sample_corpus
from recsys.settings import Settings

SETS = ("tgcontest_toloka_pairs", "semeval2022_task8_subset", "ruwa_events_en", "paraphraser_ru")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--articles", type=int, default=1000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--model", action="append")
    p.add_argument("--own-only", action="store_true", help="only articles with a headline of their own (a body "
                   "that does not begin with it), as on a site that publishes bodies")
    p.add_argument("--out", default="docs/bench_headlines.json")
    args = p.parse_args()
    pool = list(load_dataset(sample_corpus()).articles)
    for name in SETS:
        if (Path(args.data) / name).is_dir():
            pool += load_dataset(Path(args.data) / name).articles
    if args.own_only:
        pool = [a for a in pool if own_headline(a.title, a.text) is not None]
    articles = random.Random(0).sample(pool, min(args.articles, len(pool)))
    out = {"own_only": args.own_only, "articles": len(articles), "with_own_headline": sum(own_headline(a.title, a.text) is not None for a in articles),
           "cpus": os.cpu_count(), "models": {}}
    for model in args.model or ["builtin:multilingual-e5-small", "builtin:static-multilingual"]:
        embedder = load_embedder(Settings(model=model))
        texts = [embedder.text_of(a) for a in articles]
        embedder.encode(texts[:32])  # warm-up
        rounds = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            embedder.encode(texts)
            t1 = time.perf_counter()
            encode_headlines(embedder, articles)
            t2 = time.perf_counter()
            rounds.append({"texts_s": t1 - t0, "headlines_s": t2 - t1, "loadavg": os.getloadavg()})
        ratios = sorted(r["headlines_s"] / r["texts_s"] for r in rounds)
        out["models"][model] = {"rounds": rounds, "headline_over_text_median": ratios[len(ratios) // 2]}
        print(model, "headlines cost", f"{ratios[len(ratios) // 2]:.2f}", "x the text encode")
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
