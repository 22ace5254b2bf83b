"""A trio program using the same cache configuration as the asyncio service.

Needs trio: ``pip install 'cachet[trio]'``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

sys.path.insert(0, str(Path(__file__).parent))
from shared_config import build_cache

loads = 0


async def fetch_profile(user: str) -> dict[str, str]:
    global loads
    loads += 1
    await trio.sleep(0.05)
    return {"user": user, "plan": "pro"}


async def main() -> None:
    results: list[dict[str, str]] = []
    async with build_cache() as cache:
        async def handle(user: str) -> None:
            entry = await cache.get_or_insert(user, lambda: fetch_profile(user))
            results.append(entry.value)

        async with trio.open_nursery() as nursery:
            for _ in range(100):
                nursery.start_soon(handle, "ada")
        print(f"trio: 100 requests, {loads} load, stats={cache.stats()['tiers']['profiles']}")
    assert results == [{"user": "ada", "plan": "pro"}] * 100


if __name__ == "__main__":
    trio.run(main)
