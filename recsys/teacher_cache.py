"""Teacher embeddings for distillation, cached on disk by sentence so that reruns encode only new text."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.parallel import _hash64

log = logging.getLogger(__name__)


def _teacher_encode(model: Any, texts: list[str], batch_size: int, bf16: bool) -> np.ndarray:
    """The one place where the teacher runs (tests count calls to it)."""
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        emb = model.encode(texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=len(texts) > 1000)
    return np.asarray(emb, dtype=np.float32)


class TeacherCache:
    """Teacher embeddings stored as .npy shards named by a hash of the teacher name and their sentences;
    any sentence encoded before by the same teacher is reused, the rest is encoded in chunks and saved."""

    def __init__(self, teacher: str, cache_dir: Path, batch_size: int = 32, bf16: bool = False, chunk: int = 10_000):
        self.teacher, self.cache_dir, self.batch_size, self.bf16, self.chunk = teacher, Path(cache_dir), batch_size, bf16, chunk
        self.key = f"{teacher}|bf16={bf16}"
        self.prefix = hashlib.sha1(self.key.encode()).hexdigest()[:12]
        self._model: Any = None

    def model(self) -> Any:
        if self._model is None:
            if self.teacher.startswith("builtin:"):  # recsys's own encoder: its fastest backend, its prompt
                from recsys.embed import load_embedder
                from recsys.settings import Settings

                self._model = _EmbedderTeacher(load_embedder(Settings(model=self.teacher)))
            else:
                from sentence_transformers import SentenceTransformer
                self._model = SentenceTransformer(self.teacher, device="cpu")
        return self._model

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """float32 embeddings of ``texts`` in order, encoding only sentences not cached yet."""
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        keys = [_hash64(t) for t in texts]
        shards = self._shards()
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in shards))
        for start in range(0, len(missing), self.chunk):
            part = missing[start:start + self.chunk]
            t0 = time.perf_counter()
            emb = _teacher_encode(self.model(), part, self.batch_size, self.bf16)
            log.info("teacher encoded %d texts at %.1f/s", len(part), len(part) / (time.perf_counter() - t0))
            name = f"{self.prefix}-{hashlib.sha1((self.key + chr(10) + chr(10).join(part)).encode()).hexdigest()[:16]}"
            _save_npy(self.cache_dir / f"{name}.npy", emb)  # values before keys: keys imply values
            _save_npy(self.cache_dir / f"{name}.keys.npy", np.array([_hash64(t) for t in part], dtype=np.uint64))
            shards = self._shards()
        arrays = {path: np.load(path, mmap_mode="r") for path in {shards[k][0] for k in keys}}
        dim = next(iter(arrays.values())).shape[1] if arrays else 0
        out = np.empty((len(texts), dim), dtype=np.float32)
        for i, k in enumerate(keys):
            path, row = shards[k]
            out[i] = arrays[path][row]
        return out

    def _shards(self) -> dict[int, tuple[Path, int]]:
        index: dict[int, tuple[Path, int]] = {}
        for kf in sorted(self.cache_dir.glob(f"{self.prefix}-*.keys.npy")):
            vf = kf.with_name(kf.name.removesuffix(".keys.npy") + ".npy")
            index.update((int(k), (vf, row)) for row, k in enumerate(np.load(kf)))
        return index


class _EmbedderTeacher:
    """A recsys Embedder with SentenceTransformer's encode signature."""

    def __init__(self, embedder: Any) -> None:
        self.embedder = embedder

    def encode(self, texts: list[str], batch_size: int = 32, convert_to_numpy: bool = True,
               show_progress_bar: bool = False) -> np.ndarray:
        return self.embedder.encode(texts, progress=show_progress_bar)


def _save_npy(path: Path, array: np.ndarray) -> None:
    np.save(tmp := path.with_name(path.name + ".tmp.npy"), array)
    tmp.replace(path)
