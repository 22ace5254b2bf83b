from __future__ import annotations

import pytest

pytestmark = pytest.mark.anyio


async def test_insert_then_get(frontend, clock) -> None:
    cache = frontend.builder(clock).memory(10).ttl(5).build()
    async with frontend.open(cache) as c:
        assert await c.get("k") is None
        await c.insert("k", 1)
        entry = await c.get("k")
        assert entry is not None and entry.value == 1 and entry.cached_at == clock.now()
        clock.advance(5)
        assert (await c.get("k")).value == 1
        clock.advance(0.001)
        assert await c.get("k") is None


async def test_backend_only(anyio_backend) -> None:
    import sniffio

    assert sniffio.current_async_library() == anyio_backend
