"""Encoding batch size: static-embedding students encode in large batches, transformers in RECSYS_BATCH_SIZE."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys import measure
from recsys.embed import STATIC_BATCH_SIZE, load_embedder
from recsys.settings import Settings
from tests.conftest import build_tiny_model


@pytest.fixture(scope="module")
def static_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("static-batch"), dim=8)


@pytest.fixture(scope="module")
def transformer_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-layer, 16-wide BERT with a word-level vocabulary, built and saved here (no download)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root = tmp_path_factory.mktemp("transformer-batch")
    words = "[PAD] [UNK] [CLS] [SEP] [MASK] the bank cut its rate a new tram line opened".split()
    (root / "vocab.txt").write_text("\n".join(words) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(root / "vocab.txt")).save_pretrained(str(root / "bert"))
    config = BertConfig(vocab_size=len(words), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64)
    BertModel(config).save_pretrained(str(root / "bert"))
    transformer = Transformer(str(root / "bert"), max_seq_length=32)
    model = SentenceTransformer(modules=[transformer, Pooling(16, pooling_mode="mean")], device="cpu")
    model.save(str(root / "st"))
    return root / "st"


def _spy(embedder) -> list[int]:  # noqa: ANN001
    """Record the batch_size every model.encode call gets."""
    seen: list[int] = []
    original = embedder.model.encode

    def encode(texts, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(kwargs["batch_size"])
        return original(texts, *args, **kwargs)

    embedder.model.encode = encode
    return seen


def test_static_model_encodes_in_large_batches(static_path: Path) -> None:
    settings = Settings(model=str(static_path))
    assert settings.batch_size < STATIC_BATCH_SIZE  # otherwise this test could not tell the two apart
    embedder = load_embedder(settings)
    assert embedder.batch_size == STATIC_BATCH_SIZE == 1024
    seen = _spy(embedder)
    vectors = embedder.encode(["the bank cut its rate"] * 3)
    assert seen == [1024] and vectors.shape == (3, 8)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # a configured batch larger than the static default is kept
    assert load_embedder(Settings(model=str(static_path), batch_size=4096)).batch_size == 4096


def test_transformer_keeps_the_configured_batch_size(transformer_path: Path) -> None:
    embedder = load_embedder(Settings(model=str(transformer_path), batch_size=7))
    assert embedder.batch_size == 7
    seen = _spy(embedder)
    assert embedder.encode(["the bank cut its rate", "a new tram line opened"]).shape == (2, 16)
    assert seen == [7]
    assert load_embedder(Settings(model=str(transformer_path))).batch_size == Settings().batch_size


def test_measure_speed_goes_through_the_large_batch(static_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`recsys measure` times the student through dense_encoder -> load_embedder -> Embedder.encode."""
    from sentence_transformers import SentenceTransformer

    seen: list[int] = []
    original = SentenceTransformer.encode
    monkeypatch.setattr(SentenceTransformer, "encode",
                        lambda self, texts, *a, **kw: seen.append(kw["batch_size"]) or original(self, texts, *a, **kw))
    rate = measure.speed(measure.dense_encoder(str(static_path)), ["the bank cut its rate"] * 50)
    assert rate > 0 and seen and set(seen) == {STATIC_BATCH_SIZE}


def test_static_student_named_like_e5_gets_no_query_prompt(static_path: Path, tmp_path: Path) -> None:
    """A student distilled from e5 (e.g. a folder 'student-e5-20k') encodes text as is, without "query: "."""
    import shutil

    named = tmp_path / "student-e5-20k"
    shutil.copytree(static_path, named)
    embedder = load_embedder(Settings(model=str(named)))
    assert not getattr(embedder.model, "default_prompt_name", None)
    plain = load_embedder(Settings(model=str(static_path)))
    texts = ["the bank cut its rate", "a new tram line opened"]
    assert np.allclose(embedder.encode(texts), plain.encode(texts))
