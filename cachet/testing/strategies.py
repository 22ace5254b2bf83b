"""Hypothesis strategies for cache keys, values, entries and operation sequences.

Needs ``hypothesis`` (in the ``test`` extra). Operations are the request values of
:mod:`cachet.service` (``GetRequest``, ``InsertRequest``, ``InvalidateRequest``,
``ClearRequest``), so a sequence can be replayed against a tier, a cache, or a service::

    from hypothesis import given
    from cachet.testing import strategies as cst

    @given(cst.operation_sequences(cst.keys(max_leaves=2)))
    def test_my_tier_matches_a_dict(ops):
        ...

Keys are the kinds :mod:`cachet.serialize` encodes deterministically (``str``,
``bytes``, ``int``, finite ``float``, ``bool``, ``None`` and tuples of these): the keys
every tier, byte tiers behind ``.serialize()`` included, must accept.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

try:
    from hypothesis import strategies as st
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "cachet.testing.strategies needs hypothesis: pip install 'cachet[test]' or hypothesis"
    ) from exc

from .._core.entry import CacheEntry
from .._core.requests import (
    CacheRequest,
    ClearRequest,
    GetRequest,
    InsertRequest,
    InvalidateRequest,
)

__all__ = [
    "byte_keys",
    "byte_values",
    "entries",
    "fresh_entries",
    "keys",
    "operation_sequences",
    "operations",
    "scalar_keys",
    "timestamps",
    "ttls",
    "values",
]


def scalar_keys() -> st.SearchStrategy[Hashable]:
    """One ``str``, ``bytes``, ``int``, finite ``float``, ``bool`` or ``None``."""
    return st.one_of(
        st.text(max_size=20),
        st.binary(max_size=20),
        st.integers(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.booleans(),
        st.none(),
    )


def keys(*, max_leaves: int = 4) -> st.SearchStrategy[Hashable]:
    """Scalar keys and (nested) tuples of them, up to ``max_leaves`` scalars."""
    return st.recursive(
        scalar_keys(),
        lambda children: st.lists(children, max_size=3).map(tuple),
        max_leaves=max_leaves,
    )


def byte_keys(*, min_size: int = 1, max_size: int = 64) -> st.SearchStrategy[bytes]:
    """Keys for a byte tier (what a tier below ``.serialize()`` receives)."""
    return st.binary(min_size=min_size, max_size=max_size)


def values() -> st.SearchStrategy[Any]:
    """Picklable values: JSON-like data plus ``bytes`` and tuples (lists and dicts nest)."""
    scalars = st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
        st.text(max_size=30), st.binary(max_size=30),
    )
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.lists(children, max_size=4).map(tuple),
            st.dictionaries(st.text(max_size=10), children, max_size=4),
        ),
        max_leaves=10,
    )


def byte_values(*, max_size: int = 256) -> st.SearchStrategy[bytes]:
    """Values for a byte tier."""
    return st.binary(max_size=max_size)


def timestamps(*, min_value: float = 0.0, max_value: float = 4_102_444_800.0) -> st.SearchStrategy[float]:
    """Wall-clock seconds (by default 1970 to 2100), as ``cached_at`` holds them."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False)


def ttls(*, min_value: float = 0.001, max_value: float = 10 * 365 * 86400.0) -> st.SearchStrategy[float]:
    """Positive durations in seconds (every ttl in cachet is > 0)."""
    return st.floats(min_value=min_value, max_value=max_value, allow_nan=False, exclude_min=False)


def entries(
    value_strategy: st.SearchStrategy[Any] | None = None,
    *,
    cached_at: st.SearchStrategy[float | None] | None = None,
    ttl: st.SearchStrategy[float | None] | None = None,
) -> st.SearchStrategy[CacheEntry[Any]]:
    """``CacheEntry`` values: any value, stamped or not, with or without a ttl.

    Pass ``cached_at=`` / ``ttl=`` strategies to pin them (``st.none()`` for "unset").
    """
    return st.builds(
        CacheEntry,
        value_strategy if value_strategy is not None else values(),
        cached_at=cached_at if cached_at is not None else st.none() | timestamps(),
        ttl=ttl if ttl is not None else st.none() | ttls(),
    )


def fresh_entries(now: float, value_strategy: st.SearchStrategy[Any] | None = None,
                  *, min_ttl: float = 3600.0) -> st.SearchStrategy[CacheEntry[Any]]:
    """Entries that §2 counts fresh at ``now`` for at least ``min_ttl`` seconds.

    No ttl, or a ttl of ``min_ttl`` or more; stamped at ``now`` or earlier (an entry
    without a ttl may be any age).
    """
    no_ttl = st.builds(
        CacheEntry,
        value_strategy if value_strategy is not None else values(),
        cached_at=st.none() | timestamps(max_value=now),
        ttl=st.none(),
    )
    with_ttl = st.builds(
        CacheEntry,
        value_strategy if value_strategy is not None else values(),
        cached_at=st.just(now),
        ttl=ttls(min_value=min_ttl, max_value=max(min_ttl, 10 * 365 * 86400.0)),
    )
    return no_ttl | with_ttl


def operations(
    key_strategy: st.SearchStrategy[Hashable] | None = None,
    entry_strategy: st.SearchStrategy[CacheEntry[Any]] | None = None,
    *,
    clear_weight: int = 1,
) -> st.SearchStrategy[CacheRequest]:
    """One request: a get, insert or invalidate of a drawn key, or (rarely) a clear."""
    k = key_strategy if key_strategy is not None else keys()
    e = entry_strategy if entry_strategy is not None else entries()
    choices: list[st.SearchStrategy[CacheRequest]] = [
        st.builds(GetRequest, k),
        st.builds(GetRequest, k),
        st.builds(InsertRequest, k, e),
        st.builds(InsertRequest, k, e),
        st.builds(InvalidateRequest, k),
    ]
    choices += [st.just(ClearRequest())] * clear_weight
    return st.one_of(*choices)


def operation_sequences(
    key_strategy: st.SearchStrategy[Hashable] | None = None,
    entry_strategy: st.SearchStrategy[CacheEntry[Any]] | None = None,
    *,
    key_pool: int | None = 4,
    min_size: int = 1,
    max_size: int = 40,
) -> st.SearchStrategy[list[CacheRequest]]:
    """Lists of requests. With ``key_pool`` (default 4) each sequence draws its keys from
    a few keys chosen first, so gets, inserts and invalidates meet on the same keys."""
    if key_strategy is None:
        key_strategy = keys()
    if key_pool is None:
        return st.lists(operations(key_strategy, entry_strategy), min_size=min_size, max_size=max_size)
    pool_keys = key_strategy

    @st.composite
    def pooled(draw: st.DrawFn) -> list[CacheRequest]:
        pool = draw(st.lists(pool_keys, min_size=1, max_size=key_pool, unique=True))
        return draw(st.lists(operations(st.sampled_from(pool), entry_strategy),
                             min_size=min_size, max_size=max_size))

    return pooled()
