"""``Cache.cached``: memoize a function through ``get_or_insert``.

The key is ``(qualified name, *arguments)`` with keyword arguments folded into their
positions and defaults filled in, so ``f(1, b=2)`` and ``f(1, 2)`` share an entry. A
call passing exactly the function's positional parameters takes a fast path that
skips ``inspect.Signature.bind``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable
from typing import Any

from ._core.durations import to_seconds
from ._core.entry import CacheEntry

KeyFn = Callable[..., Hashable]


class _KeyMaker:
    __slots__ = ("custom", "name", "nparams", "sig")

    def __init__(self, fn: Callable[..., Any], custom: KeyFn | None) -> None:
        self.name = f"{fn.__module__}.{fn.__qualname__}"
        self.custom = custom
        self.sig = inspect.signature(fn)
        simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in self.sig.parameters.values())
        self.nparams = len(self.sig.parameters) if simple else -1

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        if self.custom is not None:
            key = self.custom(*args, **kwargs)
        elif not kwargs and len(args) == self.nparams:
            key = (self.name, *args)
        else:
            bound = self.sig.bind(*args, **kwargs)
            bound.apply_defaults()
            parts: list[Any] = [self.name]
            for name, value in bound.arguments.items():
                kind = self.sig.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    parts.append(tuple(sorted(value.items())))
                elif kind is inspect.Parameter.KEYWORD_ONLY:
                    parts.append((name, value))
                else:
                    parts.append(value)
            key = tuple(parts)
        try:
            hash(key)
        except TypeError as exc:
            raise TypeError(
                f"cannot cache {self.name}: its arguments are not hashable ({exc}); pass "
                f"key=... to cached() to build a hashable key from them"
            ) from None
        return key


def _wrap_result(ttl: float | None) -> Callable[[Any], Any]:
    if ttl is None:
        return lambda value: value
    return lambda value: CacheEntry.expires_after(value, ttl)


def make_sync_decorator(cache: Any, *, key: KeyFn | None, ttl: Any) -> Callable[[Any], Any]:
    seconds = None if ttl is None else to_seconds(ttl, "cached(ttl=...)")
    wrap = _wrap_result(seconds)

    def decorator(fn: Callable[..., Any]) -> Any:
        if inspect.iscoroutinefunction(fn):
            raise TypeError(f"{fn.__qualname__} is a coroutine function: use cachet.aio.Cache.cached")
        make_key = _KeyMaker(fn, key)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = make_key(args, kwargs)
            entry = cache._hit(k)
            if entry is None:
                entry = cache.get_or_insert(k, lambda: wrap(fn(*args, **kwargs)))
            return entry.value

        def invalidate(*args: Any, **kwargs: Any) -> None:
            cache.invalidate(make_key(args, kwargs))

        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.cache = cache  # type: ignore[attr-defined]
        return wrapper

    return decorator


def make_async_decorator(cache: Any, *, key: KeyFn | None, ttl: Any) -> Callable[[Any], Any]:
    seconds = None if ttl is None else to_seconds(ttl, "cached(ttl=...)")
    wrap = _wrap_result(seconds)

    def decorator(fn: Callable[..., Any]) -> Any:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError(f"{fn.__qualname__} is not a coroutine function: use cachet.sync.Cache.cached")
        make_key = _KeyMaker(fn, key)

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            k = make_key(args, kwargs)
            entry = cache._hit(k)
            if entry is None:
                async def load() -> Any:
                    return wrap(await fn(*args, **kwargs))

                entry = await cache.get_or_insert(k, load)
            return entry.value

        async def invalidate(*args: Any, **kwargs: Any) -> None:
            await cache.invalidate(make_key(args, kwargs))

        wrapper.invalidate = invalidate  # type: ignore[attr-defined]
        wrapper.cache = cache  # type: ignore[attr-defined]
        return wrapper

    return decorator
