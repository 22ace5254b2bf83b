"""``@cache.cached()`` on a blocking function, a method, and a coroutine function
(run on asyncio and on trio), with a ManualClock to show the TTL.

The trio run needs trio: ``pip install 'cachet[trio]'``.
"""

from __future__ import annotations

import anyio

from cachet import AsyncCache, Cache, ManualClock

clock = ManualClock(1_000_000.0)
calls: list[str] = []

cache: Cache[object, object] = Cache.builder(clock).memory(1000).ttl(600).stampede_protection().build()


@cache.cached(ttl=60)
def exchange_rate(currency: str, *, source: str = "ecb") -> float:
    """A slow lookup: counted so that we can see when it really runs."""
    calls.append(f"rate {currency} {source}")
    return {"EUR": 1.0, "USD": 1.08}[currency]


class Catalogue:
    def __init__(self, shop: str) -> None:
        self.shop = shop

    @cache.cached()
    def price(self, sku: str, quantity: int = 1) -> int:
        calls.append(f"price {self.shop} {sku}")
        return 250 * quantity


acache: AsyncCache[object, object] = AsyncCache.builder(clock).memory(1000).ttl(600).stampede_protection().build()


@acache.cached()
async def fetch_profile(user_id: int) -> dict[str, object]:
    calls.append(f"profile {user_id}")
    await anyio.sleep(0)  # stands for network I/O
    return {"id": user_id, "plan": "pro"}


def run_sync() -> None:
    assert exchange_rate("USD") == 1.08
    assert exchange_rate("USD", source="ecb") == 1.08  # same arguments, same entry
    clock.advance(60)
    assert exchange_rate("USD") == 1.08  # 60 s old: still fresh (expired means older than ttl)
    clock.advance(1)
    assert exchange_rate("USD") == 1.08  # expired: looked up again
    assert calls.count("rate USD ecb") == 2

    a, b = Catalogue("a"), Catalogue("b")
    assert a.price("sku-1") == a.price("sku-1", quantity=1) == 250
    assert b.price("sku-1") == 250  # another instance, another entry
    a.price.invalidate("sku-1")
    assert a.price("sku-1") == 250
    assert calls.count("price a sku-1") == 2 and calls.count("price b sku-1") == 1


async def run_async() -> None:
    async with acache:
        async with anyio.create_task_group() as tg:
            for _ in range(10):  # ten concurrent callers, one fetch (stampede protection)
                tg.start_soon(fetch_profile, 7)
        assert (await fetch_profile(7))["plan"] == "pro"
        assert calls.count("profile 7") == 1
        await fetch_profile.invalidate(7)
        await fetch_profile(7)
        assert calls.count("profile 7") == 2


def main(backend: str = "asyncio") -> list[str]:
    run_sync()
    anyio.run(run_async, backend=backend)
    print("\n".join(calls))
    return calls


if __name__ == "__main__":
    main()
