"""`recsys bench`: its options and command (kept out of cli.py, which imports `add_bench`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recsys.errors import InvalidInput
from recsys.settings import Settings


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.bench_http import MODES, HttpConfig
    from recsys.bench_report import markdown
    from recsys.bench_run import BenchOptions, run_bench

    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    if not modes or set(modes) - MODES.keys():
        raise InvalidInput(f"--modes: one or more of {', '.join(MODES)}")
    if min(_ints(args.connections) or (0,)) < 1 or min(args.duration, args.rounds, args.threads) < 1:
        raise InvalidInput("--connections, --duration, --rounds and --threads must be positive")
    http = HttpConfig(connections=_ints(args.connections), duration_s=args.duration, rounds=args.rounds,
                      threads=args.threads, warmup_s=args.warmup, modes=modes, wrk=args.wrk,
                      txtai_venv=Path(args.txtai_venv) if args.txtai_venv else None, soak_s=args.soak)
    options = BenchOptions(dataset=Path(args.dataset) if args.dataset else None, articles=args.articles,
                           work_dir=Path(args.work_dir) if args.work_dir else BenchOptions.work_dir,
                           sizes=_ints(args.sizes), n_encode=args.encode, micro=not args.skip_micro,
                           api=not args.skip_api, http=http)
    result = run_bench(settings, options)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(markdown(result), encoding="utf-8")
    print(f"{out}\n{out.with_suffix('.md')}")
    return 0


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="encoder, index and HTTP speed (wrk), written as JSON and Markdown")
    p.add_argument("--dataset", help="folder of shared-format sets (DIR/*/articles.jsonl.gz) or one set: the corpus "
                   "served in the HTTP runs and embedded for the real-vector index runs (default: sample corpus)")
    p.add_argument("--articles", type=int, default=100_000,
                   help="articles ingested from --dataset, spread over its sets")
    p.add_argument("--work-dir", help="where ingested corpora are kept and reused (default ~/.cache/recsys/bench)")
    p.add_argument("--sizes", default="100000", help="synthetic corpus sizes, comma-separated (e.g. 100000,1000000)")
    p.add_argument("--encode", type=int, default=512, help="texts encoded for the throughput run")
    p.add_argument("--connections", default="1,16,64", help="wrk connection levels, comma-separated")
    p.add_argument("-d", "--duration", type=int, default=10, help="seconds per wrk run")
    p.add_argument("--rounds", type=int, default=2, help="interleaved rounds per connection level")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (at most this, at most the connections)")
    p.add_argument("--warmup", type=int, default=2, help="seconds of warm-up load per server")
    p.add_argument("--modes", default="cold,shipped", help="cold (answer cache off) and/or shipped (defaults)")
    p.add_argument("--wrk", default="wrk", help="the wrk executable")
    p.add_argument("--soak", type=int, default=0, help="seconds of sustained load on the shipped server, memory "
                   "sampled each minute (e.g. 600)")
    p.add_argument("--txtai-venv", help="a venv with txtai[api] (scripts/bench_txtai.sh): also compare txtai /search")
    p.add_argument("--skip-api", action="store_true", help="no HTTP runs (no wrk needed)")
    p.add_argument("--skip-micro", action="store_true", help="no encoder/index micro-benchmarks")
    p.add_argument("--out", default="docs/bench.json", help="JSON path; the Markdown page goes next to it (.md)")
    p.set_defaults(func=cmd_bench)
