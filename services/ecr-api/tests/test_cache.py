"""The listing cache: bounded, emptied on change, never keeping a page computed across a change."""

from __future__ import annotations

from sage_ecr.cache import ListingCache


def enabled(**kw) -> ListingCache:
    cache = ListingCache(**kw)
    cache.enabled = True
    return cache


def test_a_page_is_served_until_the_catalogue_changes():
    cache = enabled()
    cache.put("k", cache.generation, b"page")
    assert cache.get("k") == b"page"
    cache.invalidate()
    assert cache.get("k") is None


def test_a_page_computed_while_the_catalogue_changed_is_not_kept():
    cache = enabled()
    started = cache.generation
    cache.invalidate()  # a NOTIFY (or a local write) lands while the page is being computed
    cache.put("k", started, b"stale")
    assert cache.get("k") is None


def test_nothing_is_cached_while_disabled():
    cache = ListingCache()
    cache.put("k", cache.generation, b"page")
    assert cache.get("k") is None and len(cache) == 0


def test_entries_and_bytes_are_bounded_least_recently_used_first():
    cache = enabled(max_entries=2, max_bytes=800)
    for key in ("a", "b"):
        cache.put(key, cache.generation, b"x" * 100)
    cache.get("a")
    cache.put("c", cache.generation, b"x" * 100)
    assert cache.get("b") is None and cache.get("a") and cache.get("c")
    cache.put("big", cache.generation, b"x" * 200)  # over an eighth of the budget: not kept
    assert cache.get("big") is None
