"""Precomputed neighbour lists: a stored article's block ranked from its list is the block a FAISS
search would give, before and after writes; lists are saved with a build and made again when stale."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import story_articles
from recsys import candidates as cand
from recsys import neighbours as nbr
from recsys.article import Article
from recsys.cli import sample_corpus
from recsys.engine import open_engine
from recsys.ingest import read_articles
from recsys.recommend import Filters
from recsys.settings import Settings

FILTERS = [Filters(limit=5), Filters(limit=3), Filters(limit=2, max_age_days=2.0), Filters(limit=4, section="economy"),
           Filters(limit=3, fill=False)]


def block(engine, article_id: str, filters: Filters) -> tuple:  # noqa: ANN001
    r = engine.related_to_article(article_id, filters)
    return [a.id for a, _ in r.items], [round(s, 9) for _, s in r.items], r.reasons, r.relaxed, r.collapsed


def searched(engine, article_id: str, filters: Filters) -> tuple:  # noqa: ANN001
    """The block with the lists out of the way (every request searches FAISS)."""
    live, lists = engine.live, engine.live.neighbours
    live.neighbours = nbr.NeighbourLists(0, "")
    try:
        return block(engine, article_id, filters)
    finally:
        live.neighbours = lists


def count_searches(monkeypatch) -> list[int]:  # noqa: ANN001
    calls: list[int] = []
    real = cand.search

    def counting(*args, **kw):  # noqa: ANN002, ANN003, ANN202
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(cand, "search", counting)
    return calls


@pytest.fixture()
def sample_engine(settings: Settings, tiny_embedder):  # noqa: ANN001, ANN201
    articles, errors = read_articles(sample_corpus())
    assert not errors
    engine = open_engine(settings.model_copy(update={"min_candidates": 8}), embedder=tiny_embedder)
    engine.upsert(articles + story_articles())
    engine.build()
    yield engine, [a.id for a in articles + story_articles()]
    engine.store.close()


def test_listed_blocks_are_the_searched_blocks(sample_engine, monkeypatch) -> None:  # noqa: ANN001
    engine, ids = sample_engine
    filters = [f.__class__(**{**f.__dict__, "limit": 1}) for f in FILTERS]  # k = 8: the lists' depth
    calls = count_searches(monkeypatch)
    expected = {(i, n): searched(engine, i, f) for i in ids for n, f in enumerate(filters)}
    searches = len(calls)
    got = {(i, n): block(engine, i, f) for i in ids for n, f in enumerate(filters)}
    assert got == expected
    assert len(calls) - searches == searches - len(got)  # the first search of every block was its list


def test_default_widget_request_is_listed_with_default_settings(engine, monkeypatch) -> None:  # noqa: ANN001
    ids = [a.id for a in story_articles()]
    expected = {(i, n): searched(engine, i, f) for i in ids for n, f in enumerate(FILTERS)}
    calls = count_searches(monkeypatch)
    assert {(i, n): block(engine, i, f) for i in ids for n, f in enumerate(FILTERS)} == expected
    assert engine.live.neighbours.k == 24 and not calls


@pytest.mark.parametrize("bulk", [False, True])
def test_a_new_article_enters_exactly_the_lists_it_belongs_in(sample_engine, monkeypatch, bulk: bool) -> None:  # noqa: ANN001
    engine, ids = sample_engine
    if bulk:  # a bulk load marks every list of the language stale
        monkeypatch.setattr(nbr, "EXACT_MARKING", 0)
    lists, snap = engine.live.neighbours, engine.live.catalog.snapshot()
    row = engine.live.catalog.row_of_id["b1"]
    assert lists.pool(snap, row) is not None
    new = Article(id="b9", title="Злива знову затопила набережну Дніпра", lang="uk", section="environment",
                  text="Рятувальники знову відкачують воду з набережної Дніпра після зливи",
                  published_at="2026-10-06T10:00:00+03:00", url="https://news.example/b9")
    engine.upsert([new])
    assert lists.pool(engine.live.catalog.snapshot(), row) is None  # b1's list may now lack b9: made again
    assert "b9" in block(engine, "b1", Filters(limit=1, fill=False))[4].get("b1", ()) + \
        tuple(block(engine, "b1", Filters(limit=1))[0])
    # articles mixing two others land anywhere in other lists, also just above or below their last candidate
    stored = {a.id: a for a in engine.store.get_many(ids)}
    mixed = [Article(id=f"mix{n}", title=stored[ids[n]].title, text=stored[ids[(7 * n + 3) % len(ids)]].text,
                     lang=stored[ids[n]].lang) for n in range(0, len(ids), 4)]
    engine.upsert(mixed)
    for i in [*ids, "b9", *(a.id for a in mixed)]:  # lists kept, made again or new: each is what a search gives now
        assert block(engine, i, Filters(limit=1)) == searched(engine, i, Filters(limit=1)), i
    engine.delete("b9")
    assert block(engine, "b1", Filters(limit=1)) == searched(engine, "b1", Filters(limit=1))


def test_lists_are_saved_with_the_build_and_made_again_for_other_knobs(sample_engine, tiny_embedder,
                                                                       monkeypatch) -> None:  # noqa: ANN001
    engine, _ = sample_engine
    made: list[int] = []
    real = nbr.compute

    def counting(snap, rows, *args, **kw):  # noqa: ANN001, ANN002, ANN003, ANN202
        made.append(len(rows))
        return real(snap, rows, *args, **kw)

    monkeypatch.setattr(nbr, "compute", counting)
    again = open_engine(engine.settings, embedder=tiny_embedder)
    assert made == [] and again.live.neighbours.pool(again.live.catalog.snapshot(), 0) is not None
    other = open_engine(engine.settings.model_copy(update={"story_threshold": 0.99}), embedder=tiny_embedder)
    assert made == [other.live.catalog.snapshot().n]
    for i in ("a1", "b2", "c3"):
        assert block(other, i, Filters(limit=1)) == searched(other, i, Filters(limit=1))


def test_a_list_made_while_a_write_marked_lists_stale_is_not_kept() -> None:
    lists = nbr.NeighbourLists(2, "key", nbr._empty(2))
    bits = np.zeros((1, 2, 1), np.uint8)
    made = nbr.Lists(np.array([[3, -1]]), np.array([1]), np.array([[0.8, 0.0]], np.float32), np.zeros((1, 2)), bits, bits)
    version = lists.version
    lists.mark_entered(np.array([5]), np.array([0.9], np.float32))  # no list for row 5: nothing to mark
    lists.keep(5, made, version)
    assert 5 in lists._later
    version = lists.version
    lists.mark_entered(np.array([5]), np.array([0.9], np.float32))  # row 5's list is short: any score enters
    lists.keep(5, made, version)
    assert 5 not in lists._later
