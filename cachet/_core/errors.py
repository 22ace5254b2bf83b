"""The exception tree. Everything cachet raises derives from :class:`CacheError`.

    CacheError
    ├── TierError            a tier operation failed (``.tier`` names it; cause chained)
    ├── LoaderError          a ``try_get_or_insert`` factory raised (cause chained)
    ├── LoaderTimeout        a load outlasted its hard timeout (also a ``TimeoutError``)
    ├── ReentrantLoadError   a load asked the same cache for the same key
    ├── UnsupportedError     the tier cannot do this (``len`` on a tier that cannot count)
    └── SerializationError   a value or key could not be encoded
"""

from __future__ import annotations


class CacheError(Exception):
    """Root of every error cachet raises."""


class TierError(CacheError):
    """A tier operation failed; ``tier`` is the tier's name, the original is ``__cause__``."""

    def __init__(self, tier: str, operation: str, message: str | None = None) -> None:
        self.tier = tier
        self.operation = operation
        super().__init__(message or f"tier {tier!r} failed during {operation}")


class LoaderError(CacheError):
    """A factory passed to ``try_get_or_insert`` raised; the original is ``__cause__``."""


class LoaderTimeout(CacheError, TimeoutError):
    """A load did not finish within the cache's hard loader timeout. The load goes on in
    the background, and its result is still cached when it arrives."""


class ReentrantLoadError(CacheError):
    """A factory asked the same cache to load the key it is loading (this would deadlock)."""


class UnsupportedError(CacheError):
    """The operation is not supported by this tier (for example ``len``)."""


class SerializationError(CacheError):
    """A key or value could not be encoded."""


class DecodeError(SerializationError):
    """A payload or stored record could not be decoded (empty, wrong version or codec,
    corrupt, badly signed, a stamp no cache wrote).

    Raised by :meth:`cachet.serialize.Serializer.loads` and by a byte tier's ``get_row``
    for a record it did not write; an encoded tier turns it into a miss, counts it in
    ``decode_errors`` and passes it to its ``on_decode_error`` hook instead of raising it.
    """

