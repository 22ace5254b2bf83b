"""One cache configuration, used unchanged by the asyncio service and the trio program."""

from __future__ import annotations

from cachet import AsyncCache


def build_cache() -> AsyncCache[str, dict[str, str]]:
    """Memory L1 with a TTL, refresh before expiry, stampede protection."""
    return (
        AsyncCache.builder()
        .name("profiles")
        .memory(10_000)
        .ttl(60)
        .time_to_refresh(45)
        .fallback(AsyncCache.builder().name("profiles-l2").memory(100_000).ttl(3600))
        .stampede_protection()
        .build()
    )
