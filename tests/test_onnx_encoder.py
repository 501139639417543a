"""ONNX Runtime backends of builtin:multilingual-e5-small: export, agreement with PyTorch fp32, wiring.

One conversion and one export (fp32 + int8, ~1.3 GB in a temporary folder) serve the whole session.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from recsys.cli import main
from recsys.embed import E5_SMALL, load_embedder, model_backend
from recsys.errors import ConfigError
from recsys.model_install import _file_id, install_e5_small
from recsys.onnx_encoder import FP32_FILE, INT8_FILE, ONNX_DIR, ONNX_MANIFEST, OnnxSentenceEncoder, export_onnx
from recsys.settings import Settings
from tests.conftest import STORY_ROWS

EXTRA = [
    "Верховна Рада ухвалила бюджет на наступний рік", "Київ готується до опалювального сезону",
    "Центробанк сохранил ключевую ставку", "В Москве открылась новая станция метро",
    "Die Bundesregierung plant neue Regeln für Mieten", "Der Rhein führt nach dem Regen Hochwasser",
    "Parliament approves the new budget after a long debate", "Storm leaves thousands without power",
    "Шахтар переміг у Лізі чемпіонів", "Суд отложил рассмотрение дела до весны",
    "Neue Zugverbindung zwischen Berlin und Warschau", "Scientists find water ice near the lunar south pole",
    "Ціни на пальне зросли вдруге за місяць", "Выставка современного искусства открылась в Казани",
    "Ein Tag", "Short",
]
SENTENCES = [row[2] for row in STORY_ROWS] + [row[3] for row in STORY_ROWS] + EXTRA  # 50, uk/ru/en/de


@pytest.fixture(scope="session")
def e5_onnx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A built folder with both ONNX files (removed afterwards)."""
    models = tmp_path_factory.mktemp("onnx-models")
    folder = install_e5_small(models, progress=False)
    export_onnx(folder, progress=False, fp32=True)
    yield folder
    shutil.rmtree(models, ignore_errors=True)


@pytest.fixture(scope="session")
def int8(e5_onnx: Path) -> OnnxSentenceEncoder:
    return OnnxSentenceEncoder(e5_onnx, export=False)


@pytest.fixture(scope="session")
def fp32(e5_onnx: Path) -> OnnxSentenceEncoder:
    return OnnxSentenceEncoder(e5_onnx, quantized=False, export=False)


@pytest.fixture(scope="session")
def st_model(e5_onnx: Path):  # noqa: ANN201 - SentenceTransformer, imported lazily
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(e5_onnx), device="cpu")  # PyTorch fp32; adds "query: " itself


@pytest.fixture(scope="session")
def torch_vectors(st_model) -> np.ndarray:  # noqa: ANN001
    return st_model.encode(SENTENCES, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)


def test_int8_agrees_with_torch_fp32(int8: OnnxSentenceEncoder, torch_vectors: np.ndarray) -> None:
    vectors = int8.encode(SENTENCES, batch_size=16, show_progress_bar=False, normalize_embeddings=True,
                          convert_to_numpy=True)  # the keywords Embedder passes
    cosine = np.sum(vectors * torch_vectors, axis=1)
    assert vectors.shape == (50, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert cosine.mean() >= 0.99 and cosine.min() >= 0.97, (cosine.mean(), cosine.min())
    assert int8.get_sentence_embedding_dimension() == 384 and int8.default_prompt_name == "query"


def test_onnx_fp32_equals_torch_fp32(fp32: OnnxSentenceEncoder, torch_vectors: np.ndarray) -> None:
    cosine = np.sum(fp32.encode(SENTENCES, batch_size=16) * torch_vectors, axis=1)
    assert cosine.min() >= 0.9999


def test_order_is_kept_across_length_sorted_batches(fp32: OnnxSentenceEncoder, int8: OnnxSentenceEncoder) -> None:
    texts = [SENTENCES[i] for i in (40, 20, 48, 3, 25, 49, 11)]  # lengths in no order, odd count
    for encoder, workers in ((fp32, 1), (int8, 3)):
        encoder.workers = workers  # more than one batch in flight at once
        together = encoder.encode(texts, batch_size=2)
        alone = np.stack([encoder.encode(t) for t in texts])
        encoder.workers = 1
        assert np.array_equal(np.argmax(together @ alone.T, axis=1), np.arange(len(texts)))
        assert np.sum(together * alone, axis=1).min() >= (0.9999 if encoder is fp32 else 0.99)


def test_int8_vector_of_a_text_does_not_depend_on_its_batch(int8: OnnxSentenceEncoder) -> None:
    # dynamic quantisation scales activations per run: batch-mates would shift a text's vector
    texts = SENTENCES[:12]
    alone = np.stack([int8.encode(t) for t in texts])
    for batch_size in (4, 12):
        np.testing.assert_allclose(int8.encode(texts, batch_size=batch_size), alone, rtol=0, atol=1e-6)
    np.testing.assert_allclose(int8.encode(texts[::-1], batch_size=5)[::-1], alone, rtol=0, atol=1e-6)


def test_empty_single_and_very_long_inputs(int8: OnnxSentenceEncoder, st_model) -> None:  # noqa: ANN001
    assert int8.encode([]).shape == (0, 384)
    assert int8.encode("Львів відкрив нову трамвайну лінію").shape == (384,)
    long_text = " ".join(SENTENCES * 40)  # ~25k characters, far beyond 512 tokens
    assert int8.tokenize([long_text])["input_ids"].shape == (1, 512)
    assert int8.tokenize(["a"])["input_ids"].tolist() == int8.tokenize(["query: a"], prompt="")["input_ids"].tolist()
    vectors = int8.encode([long_text, "Short"])
    reference = st_model.encode([long_text], normalize_embeddings=True)  # sentence-transformers cuts at 512 too
    assert np.isfinite(vectors).all() and float(vectors[0] @ reference[0]) >= 0.99


def test_export_is_idempotent_and_deterministic(e5_onnx: Path, int8: OnnxSentenceEncoder) -> None:
    target = e5_onnx / ONNX_DIR
    manifest = json.loads((target / ONNX_MANIFEST).read_text())
    stamp = (target / INT8_FILE).stat().st_mtime_ns
    assert export_onnx(e5_onnx, progress=False) == target / INT8_FILE  # manifest matches: nothing redone
    assert export_onnx(e5_onnx, progress=False, fp32=True) == target / INT8_FILE
    assert (target / INT8_FILE).stat().st_mtime_ns == stamp and (target / FP32_FILE).is_file()
    copy = e5_onnx.parent / "copy"  # a second export from the same folder: byte-identical int8 file
    copy.mkdir()
    for name in ("model.safetensors", "config.json", "tokenizer.json", "recsys_install.json"):
        (copy / name).hardlink_to(e5_onnx / name)
    try:
        assert export_onnx(copy, progress=False) == copy / ONNX_DIR / INT8_FILE
        assert _file_id(copy / ONNX_DIR / INT8_FILE) == manifest["files"][INT8_FILE]
        assert not (copy / ONNX_DIR / FP32_FILE).exists()  # only an intermediate without fp32=True
        assert sorted(p.name for p in copy.iterdir()) == ["config.json", "model.safetensors", ONNX_DIR,
                                                          "recsys_install.json", "tokenizer.json"]  # no tmp left
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_backends_and_names(e5_onnx: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sentence_transformers import SentenceTransformer

    settings = Settings(model=E5_SMALL, models_dir=e5_onnx.parent)
    default = load_embedder(settings)
    assert default.name == E5_SMALL and isinstance(default.model, OnnxSentenceEncoder)
    assert default.model.path.name == INT8_FILE and default.dimension == 384
    torch_one = load_embedder(settings.model_copy(update={"model_backend": "torch"}))
    assert torch_one.name == f"{E5_SMALL}@torch" and isinstance(torch_one.model, SentenceTransformer)
    onnx_one = load_embedder(settings.model_copy(update={"model": f"{E5_SMALL}@onnx"}))
    assert onnx_one.name == f"{E5_SMALL}@onnx" and onnx_one.model.path.name == FP32_FILE
    texts = SENTENCES[:5]
    assert np.sum(default.encode(texts) * torch_one.encode(texts), axis=1).min() >= 0.97
    assert model_backend(E5_SMALL, settings.model_copy(update={"model_backend": "onnx-int8"})) == (E5_SMALL,
                                                                                                   "onnx-int8")
    assert model_backend("builtin:static-multilingual", settings.model_copy(update={"model_backend": "onnx"})) \
        == ("builtin:static-multilingual", "torch")  # the setting is about the e5 built-in only
    with pytest.raises(ConfigError):
        model_backend("builtin:static-multilingual@onnx", settings)
    with pytest.raises(ConfigError):
        model_backend(f"{E5_SMALL}@gpu", settings)
    monkeypatch.setenv("RECSYS_MODEL_BACKEND", "tensorrt")
    with pytest.raises(ValidationError):
        Settings()


def test_cli_model_install_exports(e5_onnx: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "install", "multilingual-e5-small", "--models-dir", str(e5_onnx.parent)]) == 0
    assert json.loads(capsys.readouterr().out)["path"] == str(e5_onnx)
    assert (e5_onnx / ONNX_DIR / INT8_FILE).is_file()
