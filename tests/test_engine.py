"""The engine end to end on the tiny model: writes take effect at once; answers match exact search."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import STORY_OF, build_tiny_model, story_articles
from recsys.article import Article
from recsys.embed import load_embedder
from recsys.engine import open_engine
from recsys.errors import IndexMismatch, NotFound
from recsys.recommend import Filters
from recsys.settings import Settings


def related_ids(engine, article_id: str, **kw: object) -> list[str]:  # noqa: ANN001
    return [a.id for a, _ in engine.related_to_article(article_id, Filters(**{"limit": 3, **kw})).items]


def test_same_story_first_for_every_story(engine) -> None:  # noqa: ANN001
    articles = story_articles()
    # The tiny model is a bag of words, so it can only match within one language.
    with_sibling = [a for a in articles if any(b.id != a.id and b.lang == a.lang and STORY_OF[b.id] == STORY_OF[a.id] for b in articles)]
    assert len(with_sibling) == 10
    for article in with_sibling:
        first = related_ids(engine, article.id)[0]
        assert STORY_OF[first] == STORY_OF[article.id], (article.id, first)


def test_ranking_agrees_with_exact_search(engine, settings: Settings, tiny_embedder) -> None:  # noqa: ANN001
    engine = open_engine(settings.model_copy(update={"lexical_weight": 0.0, "recency_weight": 0.0,
                                                       "collapse_stories": False, "fill": False}), embedder=tiny_embedder)
    articles = story_articles()
    matrix = np.stack([engine.store.vector_of(a.id, engine.embedder.name) for a in articles])
    for i, article in enumerate(articles):
        result = engine.related_to_article(article.id, Filters(limit=len(articles), lang_policy="any"))
        scores = {a.id: s for a, s in result.items}
        for j, other in enumerate(articles):
            if other.id in scores:
                assert scores[other.id] == pytest.approx(float(matrix[i] @ matrix[j]), abs=1e-5)


def test_upsert_is_idempotent_and_only_changed_text_is_embedded(engine) -> None:  # noqa: ANN001
    articles = story_articles()
    again = engine.upsert(articles)
    assert (again.inserted, again.updated, again.embedded) == (0, len(articles), 0)
    vid_before = engine.store.max_vid()
    engine.upsert([articles[0].model_copy(update={"section": "culture"})])
    assert engine.store.max_vid() == vid_before
    engine.upsert([articles[0].model_copy(update={"title": "Зовсім інший заголовок про біатлон Марченко"})])
    assert engine.store.max_vid() == vid_before + 1


def test_new_article_is_searchable_at_once_and_delete_hides_it(engine) -> None:  # noqa: ANN001
    new = Article(id="b5", title="Злива затопила набережну Дніпра знову", text="Рятувальники відкачують воду з набережної",
                  lang="uk", url="https://news.example/b5", published_at="2026-10-06T10:00:00+03:00")
    engine.upsert([new])
    assert "b5" in related_ids(engine, "b1")
    engine.delete("b5")
    assert "b5" not in related_ids(engine, "b1", limit=20)
    with pytest.raises(NotFound):
        engine.delete("b5")
    with pytest.raises(NotFound):
        engine.related_to_article("b5", Filters(limit=3))


def test_edit_replaces_old_vector_in_answers(engine) -> None:  # noqa: ANN001
    moved = story_articles()[4].model_copy(update={"title": "Біатлон Марченко спринт Естерсунд", "text": "Біатлон спринт"})
    engine.upsert([moved])  # b1 now tells the biathlon story
    assert "b1" not in related_ids(engine, "b2", limit=3)
    # c3 is the same story and outranks it; with c3 left out, the edited b1 leads the block
    assert related_ids(engine, "c1", limit=1, exclude=frozenset({"c3"})) == ["b1"]


def test_writes_from_another_process_are_picked_up(engine, settings: Settings, tiny_embedder) -> None:  # noqa: ANN001
    other = open_engine(settings, embedder=tiny_embedder)  # e.g. `recsys ingest` while the API runs
    other.upsert([Article(id="e4", title="Харківський стартап показав дрони", lang="uk")])
    assert related_ids(engine, "e1", limit=1, exclude=frozenset({"e3"})) == ["e4"]
    other.delete("e4")
    assert "e4" not in related_ids(engine, "e1", limit=20)


def test_build_compacts_and_restart_reloads(engine, settings: Settings, tiny_embedder) -> None:  # noqa: ANN001
    engine.delete("a1")
    engine.upsert([story_articles()[1].model_copy(update={"title": "Новий заголовок"})])
    assert engine.live.ntotal == 18  # 17 + 1 re-embedded; stale vectors stay until a build
    live = engine.build()
    assert live.ntotal == 16 and live.manifest.count == 16
    reopened = open_engine(settings, embedder=tiny_embedder)
    assert reopened.live.manifest.build_id == live.manifest.build_id and reopened.live.ntotal == 16


def test_headline_vectors_are_stored_indexed_and_reloaded(engine, settings: Settings, tiny_embedder) -> None:  # noqa: ANN001
    a, b = story_articles()[:2]
    want = tiny_embedder.encode([a.title, b.title])
    _, _, headline = engine.pair_features(a.id, b.id)
    assert headline == pytest.approx(float(want[0] @ want[1]), abs=2e-3)  # float16 in the catalog
    engine.build()
    reopened = open_engine(settings, embedder=tiny_embedder)
    assert reopened.pair_features(a.id, b.id) == pytest.approx(engine.pair_features(a.id, b.id))
    fresh = Article(id="new", title=a.title, text="Зовсім інший текст", lang="uk")
    engine.upsert([fresh])  # appended after the build: its headline vector arrives with it
    dense, _, headline = engine.pair_features(a.id, "new")
    assert headline == pytest.approx(1.0, abs=2e-3) and dense < 0.99  # the headline's vector, not the text's


def test_fills_limit_by_relaxing_and_reports_it(engine) -> None:  # noqa: ANN001
    result = engine.related_to_article("a1", Filters(limit=5))  # only 4 other English items exist
    assert len(result.items) == 5 and result.relaxed == ["lang_policy"]
    assert len({a.id for a, _ in result.items}) == 5


def test_draft_query(engine) -> None:  # noqa: ANN001
    result = engine.related_to_draft("Марченко біатлон", "спринт Естерсунд", "uk", Filters(limit=2))
    assert [STORY_OF[a.id] for a, _ in result.items][0] == "c"


def test_other_model_refuses_old_index_until_rebuilt(engine, settings: Settings, tmp_path: Path) -> None:  # noqa: ANN001
    other_path = build_tiny_model(tmp_path / "other-model", dim=48, seed=1)
    other_settings = settings.model_copy(update={"model": str(other_path)})
    other = load_embedder(other_settings)
    with pytest.raises(IndexMismatch, match="recsys build"):
        open_engine(other_settings, embedder=other)
    rebuilt = open_engine(other_settings, embedder=other, rebuild=True)  # what `recsys build` does
    assert rebuilt.live.manifest.dimension == 48 and rebuilt.live.ntotal == 17
    assert open_engine(other_settings, embedder=other).live.manifest.build_id == rebuilt.live.manifest.build_id


def test_concurrent_queries_add_new_vectors_exactly_once(engine, settings: Settings, tiny_embedder) -> None:  # noqa: ANN001
    from concurrent.futures import ThreadPoolExecutor

    writer = open_engine(settings, embedder=tiny_embedder)
    writer.upsert([Article(id=f"w{i}", title=f"Нова стаття номер {i}", lang="uk") for i in range(3)])
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: related_ids(engine, "a2"), range(32)))
    assert engine.live.ntotal == 20 and engine.live.catalog.n == 20


def test_dense_story_threshold_comes_from_the_model_unless_set(engine, settings: Settings, tiny_embedder) -> None:  # noqa: ANN001
    assert engine.knobs.story_dense_threshold == 2.0  # the tiny model has no calibration: rule off
    tiny_embedder.calibration = {"story_dense_threshold": 0.4}
    try:
        assert open_engine(settings, embedder=tiny_embedder).knobs.story_dense_threshold == 0.4
        fixed = settings.model_copy(update={"story_dense_threshold": 0.7})
        assert open_engine(fixed, embedder=tiny_embedder).knobs.story_dense_threshold == 0.7
    finally:
        tiny_embedder.calibration = {}


def test_a_deeper_pool_reuses_the_lexical_scores_of_the_shallower_one(engine, monkeypatch) -> None:  # noqa: ANN001
    from recsys import candidates as cand
    from recsys import lexical

    snap = engine.live.catalog.snapshot()
    vectors = engine._vectors_of_row(0)
    rows, dense = engine.live.search(snap.vectors[0], snap.n)
    shallow = cand.pool(snap, rows[:3], dense[:3], vectors)
    computed = []
    real = lexical.dot_rows

    def counting(picked, query):  # noqa: ANN001, ANN202
        computed.append(picked.shape[0])
        return real(picked, query)

    monkeypatch.setattr(lexical, "dot_rows", counting)
    deep = cand.pool(snap, rows, dense, vectors, earlier=shallow)
    assert computed == [len(rows) - 3]  # only the rows the shallow pass had not seen
    fresh = cand.pool(snap, rows, dense, vectors)
    np.testing.assert_allclose(deep.lexical, fresh.lexical)
    assert np.array_equal(deep.rows, fresh.rows) and deep.lexical[0] == pytest.approx(1.0, abs=1e-5)
