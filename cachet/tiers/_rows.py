"""A byte tier's rows: ``(value, cached_at, ttl)`` tuples, read by the serialization
boundary (``get_row``, ``get_rows``) so that it builds one entry per read, not two.

``get_rows(keys)`` answers each key, in order, with its row, ``None``, or the
``DecodeError`` of a record the tier did not write, in its place (not raised: the other
keys' answers stand); the tier's ``get_many`` is the same as entries.
"""

from __future__ import annotations

from typing import Any

from .._core.entry import CacheEntry


def entries(rows: list[Any]) -> list[CacheEntry[bytes] | None]:
    """``get_many`` from ``get_rows``: a record the tier did not write reads as a miss."""
    return [CacheEntry(*row) if type(row) is tuple else None for row in rows]
