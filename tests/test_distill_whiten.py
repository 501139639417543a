"""Post-training whitening of a static student's token table (recsys.distill.whiten_weights / whiten_student)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from recsys import distill as D
from tests.test_distill import make_teacher, write_corpus


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def table() -> tuple[torch.Tensor, tuple, np.ndarray]:
    """A skewed random token table (one dominant direction, as trained students have) and 300 bags of tokens."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(50, 8)) + np.array([4.0, 0, 0, 0, 0, 0, 0, 0])
    lens = rng.integers(2, 7, 300)
    ids = torch.from_numpy(rng.integers(0, 50, lens.sum()))
    packed = (ids, np.concatenate([[0], np.cumsum(lens)]))
    return torch.from_numpy(w.astype(np.float32)), packed, np.arange(300)


def test_strength_zero_without_centering_keeps_every_cosine(table) -> None:  # noqa: ANN001
    w, packed, idx = table
    vectors = D._bag(w, packed, idx).numpy()
    same = D.whiten_weights(w, vectors, 0.0, center=False)
    after = D._bag(same, packed, idx).numpy()
    assert np.allclose(_unit(after), _unit(vectors), atol=1e-5)
    assert np.isclose(same.norm(dim=1).max().item(), w.norm(dim=1).max().item(), rtol=1e-5)


def test_whitening_is_exact_for_every_sentence_and_flattens_the_spectrum(table) -> None:  # noqa: ANN001
    w, packed, idx = table
    vectors = D._bag(w, packed, idx).numpy()
    u = _unit(vectors.astype(np.float64))
    mu = u.mean(0)
    _, s, vt = np.linalg.svd(u - mu, full_matrices=False)
    white = D.whiten_weights(w, vectors, 1.0)
    after = D._bag(white, packed, idx).numpy().astype(np.float64)
    expected = (vectors - mu) @ vt.T @ np.diag(s[0] / s) @ vt  # the map on mean vectors, up to one global scale
    scale = np.linalg.norm(after) / np.linalg.norm(expected)
    assert np.allclose(after, expected * scale, atol=1e-4)
    # the map itself, recovered from the tables: it whitens the unit sentence vectors it was fitted on
    w64 = w.double().numpy()
    for strength, flat in ((1.0, lambda r: np.isclose(r, 1.0, rtol=1e-3)), (0.5, lambda r: np.isclose(r, np.sqrt(s[0] / s[-1]), rtol=1e-3))):
        mapped = D.whiten_weights(w, vectors, strength).double().numpy()
        m = np.linalg.lstsq(w64 - mu, mapped, rcond=None)[0]
        s_after = np.linalg.svd((u - mu) @ m, compute_uv=False)
        assert flat(s_after[0] / s_after[-1]), (strength, s_after[0] / s_after[-1], s[0] / s[-1])
    assert s[0] / s[-1] > 3  # the input really was skewed


def test_distill_with_whiten_and_whiten_student(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(1)
    write_corpus(tmp_path / "data")
    cfg = D.DistillConfig(teacher=make_teacher(tmp_path / "teacher"), data_dir=tmp_path / "data", out_dir=tmp_path / "w",
                          cache_dir=tmp_path / "cache", langs=("uk", "ru"), heldout_per_lang=20, vocab_size=300,
                          epochs=2, batch_size=32, lr=0.05, contrastive_weight=0.1, seed=3, whiten=0.5)
    out = D.distill(cfg)
    meta = __import__("json").loads((out / "distill.json").read_text())
    assert meta["history"][-1]["epoch"] == "whitened" and meta["config"]["whiten"] == 0.5
    plain = D.distill(D.DistillConfig(**{**cfg.__dict__, "out_dir": tmp_path / "p", "whiten": 0.0}))
    a, b = (SentenceTransformer(str(p), device="cpu")[0].embedding.weight.detach().float() for p in (out, plain))
    assert a.shape == b.shape and not torch.allclose(a, b)
    # the same map applied afterwards to the unwhitened student
    again = D.whiten_student(plain, tmp_path / "again", cfg, strength=0.5)
    model = SentenceTransformer(str(again), device="cpu")
    vec = model.encode(["the cat", "the dog"], normalize_embeddings=True)
    assert vec.shape == (2, 16) and np.allclose(np.linalg.norm(vec, axis=1), 1.0, atol=1e-3)
    info = __import__("json").loads((again / "distill.json").read_text())["whitened"]
    assert info["strength"] == 0.5 and info["sentences"] > 0
    heldout = {t for p in D._training_data(cfg)[1] for t in p[:2]}
    assert heldout  # whiten_student samples from the training pairs only, which exclude these
