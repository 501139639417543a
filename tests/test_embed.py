"""Model loading: the shipped multilingual default, the English teacher, and clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recsys.article import Article
from recsys.embed import DEFAULT_MODEL, MINILM, STATIC_MODEL, STATIC_REVISION, article_text, builtin_model_path, load_embedder, parse_fields
from recsys.errors import ConfigError
from recsys.settings import Settings


def test_shipped_student_is_small_and_the_default_is_e5_both_calibrated() -> None:
    folder = builtin_model_path(STATIC_MODEL)
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 40 * 1024 * 1024 and (folder / "README.md").exists()
    assert DEFAULT_MODEL == "builtin:multilingual-e5-small"
    for embedder in (load_embedder(Settings()), load_embedder(Settings(model=STATIC_MODEL))):  # unset = default
        assert embedder.dimension == 384
        assert {"story_threshold", "related_floor"} <= embedder.calibration.keys()  # fitted by recsys calibrate
        _finds_the_english_story(embedder)
    assert load_embedder(Settings()).name == DEFAULT_MODEL
    # the student's stored name carries its weights' revision: vectors of other weights are embedded again
    assert load_embedder(Settings(model=STATIC_MODEL)).name == f"{STATIC_MODEL}#{STATIC_REVISION}"


def test_vectors_of_an_earlier_student_revision_are_embedded_again(tmp_path: Path) -> None:
    from recsys.engine import open_engine

    settings = Settings(model=STATIC_MODEL, db_path=tmp_path / "db.sqlite", index_dir=tmp_path / "index")
    engine = open_engine(settings)
    engine.upsert([Article(id="a", title="Нацбанк знизив облікову ставку", lang="uk")])
    engine.store.upsert([(engine.store.get("a"), "stale", np.ones(384, np.float32), None)], f"{STATIC_MODEL}#1")
    assert engine.store.ids_needing_vectors(engine.embedder.name) == ["a"]
    engine.build()
    assert engine.store.ids_needing_vectors(engine.embedder.name) == []


def _finds_the_english_story(embedder) -> None:  # noqa: ANN001
    vectors = embedder.encode([
        "Нацбанк знизив облікову ставку до 12 відсотків",
        "The central bank cut its key interest rate to 12 percent",
        "Центробанк снизил ключевую ставку до 12 процентов",
        "A new tram line opened in the city centre",
    ])
    assert vectors.dtype == np.float32 and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    sims = vectors @ vectors.T
    assert sims[0, 1] > sims[0, 3] + 0.05 and sims[2, 1] > sims[2, 3] + 0.05  # uk/ru find the English story


def test_english_teacher_still_loads_by_name_and_bad_names_fail_clearly(tmp_path: Path) -> None:
    teacher = load_embedder(Settings(model=MINILM))
    # calibrated for `recsys evaluate`'s model comparison (recsys/calibration/), never a default
    assert teacher.dimension == 384 and teacher.calibration["model"] == MINILM
    with pytest.raises(ConfigError, match="RECSYS_MODEL"):
        load_embedder(Settings(model="builtin:nope"))
    with pytest.raises(ConfigError, match="RECSYS_MODEL"):
        load_embedder(Settings(model=str(tmp_path / "missing")))


def test_embedded_text_is_title_plus_lead() -> None:
    art = Article(id="x", title="Заголовок", text="а" * 1000, lang="uk", section="спорт")
    assert article_text(art, ("title", "text"), 10) == "Заголовок. " + "а" * 10
    assert article_text(art, ("section", "title"), 10) == "спорт. Заголовок"
    with pytest.raises(ConfigError, match="RECSYS_EMBED_FIELDS"):
        parse_fields("title,body")


def test_a_headline_is_its_own_evidence_only_beside_a_body_that_does_not_begin_with_it() -> None:
    from recsys.embed import own_headline
    from recsys.ingest import headline_from

    assert own_headline("НБУ зберіг ставку", "Рада НБУ залишила облікову ставку на рівні 15,5 %.") == "НБУ зберіг ставку"
    assert own_headline("НБУ зберіг ставку", "") is None  # a headline-only item: its text vector is the headline's
    assert own_headline("НБУ зберіг ставку", "  НБУ зберіг ставку!  Рада НБУ ...") is None  # the feed repeats it
    body = "Рада НБУ залишила облікову ставку на рівні 15,5 % і пояснила це тим, що інфляція сповільнюється " * 3
    assert own_headline(headline_from(body), body) is None  # a stand-in cut from the body, ending in "…"
