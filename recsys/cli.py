"""Command line: `recsys ingest|build|serve|demo|related|delete|info`.

Exit codes: 0 ok, 2 bad input or settings (message on stderr), 1 anything unexpected.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path


from recsys.bench_cli import add_bench
from recsys.cli_models import add_model_commands
from recsys.errors import RecsysError
from recsys.ingest import sample_corpus
from recsys.settings import Settings, load_settings

log = logging.getLogger("recsys")


DEMO_DIR = Path("index/demo")  # the demo's own database and builds, so it never fills a real store


def _engine(settings: Settings, rebuild: bool = False, read_only: bool = False):  # noqa: ANN202 - lazy import
    from recsys.engine import open_engine

    return open_engine(settings, rebuild=rebuild, read_only=read_only)


def demo_settings(settings: Settings) -> Settings:
    """The demo page on, and the demo's own database and index folder unless RECSYS_DB_PATH/INDEX_DIR are set."""
    update: dict[str, object] = {"demo": True}
    if "db_path" not in settings.model_fields_set:
        update["db_path"] = DEMO_DIR / "demo.db"
    if "index_dir" not in settings.model_fields_set:
        update["index_dir"] = DEMO_DIR
    return settings.model_copy(update=update)


def cmd_ingest(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.ingest import read_articles

    articles, errors = read_articles(Path(args.file))
    for error in errors:
        print(f"{args.file}:{error.line}: {error.reason}", file=sys.stderr)
    engine = _engine(settings)
    result = engine.upsert(articles, progress=not args.quiet) if articles else None
    stored = result.__dict__ if result else {}
    print(json.dumps({"stored": len(articles), "bad_rows": len(errors), **stored}))
    return 2 if errors else 0


def cmd_build(args: argparse.Namespace, settings: Settings) -> int:
    live = _engine(settings, rebuild=True).live
    print(json.dumps(live.manifest.__dict__, indent=2))
    return 0


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    log.info("serving on http://%s:%d with %d worker(s) (demo page /demo, API docs /docs)",
             args.host, args.port, args.workers)
    if args.workers > 1:  # each worker process builds its own app from RECSYS_* settings
        if settings.cache_ttl == 0:
            # a write reaches the cache of the worker that took it only: the others must expire answers
            os.environ["RECSYS_CACHE_TTL"] = str(max(1, settings.cache_max_age))
            log.info("several workers: in-process answers expire after RECSYS_CACHE_TTL=%s s",
                     os.environ["RECSYS_CACHE_TTL"])
        uvicorn.run("recsys.api:app_from_env", factory=True, workers=args.workers, host=args.host, port=args.port,
                    loop="auto", http="auto", log_level="info", proxy_headers=False)
        return 0
    from recsys.api import serving_app

    # uvicorn would take the client from X-Forwarded-For whenever the peer is loopback, so any same-host
    # proxy let a forged header through: only RECSYS_TRUSTED_PROXY_HOPS decides (recsys.protection.client_of)
    uvicorn.run(serving_app(settings), host=args.host, port=args.port, loop="auto", http="auto", log_level="info",
                proxy_headers=False)
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.ingest import read_articles

    articles, errors = read_articles(sample_corpus())
    if errors:
        raise RecsysError(f"bundled sample corpus has bad rows: {errors[:3]}")
    settings = demo_settings(settings)
    from recsys.allocator import limit_malloc_arenas

    limit_malloc_arenas(settings.malloc_arenas)
    if DEMO_DIR in (settings.index_dir, settings.db_path.parent):
        DEMO_DIR.mkdir(parents=True, exist_ok=True)
    log.info("demo database %s, index folder %s", settings.db_path, settings.index_dir)
    engine = _engine(settings)
    result = engine.upsert(articles, progress=True)
    live = engine.build()
    log.info("sample corpus: %d articles (%s); index %s with %d vectors",
             len(articles), result, live.manifest.build_id, live.ntotal)
    if args.no_serve:
        return 0
    import uvicorn

    from recsys.api import create_app

    log.info("demo page: http://%s:%d/  (API docs: /docs)", args.host, args.port)
    uvicorn.run(create_app(settings, engine), host=args.host, port=args.port, log_level="info", proxy_headers=False)
    return 0


def _filters_from(args: argparse.Namespace, settings: Settings):  # noqa: ANN202
    from recsys.recommend import Filters

    exclude = frozenset(x for value in args.exclude for x in value.split(",") if x)
    limit = min(settings.default_limit if args.limit is None else args.limit, settings.max_limit)
    return Filters(limit, args.lang_policy, args.max_age_days, args.section, exclude)


def cmd_related(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings, read_only=True)
    related = engine.related_to_article(args.article_id, _filters_from(args, settings))
    items = [{"id": a.id, "title": a.title, "source": a.source, "lang": a.lang, "score": round(s, 4), "reason": why}
             for (a, s), why in zip(related.items, related.reasons)]
    print(json.dumps({"items": items, "relaxed": related.relaxed}, ensure_ascii=False, indent=2))
    return 0


def cmd_delete(args: argparse.Namespace, settings: Settings) -> int:
    _engine(settings).delete(args.article_id)
    print(json.dumps({"deleted": args.article_id}))
    return 0


def cmd_info(args: argparse.Namespace, settings: Settings) -> int:
    print(json.dumps(_engine(settings, read_only=True).health(), indent=2, default=str))
    return 0


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from dataclasses import asdict

    from recsys import report
    from recsys.evaluate import EvalConfig, evaluate_dataset, find_datasets

    config = EvalConfig(tuple(args.model) or (settings.model,), args.k, args.threshold, args.as_of,
                        args.lang_policy, args.split, args.max_queries or None, args.seed, args.story_threshold)
    out = Path(args.out)
    work = Path(args.work_dir) if args.work_dir else out / "work"
    folders = find_datasets(Path(args.dataset_dir)) + ([sample_corpus()] if args.sample else [])
    datasets = [evaluate_dataset(folder, config, settings, work) for folder in folders]
    written = report.write({"config": asdict(config), "datasets": datasets}, out)
    print("\n".join(str(p) for p in written))
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="offline evaluation on labelled data sets, with baselines")
    p.add_argument("dataset_dir", help="a data set folder (articles.jsonl.gz, pairs.jsonl.gz), a folder of them, "
                   "or one articles .jsonl(.gz) file labelled by `cluster`")
    p.add_argument("--sample", action="store_true", help="also evaluate the bundled sample corpus (cluster labels)")
    p.add_argument("--story-threshold", type=float, default=0.75,
                   help="pair score at or above which two articles are one story (story-level labels)")
    p.add_argument("--model", action="append", default=[], help="model to evaluate (repeatable; default RECSYS_MODEL)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", default="eval-out", help="folder for results.json, results.md and charts")
    p.add_argument("--threshold", type=float, default=0.5, help="pair score at or above which a partner is relevant")
    p.add_argument("--as-of", action="store_true", help="replay time: each query sees only older articles")
    p.add_argument("--lang-policy", choices=("same", "prefer", "any"), default="any")
    p.add_argument("--split", help="pairs split to use (default: dev when the set has one, else all)")
    p.add_argument("--max-queries", type=int, default=1000, help="sampled queries per set (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", help="where embeddings and indexes are cached (default OUT/work)")
    p.set_defaults(func=cmd_evaluate)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recsys", description="Related headlines for news sites.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("ingest", help="store and embed articles from a .jsonl/.csv file (optionally .gz)")
    p.add_argument("file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_ingest)
    p = sub.add_parser("build", help="write a fresh, compact index build and switch to it")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_build)
    for name, func, helptext in (("serve", cmd_serve, "start the API"),
                                 ("demo", cmd_demo, "load the sample corpus, build, serve the demo page")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        if name == "demo":
            p.add_argument("--no-serve", action="store_true", help="load and build only")
        else:
            p.add_argument("--workers", type=int, default=1, help="worker processes (uvicorn --factory for N > 1)")
        p.set_defaults(func=func)
    p = sub.add_parser("related", help="print the related block of a stored article")
    p.add_argument("article_id")
    p.add_argument("--limit", type=int)
    p.add_argument("--lang-policy", choices=("same", "prefer", "any"), default="same")
    p.add_argument("--max-age-days", type=float)
    p.add_argument("--section")
    p.add_argument("--exclude", action="append", default=[])
    p.set_defaults(func=cmd_related)
    p = sub.add_parser("delete", help="delete an article")
    p.add_argument("article_id")
    p.set_defaults(func=cmd_delete)
    p = sub.add_parser("info", help="model, index manifest and article count")
    p.set_defaults(func=cmd_info)
    _add_evaluate(sub)
    add_bench(sub)
    add_model_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `recsys` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        return args.func(args, settings)
    except RecsysError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
