"""An asyncio service: many concurrent requests for the same profile load it once."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from shared_config import build_cache

loads = 0


async def fetch_profile(user: str) -> dict[str, str]:
    """The slow backend."""
    global loads
    loads += 1
    await asyncio.sleep(0.05)
    return {"user": user, "plan": "pro"}


async def handle_request(cache: object, user: str) -> dict[str, str]:
    entry = await cache.get_or_insert(user, lambda: fetch_profile(user))  # type: ignore[attr-defined]
    return entry.value  # type: ignore[no-any-return]


async def main() -> None:
    async with build_cache() as cache:
        results = await asyncio.gather(*(handle_request(cache, "ada") for _ in range(100)))
        assert all(r == {"user": "ada", "plan": "pro"} for r in results)
        print(f"asyncio: 100 requests, {loads} load, stats={cache.stats()['tiers']['profiles']}")


if __name__ == "__main__":
    asyncio.run(main())
