"""The pure ranking functions, on hand-made candidates."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.errors import InvalidInput
from recsys.recommend import (
    COPY, DAY, DIFFERENT, SAME_STORY, Candidate, Filters, Query, Ranking, collapse, rank, rank_score, relation_over,
    story_relation,
)

NOW = 1_800_000_000.0
NO_BOOST = Ranking(dedup_threshold=0.95, recency_weight=0.0)


def unit(i: int, dim: int = 8) -> np.ndarray:
    v = np.zeros(dim, dtype=np.float32)
    v[i] = 1.0
    return v


def cand(ident: str, score: float, axis: int, lang: str = "uk", age_days: float = 1.0, **kw: object) -> Candidate:
    kw.setdefault("url", f"https://x.example/{ident}")
    return Candidate(id=ident, score=score, vector=unit(axis), lang=lang,
                     published_ts=NOW - age_days * DAY, title=f"title {ident}", **kw)


QUERY = Query(id="q", lang="uk", published_ts=NOW, url="https://x.example/q")


def ids(result) -> list[str]:  # noqa: ANN001
    return [c.id for c in result.items]


def test_never_the_article_itself_nor_excluded_ids() -> None:
    pool = [cand("q", 1.0, 0), cand("dup-url", 0.99, 1, url="https://x.example/q"),
            cand("a", 0.9, 2), cand("b", 0.8, 3), cand("c", 0.7, 4)]
    result = rank(QUERY, pool, Filters(limit=5, exclude=frozenset({"b"})), NOW, NO_BOOST)
    assert ids(result) == ["a", "c"]


def test_same_language_by_default_any_on_request() -> None:
    pool = [cand("en1", 0.9, 1, lang="en"), cand("uk1", 0.8, 2), cand("uk2", 0.7, 3)]
    assert ids(rank(QUERY, pool, Filters(limit=2), NOW, NO_BOOST)) == ["uk1", "uk2"]
    assert ids(rank(QUERY, pool, Filters(limit=2, lang_policy="any"), NOW, NO_BOOST)) == ["en1", "uk1"]


def test_relaxes_in_order_only_as_far_as_needed_and_says_so() -> None:
    pool = [cand("old-sport", 0.9, 1, age_days=30, section="sport"),
            cand("new-econ", 0.8, 2, age_days=1, section="economy"),
            cand("en-sport", 0.7, 3, lang="en", age_days=1, section="sport")]
    strict = Filters(limit=1, section="sport", max_age_days=7)
    # Nothing is recent, in Ukrainian and in sport: the section is relaxed first.
    result = rank(QUERY, pool, strict, NOW, NO_BOOST)
    assert ids(result) == ["new-econ"] and result.relaxed == ["section"]
    # Two wanted: after section, the age limit goes too, and the old item comes back.
    result = rank(QUERY, pool, Filters(limit=2, section="sport", max_age_days=7), NOW, NO_BOOST)
    assert ids(result) == ["old-sport", "new-econ"] and result.relaxed == ["section", "max_age_days"]
    # Three wanted: language is relaxed last.
    result = rank(QUERY, pool, Filters(limit=3, section="sport", max_age_days=7), NOW, NO_BOOST)
    assert ids(result) == ["old-sport", "new-econ", "en-sport"]
    assert result.relaxed == ["section", "max_age_days", "lang_policy"]
    assert rank(QUERY, pool, Filters(limit=3, section="sport"), NOW, NO_BOOST, allow_relax=False).relaxed == []


def test_near_duplicates_collapse_keeping_reader_language_then_newer() -> None:
    pool = [cand("en-orig", 0.95, 1, lang="en"),
            cand("uk-old", 0.90, 1, age_days=3),  # same vector as en-orig: same story
            cand("uk-new", 0.85, 1, age_days=1),
            cand("other", 0.80, 2)]
    result = rank(QUERY, pool, Filters(limit=5, lang_policy="any"), NOW, NO_BOOST)
    assert ids(result) == ["uk-new", "other"]


def test_translation_link_and_same_headline_mean_same_story() -> None:
    orig = cand("orig", 0.9, 1, lang="en")
    translation = cand("tr", 0.5, 2, original_url="https://x.example/orig")
    retitled = Candidate(id="copy", score=0.4, vector=unit(3), lang="uk", title="TITLE  orig!", published_ts=NOW - 5 * DAY)
    pool = [orig, translation, retitled]
    kept = collapse(pool, "uk", relation_over(pool, Ranking(dedup_threshold=0.95), None))
    assert [c.id for c in kept] == ["tr"]


def test_story_relation_thresholds() -> None:
    a, b = cand("a", 0.9, 1), cand("b", 0.8, 2)
    knobs = Ranking(dedup_threshold=0.92, dedup_lexical_threshold=0.15, copy_lexical_threshold=0.6)
    assert story_relation(a, b, dense=0.5, lexical=0.1, knobs=knobs) == DIFFERENT
    assert story_relation(a, b, dense=0.5, lexical=0.15, knobs=knobs) == SAME_STORY
    assert story_relation(a, b, dense=0.5, lexical=0.6, knobs=knobs) == COPY
    assert story_relation(a, b, dense=0.92, lexical=0.0, knobs=knobs) == COPY


def test_same_story_keeps_the_better_ranked_item_copies_prefer_reader_language() -> None:
    leader = cand("leader", 0.9, 1, lang="uk", age_days=5)
    follow_up = cand("follow-up", 0.8, 2, lang="uk", age_days=1)  # same story, other text: absorbed
    other = cand("other", 0.7, 3)
    pool = [leader, follow_up, other]
    lexical = np.array([[1.0, 0.3, 0.0], [0.3, 1.0, 0.0], [0.0, 0.0, 1.0]])
    result = rank(QUERY, pool, Filters(limit=3), NOW, NO_BOOST, lexical_pairs=lexical)
    assert ids(result) == ["leader", "other"]
    lexical[0, 1] = lexical[1, 0] = 0.9  # now a copy: the newer copy stands for the story
    assert ids(rank(QUERY, pool, Filters(limit=3), NOW, NO_BOOST, lexical_pairs=lexical)) == ["follow-up", "other"]


def test_lexical_score_blends_with_dense() -> None:
    knobs = Ranking(lexical_weight=1.0, recency_weight=0.0)
    dense_only = cand("dense", 0.8, 1)
    both = Candidate(id="both", score=0.6, vector=unit(2), lang="uk", lexical=0.4, published_ts=NOW)
    # relevance = (dense + w * lexical) / (1 + w): 0.4 versus 0.5
    assert ids(rank(QUERY, [dense_only, both], Filters(limit=2), NOW, knobs)) == ["both", "dense"]


def test_ties_break_by_newer_then_id() -> None:
    pool = [cand("b", 0.5, 1, age_days=2), cand("a", 0.5, 2, age_days=2), cand("c", 0.5, 3, age_days=1)]
    assert ids(rank(QUERY, pool, Filters(limit=3), NOW, NO_BOOST)) == ["c", "a", "b"]
    assert ids(rank(QUERY, list(reversed(pool)), Filters(limit=3), NOW, NO_BOOST)) == ["c", "a", "b"]


def test_recency_boost_halves_each_half_life() -> None:
    knobs = Ranking(recency_weight=0.1, recency_half_life_days=10, lexical_weight=0.0)
    near, far = cand("near", 0.5, 1, age_days=0), cand("far", 0.5, 2, age_days=10)
    assert rank_score(QUERY, near, NOW, knobs) == pytest.approx(0.6)
    assert rank_score(QUERY, far, NOW, knobs) == pytest.approx(0.55)
    # A strong similarity still beats closeness in time.
    strong_old = cand("old", 0.7, 3, age_days=40)
    assert ids(rank(QUERY, [near, strong_old], Filters(limit=1), NOW, knobs)) == ["old"]


def test_bad_filters_are_refused() -> None:
    with pytest.raises(InvalidInput):
        Filters(limit=0)
    with pytest.raises(InvalidInput):
        Filters(limit=3, lang_policy="mine")
    with pytest.raises(InvalidInput):
        Filters(limit=3, max_age_days=-1)


def test_fills_limit_when_pool_allows_and_never_repeats() -> None:
    pool = [cand(f"x{i}", 0.9 - i / 100, i % 8) for i in range(8)]
    result = rank(QUERY, pool, Filters(limit=5), NOW, NO_BOOST)
    assert len(result.items) == 5 and len(set(ids(result))) == 5


def test_replay_sees_only_items_published_before_and_never_relaxes_that() -> None:
    pool = [cand("older", 0.9, 1, age_days=3), cand("newer", 0.95, 2, age_days=0.5), cand("undated", 0.99, 3)]
    pool[2] = Candidate(id="undated", score=0.99, vector=unit(3), lang="uk")
    result = rank(QUERY, pool, Filters(limit=3, lang_policy="any", published_before=NOW - DAY), NOW, NO_BOOST)
    assert ids(result) == ["older"] and result.relaxed == []
