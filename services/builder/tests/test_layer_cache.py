"""Layer caches: one per repository, least recently used evicted first past the cap."""

from __future__ import annotations

import os

from sage_builder.cache import LayerCache, cache_key


def test_cache_key_ignores_credentials_case_and_dot_git():
    assert cache_key("https://github.com/Org/App.git") == cache_key("https://github.com/org/app/")
    assert cache_key("https://user:pw@github.com/org/app") == cache_key(
        "https://github.com/org/app"
    )
    assert cache_key("https://github.com/org/app") != cache_key("https://github.com/org/other")


def test_tenants_building_the_same_url_get_separate_caches():
    url = "https://github.com/org/app"
    assert cache_key(url, "alice") != cache_key(url, "mallory")
    assert cache_key(url, "alice") == cache_key(url.upper() + ".git", "alice")


def fill(path, size: int, used: float) -> None:
    (path / "blob").write_bytes(b"x" * size)
    os.utime(path / ".last-used", (used, used))


async def test_oldest_caches_go_first_until_the_total_fits(tmp_path):
    cache = LayerCache(tmp_path, max_bytes=2500)
    paths = {}
    for i, url in enumerate(["https://h/a", "https://h/b", "https://h/c"]):
        async with cache.use(url) as path:
            paths[url] = path
        fill(path, 1000, used=1000 + i)
    removed = await cache.evict()
    assert removed == [paths["https://h/a"].name]
    assert not paths["https://h/a"].exists()
    assert paths["https://h/b"].exists() and paths["https://h/c"].exists()


async def test_a_cache_in_use_is_never_evicted(tmp_path):
    cache = LayerCache(tmp_path, max_bytes=10)
    async with cache.use("https://h/busy") as busy:
        fill(busy, 1000, used=1)
        async with cache.use("https://h/idle") as idle:
            fill(idle, 1000, used=2)
        # `idle` was evicted on its release; `busy`, older but held, stays.
        assert not idle.exists()
        assert busy.exists()
        assert await cache.evict() == []
    assert not busy.exists()


async def test_the_last_user_leaving_tidies_the_cache_once(tmp_path):
    tidied = []

    async def tidy(path):
        tidied.append(path.name)

    cache = LayerCache(tmp_path, max_bytes=10**9, on_idle=tidy)
    async with cache.use("https://h/a") as outer:
        async with cache.use("https://h/a"):
            pass
        assert tidied == []
    assert tidied == [outer.name]
