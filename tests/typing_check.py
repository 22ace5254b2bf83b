"""Checked by ``mypy --strict`` (tox -e type), never run: ``@cache.cached()`` keeps signatures.

(mypy types a decorator stacked on ``@classmethod`` / ``@staticmethod`` as if they were
absent, so those forms are checked at run time only, in ``test_decorator.py``.)

``assert_type`` fails type-checking when a type is lost to ``Any``, so this file fails if
the decorator stopped carrying a function's parameters or result type.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from typing_extensions import assert_type

import cachet
import cachet.testing
import cachet.tiers

cache: cachet.Cache[Any, Any] = cachet.Cache.builder().memory(100).build()
acache: cachet.AsyncCache[Any, Any] = cachet.AsyncCache.builder().memory(100).build()


@cache.cached(ttl=60)
def area(width: int, height: int = 2) -> float:
    return width * height / 2


assert_type(area(3), float)
assert_type(area(3, height=4), float)
assert_type(area.invalidate(3, height=4), None)
assert_type(area.key(3), Hashable)
assert_type(area.cache, Any)
x: float = area(width=3)


@cache.cached(key=lambda user_id, verbose=False: user_id)
def profile(user_id: str, *, verbose: bool = False) -> dict[str, str]:
    return {"id": user_id}


assert_type(profile("u1", verbose=True), dict[str, str])


class Repo:
    @cache.cached()
    def find(self, ident: int, suffix: str = "") -> str:
        return f"{ident}{suffix}"


repo = Repo()
assert_type(repo.find(1), str)
assert_type(repo.find(1, suffix="!"), str)
assert_type(repo.find.invalidate(1), None)
assert_type(Repo.find(repo, 1), str)  # through the class, self is explicit
assert_type(repo.find.cache, cachet.Cache[Any, Any])


@acache.cached(ttl=60)
async def fetch(url: str, retries: int = 3) -> bytes:
    return url.encode()


class Client:
    @acache.cached()
    async def get(self, path: str) -> list[str]:
        return [path]


async def use() -> None:
    body: bytes = await fetch("https://example.org", retries=1)
    assert_type(body, bytes)
    await fetch.invalidate("https://example.org")
    client = Client()
    assert_type(await client.get("/"), list[str])
    await client.get.invalidate("/")
    assert_type(await Client.get(client, "/"), list[str])
    assert_type(client.get.key("/"), Hashable)


# The built-in tiers satisfy the tier protocols (byte tiers take bytes keys).
memory_tier: cachet.tiers.Tier[Hashable] = cachet.tiers.MemoryTier(10)
sqlite_tier: cachet.tiers.Tier[bytes] = cachet.tiers.SQLiteTier(":memory:")
mock_tier: cachet.tiers.Tier[Hashable] = cachet.testing.MockTier()
with_tiers = cachet.Cache.builder().storage(memory_tier).fallback(sqlite_tier).build()


# The framework operations keep the cache's types.
typed: cachet.Cache[str, int] = cachet.Cache.builder().memory(100).build()
assert_type(typed.add("k", 1, ttl=5), bool)
assert_type(typed.touch("k", 5), bool)
assert_type(typed.delete("k"), bool)
assert_type(typed.get_many(["k"]), dict[str, cachet.CacheEntry[int]])
assert_type(typed.insert_many({"k": 1}, ttl=0), dict[str, cachet.InsertOutcome])
assert_type(typed.invalidate_many(["k"]), None)
