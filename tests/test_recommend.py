"""The pure ranking functions, on hand-made candidate pools (values worked out by hand)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from recsys.catalog import headline_key, key_of
from recsys.errors import InvalidInput
from recsys.recommend import Filters, Pool, Query, Ranking, _leaders_of_batch, collapse, eligible, rank
from recsys.scores import DAY, blend, fuse, recency
from recsys.story_rule import relations

NOW = 1_800_000_000.0
UK, EN = 0, 1
PLAIN = Ranking(copy_dense_threshold=0.95, story_threshold=0.6, story_dense_threshold=2.0, related_floor=0.0,
                lexical_weight=0.0, recency_weight=0.0)


def make_pool(specs: list[dict], pair_dense: np.ndarray | None = None, pair_lexical: np.ndarray | None = None,
              pair_title: np.ndarray | None = None) -> Pool:
    """specs: dense, lexical, lang, age_days, section, url, original, title per candidate (row = position)."""
    n = len(specs)
    col = {
        "alive": np.array([s.get("alive", True) for s in specs]),
        "lang": np.array([s.get("lang", UK) for s in specs]),
        "ts": np.array([NOW - s["age_days"] * DAY if s.get("age_days") is not None else np.nan for s in specs]),
        "section": np.array([s.get("section", -1) for s in specs]),
        "url": np.array([key_of(s.get("url", f"https://x.example/{i}")) for i, s in enumerate(specs)], dtype=np.int64),
        "original": np.array([key_of(s.get("original")) for s in specs], dtype=np.int64),
        "title": np.array([headline_key(s.get("title", f"title {i}")) for i, s in enumerate(specs)], dtype=np.int64),
        "text": np.array([s.get("text", i + 1) for i, s in enumerate(specs)], dtype=np.int64),
    }
    dense = np.eye(n) if pair_dense is None else pair_dense
    lexical = np.eye(n) if pair_lexical is None else pair_lexical

    def pairs(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        at = np.ix_(positions, positions)
        return dense[at], lexical[at], None if pair_title is None else pair_title[at]

    return Pool(np.arange(n), np.array([s["dense"] for s in specs], float),
                np.array([s.get("lexical", 0.0) for s in specs]), col, pairs)


QUERY = Query(row=-1, lang=UK, anchor_ts=NOW, keys=(key_of("https://x.example/q"),))


def ranked(pool: Pool, filters: Filters, knobs: Ranking = PLAIN, query: Query = QUERY, excluded=()) -> list[int]:  # noqa: ANN001
    langs = (query.lang,) if filters.lang_policy == "same" else None
    ok = eligible(query, pool, filters, np.array(excluded, dtype=np.int64), langs, None)
    return rank(query, pool, filters, knobs, ok).rows


def test_never_the_article_itself_in_any_language_nor_excluded() -> None:
    pool = make_pool([
        {"dense": 0.99, "url": "https://x.example/q"},  # the article itself
        {"dense": 0.98, "lang": EN, "url": "https://en.example/orig", "original": None},  # its original...
        {"dense": 0.97, "url": "https://x.example/ru", "original": "https://en.example/orig"},  # ...and a sibling
        {"dense": 0.9}, {"dense": 0.8}, {"dense": 0.7},
    ])
    query = Query(-1, UK, NOW, (key_of("https://x.example/q"), key_of("https://en.example/orig")))
    assert ranked(pool, Filters(limit=5, lang_policy="any"), query=query, excluded=[4]) == [3, 5]


def test_a_draft_is_never_answered_with_its_own_text() -> None:
    pool = make_pool([{"dense": 1.0, "text": 77}, {"dense": 0.5}])
    assert ranked(pool, Filters(limit=5), query=Query(-1, UK, NOW, (), text_key=77)) == [1]


def test_same_language_by_default_prefer_puts_the_reader_language_first_any_mixes() -> None:
    pool = make_pool([{"dense": 0.9, "lang": EN}, {"dense": 0.8}, {"dense": 0.7}])
    assert ranked(pool, Filters(limit=2)) == [1, 2]
    assert ranked(pool, Filters(limit=3, lang_policy="prefer")) == [1, 2, 0]
    assert ranked(pool, Filters(limit=2, lang_policy="any")) == [0, 1]


def test_relevance_floor_keeps_unrelated_items_out() -> None:
    pool = make_pool([{"dense": 0.8, "lexical": 0.4}, {"dense": 0.3, "lexical": 0.0}, {"dense": 0.5, "lexical": 0.1}])
    knobs = Ranking(related_floor=0.4, lexical_weight=1.0, recency_weight=0.0)
    # blend = (dense + lexical) / 2: 0.6, 0.15, 0.3 -> only the first clears 0.4
    assert ranked(pool, Filters(limit=3), knobs) == [0]


def test_time_window_is_measured_from_the_article_and_keeps_undated_items() -> None:
    pool = make_pool([{"dense": 0.9, "age_days": 40}, {"dense": 0.8, "age_days": 3}, {"dense": 0.7, "age_days": None},
                      {"dense": 0.6, "age_days": -5}])
    old_article = Query(-1, UK, NOW - 38 * DAY, ())
    # the article is 38 days old: the 40-day-old item is 2 days from it, the 3-day-old one 35 days after it
    assert ranked(pool, Filters(limit=4, max_age_days=7), query=old_article) == [0, 2]
    assert ranked(pool, Filters(limit=4, max_age_days=7)) == [1, 2, 3]


def test_copies_collapse_to_the_reader_language_then_the_newer() -> None:
    dense = np.array([[1, .97, .97, .1], [.97, 1, .97, .1], [.97, .97, 1, .1], [.1, .1, .1, 1]])
    pool = make_pool([{"dense": 0.9, "lang": EN, "age_days": 1}, {"dense": 0.85, "age_days": 3},
                      {"dense": 0.8, "age_days": 2}, {"dense": 0.5}], pair_dense=dense)
    result = rank(QUERY, pool, Filters(limit=3, lang_policy="any"), PLAIN, np.ones(4, bool))
    assert result.rows == [2, 3] and result.collapsed == {2: (0, 1)}
    assert result.scores == [pytest.approx(0.9), pytest.approx(0.5)]  # the slot keeps its leader's key


def test_translation_link_and_same_headline_mean_one_text() -> None:
    pool = make_pool([{"dense": 0.9, "url": "https://en.example/a", "lang": EN},
                      {"dense": 0.8, "url": "https://uk.example/a", "original": "https://en.example/a"},
                      {"dense": 0.7, "title": "Same headline!"}, {"dense": 0.6, "title": "same  HEADLINE"}])
    dense, lexical, title = pool.pairs(np.arange(4))
    copy, story = relations(pool.col, dense, lexical, PLAIN, title)
    assert copy[0, 1] and copy[1, 0] and copy[2, 3] and not copy[0, 2]
    assert (story == (copy | np.eye(4, dtype=bool))).all()


def test_close_headlines_tell_one_story_unless_published_too_far_apart() -> None:
    dense = np.array([[1, .5, .5], [.5, 1, .5], [.5, .5, 1]])
    title = np.array([[1, .93, .95], [.93, 1, .7], [.95, .7, 1]])
    pool = make_pool([{"dense": 0.9, "age_days": 0}, {"dense": 0.8, "age_days": 1}, {"dense": 0.7, "age_days": 9}],
                     dense, pair_title=title)
    knobs = Ranking(story_threshold=0.9, story_title_threshold=0.92, story_window_days=3.0, lexical_weight=0.0)
    copy, story = relations(pool.col, dense, np.eye(3), knobs, title)
    # 0-1: headlines .93 >= .92, a day apart -> one story; 0-2: .95 but nine days apart -> not; 1-2: .7 -> not
    assert story[0, 1] and story[1, 0] and not story[0, 2] and not story[1, 2] and not copy[0, 1]
    _, off = relations(pool.col, dense, np.eye(3), replace(knobs, story_title_threshold=2.0), title)
    assert not off[0, 1]  # 2 = off, the default
    _, none = relations(pool.col, dense, np.eye(3), knobs)
    assert not none[0, 1]  # no headline vectors: the rule cannot fire


def test_story_rule_uses_the_fused_pair_score_and_the_cross_language_dense_rule() -> None:
    dense = np.array([[1, .5, .72], [.5, 1, .1], [.72, .1, 1]])
    lexical = np.array([[1, .4, 0], [.4, 1, 0], [0, 0, 1]])
    pool = make_pool([{"dense": 0.9}, {"dense": 0.8}, {"dense": 0.7, "lang": EN}], dense, lexical)
    knobs = Ranking(story_threshold=0.45, story_dense_threshold=0.7, lexical_weight=1.0, copy_dense_threshold=0.95)
    copy, story = relations(pool.col, dense, lexical, knobs)
    # pair 0-1: blend (0.5 + 0.4) / 2 = 0.45 -> same story; pair 0-2: dense 0.72 >= 0.7 -> same story
    assert story[0, 1] and story[0, 2] and not story[1, 2] and not copy.any(where=~np.eye(3, dtype=bool))


def test_lexical_pairs_are_asked_for_only_where_dense_scores_cannot_decide() -> None:
    rng = np.random.default_rng(3)
    dense = np.clip(rng.uniform(0.2, 1.0, (30, 30)), 0, 1)
    dense = np.triu(dense, 1) + np.triu(dense, 1).T + np.eye(30)
    lexical = np.triu(rng.uniform(0, 1, (30, 30)), 1)
    lexical = lexical + lexical.T + np.eye(30)
    pool = make_pool([{"dense": 0.5, "age_days": float(i % 5) if i % 3 else None} for i in range(30)], dense, lexical)
    knobs = Ranking(story_threshold=0.8, story_threshold_in_window=0.6, story_window_days=3.0, lexical_weight=0.5,
                    copy_dense_threshold=0.97)
    asked = []

    def lexical_at(mask: np.ndarray) -> np.ndarray:
        asked.append(mask)
        return np.where(mask, lexical, 0.0)

    expected = relations(pool.col, dense, lexical, knobs)
    got = relations(pool.col, dense, lexical_at, knobs)
    assert (got[0] == expected[0]).all() and (got[1] == expected[1]).all()
    # pair (0.9 dense) with threshold 0.8 and weight 0.5: fused >= 0.9 / 1.5 = 0.6 < 0.8 <= 1.4 / 1.5: undecided
    # a pair below 0.8 * 1.5 - 0.5 = 0.7 dense (undated) is settled without lexical
    undated = np.isnan(pool.col["ts"][:, None] - pool.col["ts"][None, :])
    assert len(asked) == 1 and not (asked[0] & undated & (dense < 0.7 - 1e-6)).any() and asked[0].sum() < dense.size / 2


def test_one_story_is_told_within_its_time_window() -> None:
    dense = np.array([[1, .8, .8, .8], [.8, 1, .8, .8], [.8, .8, 1, .8], [.8, .8, .8, 1]])
    pool = make_pool([{"dense": 0.9, "age_days": 10}, {"dense": 0.8, "age_days": 8},
                      {"dense": 0.7, "age_days": 1}, {"dense": 0.6, "age_days": None}], pair_dense=dense)
    knobs = Ranking(story_threshold=0.75, story_window_days=3.0, lexical_weight=0.0, copy_dense_threshold=0.95)
    _, story = relations(pool.col, dense, np.eye(4), knobs)
    # 10 and 8 days old: 2 days apart, one story; 1 day old: a follow-up a week later, another story;
    # the undated item cannot be placed in time, so the scores decide alone
    assert story[0, 1] and not story[0, 2] and not story[1, 2] and story[0, 3] and story[2, 3]
    # inside the window a lower score suffices (closeness in time is evidence too); undated pairs keep the stricter one
    knobs = Ranking(story_threshold=0.85, story_threshold_in_window=0.75, story_window_days=3.0, lexical_weight=0.0)
    _, story = relations(pool.col, dense, np.eye(4), knobs)
    assert story[0, 1] and not story[0, 2] and not story[0, 3]


def test_collapse_compares_with_the_leader_only_and_stops_when_the_block_is_full() -> None:
    dense = np.array([[1, .7, .1, .1], [.7, 1, .7, .1], [.1, .7, 1, .1], [.1, .1, .1, 1]])
    pool = make_pool([{"dense": 0.9}, {"dense": 0.8}, {"dense": 0.7}, {"dense": 0.6}], pair_dense=dense)
    knobs = Ranking(story_threshold=0.6, lexical_weight=0.0, copy_dense_threshold=0.95)
    # 2 resembles 1 but not the leader 0: chaining would merge two stories
    assert collapse([0, 1, 2, 3], pool, knobs, UK, limit=5) == [(0, [1]), (2, []), (3, [])]
    assert collapse([0, 1, 2, 3], pool, knobs, UK, limit=2) == [(0, [1]), (2, [])]


def _leaders_by_comparing_each_item(story: np.ndarray, known: int, size: int, limit: int) -> dict[int, list[int]]:
    """The rule stated plainly: each batch item, in rank order, joins its best-ranked same-story leader,
    or leads a new group while the block has room."""
    leaders, joined = list(range(known)), {lead: [] for lead in range(known)}
    for j in range(size):
        home = next((lead for lead in leaders if story[known + j, lead]), None)
        if home is not None:
            joined[home].append(j)
        elif len(leaders) < limit:
            leaders.append(known + j)
            joined[known + j] = []
    return joined


@pytest.mark.parametrize("seed", range(40))
def test_leaders_of_batch_match_comparing_each_item_with_each_leader(seed: int) -> None:
    rng = np.random.default_rng(seed)
    known, size = int(rng.integers(0, 4)), int(rng.integers(1, 30))
    upper = np.triu(rng.random((known + size, known + size)) < rng.uniform(0.05, 0.5), 1)
    story = upper | upper.T | np.eye(known + size, dtype=bool)
    limit = known + int(rng.integers(0, 8))
    got = {lead: joined for lead, joined in _leaders_of_batch(story, known, size, limit)}
    assert got == _leaders_by_comparing_each_item(story, known, size, limit)


def test_no_collapse_when_turned_off() -> None:
    dense = np.array([[1, .99], [.99, 1]])
    pool = make_pool([{"dense": 0.9}, {"dense": 0.8}], pair_dense=dense)
    knobs = Ranking(copy_dense_threshold=0.95, recency_weight=0.0, lexical_weight=0.0, collapse=False)
    assert ranked(pool, Filters(limit=2), knobs) == [0, 1]


def test_fusion_methods() -> None:
    dense, lexical = np.array([0.9, 0.7, 0.5]), np.array([0.0, 0.6, 0.3])
    weighted = Ranking(fusion="weighted", lexical_weight=1.0)
    # min-max: dense [1, .5, 0], lexical [0, 1, .5] -> (d + l) / 2
    np.testing.assert_allclose(fuse(dense, lexical, weighted), [0.5, 0.75, 0.25])
    rrf = fuse(dense, lexical, Ranking(fusion="rrf", lexical_weight=1.0))
    np.testing.assert_allclose(rrf, [1 / 61 + 1 / 63, 1 / 62 + 1 / 61, 1 / 63 + 1 / 62])
    np.testing.assert_allclose(fuse(dense, lexical, Ranking(fusion="blend", lexical_weight=0.5)),
                               [0.6, (0.7 + 0.3) / 1.5, (0.5 + 0.15) / 1.5])
    np.testing.assert_allclose(fuse(dense, lexical, Ranking(fusion="dense", lexical_weight=0.5)), dense)
    assert blend(0.8, 0.2, 1.0) == pytest.approx(0.5)


def test_recency_bonus_halves_each_half_life_and_undated_items_sit_at_one_half_life() -> None:
    knobs = Ranking(recency_weight=0.1, recency_half_life_days=14.0)
    ts = np.array([NOW, NOW - 14 * DAY, NOW + 28 * DAY, np.nan])
    np.testing.assert_allclose(recency(ts, NOW, knobs), [0.1, 0.05, 0.025, 0.05])


def test_the_score_shown_is_the_ranking_key() -> None:
    pool = make_pool([{"dense": 0.80, "age_days": 30}, {"dense": 0.78, "age_days": 0}])
    knobs = Ranking(lexical_weight=0.0, recency_weight=0.05, recency_half_life_days=14.0, related_floor=0.0)
    result = rank(QUERY, pool, Filters(limit=2), knobs, np.ones(2, bool))
    # 0.78 + 0.05 = 0.83 beats 0.80 + 0.05 * 0.5 ** (30 / 14) = 0.8114
    assert result.rows == [1, 0]
    assert result.scores == [pytest.approx(0.83), pytest.approx(0.80 + 0.05 * 0.5 ** (30 / 14))]


def test_replay_sees_only_items_published_before() -> None:
    pool = make_pool([{"dense": 0.9, "age_days": 1}, {"dense": 0.8, "age_days": 10}, {"dense": 0.7, "age_days": None}])
    assert ranked(pool, Filters(limit=3, published_before=NOW - 5 * DAY)) == [1]


def test_bad_filters_are_refused() -> None:
    with pytest.raises(InvalidInput, match="lang_policy"):
        Filters(limit=5, lang_policy="all")
    with pytest.raises(InvalidInput, match="limit"):
        Filters(limit=0)
    with pytest.raises(InvalidInput, match="max_age_days"):
        Filters(limit=5, max_age_days=0)
