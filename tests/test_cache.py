"""The in-process response cache: expiry, builds, LRU bound, targeted invalidation, ETag comparison."""

from __future__ import annotations

from recsys.cache import Entry, ResponseCache, etag_matches, make_etag


def entry(*ids: str, build: str = "b1") -> Entry:
    return Entry(b"{}", "application/json", '"tag"', build, frozenset(ids))


def test_entries_expire_and_belong_to_one_build() -> None:
    now = [0.0]
    cache = ResponseCache(max_entries=10, ttl=60, clock=lambda: now[0])
    cache.put("k", entry("a"), cache.token())
    assert cache.get("k", "b1") is not None and cache.get("k", "b2") is None  # another build: dropped
    cache.put("k", entry("a"), cache.token())
    now[0] = 59.9
    assert cache.get("k", "b1") is not None
    now[0] = 60.0
    assert cache.get("k", "b1") is None and len(cache) == 0
    assert (cache.hits, cache.misses) == (2, 2)


def test_invalidation_drops_only_entries_that_show_the_article() -> None:
    cache = ResponseCache(max_entries=10, ttl=60)
    for key, ids in {"q1": ("q1", "x", "y"), "q2": ("q2", "y"), "q3": ("q3", "z")}.items():
        cache.put(key, entry(*ids), cache.token())
    assert cache.invalidate(["y"]) == 2 and len(cache) == 1 and cache.get("q3", "b1") is not None
    assert cache.invalidate(["q3"]) == 1 and cache.invalidate(["nothing"]) == 0 and len(cache) == 0


def test_answers_computed_across_an_invalidation_are_not_kept() -> None:
    cache = ResponseCache(max_entries=10, ttl=60)
    token = cache.token()  # a request starts computing...
    cache.invalidate(["a"])  # ...while an article changes
    cache.put("k", entry("a"), token)
    assert len(cache) == 0
    cache.put("k", entry("a"), cache.token())
    assert len(cache) == 1


def test_least_recently_used_entries_go_first() -> None:
    cache = ResponseCache(max_entries=2, ttl=60)
    cache.put("old", entry("a"), cache.token())
    cache.put("mid", entry("b"), cache.token())
    cache.get("old", "b1")
    cache.put("new", entry("c"), cache.token())
    assert cache.get("mid", "b1") is None and cache.get("old", "b1") and cache.get("new", "b1")
    assert cache.invalidate(["b"]) == 0  # its reverse-map entry went with it
    assert len(ResponseCache(max_entries=0, ttl=60)) == 0


def test_etag_is_a_digest_of_the_representation() -> None:
    body = b'{"article_id":"q","items":[{"id":"i","source":"A","score":0.5}],"index_build":"b1"}'
    base = make_etag(body, "application/json")
    assert base == make_etag(body, "application/json") and base.startswith('"') and len(base) == 34
    changed = [make_etag(body.replace(b"b1", b"b2"), "application/json"),  # another index build
               make_etag(body.replace(b'"A"', b'"B"'), "application/json"),  # an item's shown state
               make_etag(body.replace(b"0.5", b"0.4"), "application/json"),  # its score
               make_etag(body, "text/html; charset=utf-8")]  # another representation
    assert len({base, *changed}) == 5


def test_if_none_match_comparison() -> None:
    assert etag_matches('"abc"', '"abc"') and etag_matches('W/"abc"', '"abc"')
    assert etag_matches('"x", "abc"', '"abc"') and etag_matches("*", '"abc"')
    assert not etag_matches('"abcd"', '"abc"') and not etag_matches(None, '"abc"') and not etag_matches("", '"abc"')


def test_the_byte_bound_evicts_least_recently_used_and_keeps_the_sum_exact() -> None:
    body = b"x" * 1000
    one = 1000 + 256 + 64 * 2  # entry_cost of a 1,000-byte body naming two articles
    cache = ResponseCache(max_entries=100, ttl=60, max_bytes=3 * one)
    for i in range(3):
        cache.put(f"k{i}", Entry(body, "application/json", f'"{i}"', "b", frozenset({f"a{i}", "z"})), cache.token())
    assert len(cache) == 3 and cache.bytes == 3 * one
    cache.get("k0", "b")  # k0 is used again, so k1 is now the least recently used
    cache.put("k3", Entry(body, "application/json", '"3"', "b", frozenset({"a3", "z"})), cache.token())
    assert [cache.get(f"k{i}", "b") is not None for i in range(4)] == [True, False, True, True]
    assert cache.bytes == 3 * one
    cache.invalidate(["z"])
    assert len(cache) == 0 and cache.bytes == 0
    big = Entry(b"y" * 10_000, "application/json", '"b"', "b", frozenset())
    assert cache.put("big", big, cache.token()).body == big.body and len(cache) == 0  # over the bound alone: not kept

