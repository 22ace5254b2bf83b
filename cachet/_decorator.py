"""``Cache.cached``: memoize a function through ``get_or_insert``.

The default key is ``(qualified name, *arguments)`` with keyword arguments folded into
their positions and defaults filled in, so ``f(1, b=2)``, ``f(1, 2)`` and ``f(a=1, b=2)``
share an entry. A call passing exactly the function's positional parameters (the usual
call) builds the key without ``inspect.Signature.bind``.

The wrapper is an object, not a function, so that it can be a descriptor: as a method
it binds to its instance (``obj.method.invalidate(x)`` then means what it says), and
above ``@classmethod`` / ``@staticmethod`` it binds the way those do. Its ``__call__``
is the whole hit path: build the key, ask the core's hit, return ``entry.value``. A miss
goes through the cache's ``get_or_insert``, so stampede protection, re-entrancy checks,
insert policies and telemetry are the cache's, unchanged.

Typing: ``CachedFunction[P, R]`` / ``AsyncCachedFunction[P, R]`` keep the decorated
function's parameters (``ParamSpec``) for type checkers, and their ``__get__`` drops
``self`` for methods.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Coroutine, Hashable
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from ._core.durations import Duration, to_seconds
from ._core.entry import CacheEntry

if TYPE_CHECKING:
    from typing_extensions import Self

    from .aio import Cache as AsyncCache
    from .sync import Cache as SyncCache

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")

KeyFn = Callable[..., Hashable]

__all__ = [
    "AsyncCacheDecorator",
    "AsyncCachedCallable",
    "AsyncCachedFunction",
    "BoundAsyncCachedFunction",
    "BoundCachedFunction",
    "CacheDecorator",
    "CachedCallable",
    "CachedFunction",
]

# How a wrapper binds when it is a class attribute.
_FUNCTION, _CLASSMETHOD, _STATICMETHOD = "function", "classmethod", "staticmethod"


def _unwrap(fn: Any) -> tuple[Callable[..., Any], str]:
    if isinstance(fn, classmethod):
        return fn.__func__, _CLASSMETHOD
    if isinstance(fn, staticmethod):
        return fn.__func__, _STATICMETHOD
    if not callable(fn):
        raise TypeError(f"cached() decorates a function, not {type(fn).__name__}")
    return fn, _FUNCTION


class _KeyMaker:
    """Builds the key of a call when it is not the common all-positional one."""

    __slots__ = ("custom", "name", "nparams", "sig")

    def __init__(self, fn: Callable[..., Any], custom: KeyFn | None) -> None:
        self.name = f"{fn.__module__}.{fn.__qualname__}"
        self.custom = custom
        self.sig = inspect.signature(fn)
        simple = all(p.kind is p.POSITIONAL_OR_KEYWORD for p in self.sig.parameters.values())
        # -1 turns the fast path off: a custom key, or parameters that are not all plain.
        self.nparams = len(self.sig.parameters) if simple and custom is None else -1

    def __call__(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        if self.custom is not None:
            return self.custom(*args, **kwargs)
        if not kwargs and len(args) == self.nparams:
            return (self.name, *args)
        bound = self.sig.bind(*args, **kwargs)
        bound.apply_defaults()
        parts: list[Any] = [self.name]
        params = self.sig.parameters
        for name, value in bound.arguments.items():
            kind = params[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD:
                parts.append(tuple(sorted(value.items())))
            elif kind is inspect.Parameter.KEYWORD_ONLY:
                parts.append((name, value))
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                parts.extend(value)
            else:
                parts.append(value)
        return tuple(parts)

    def unhashable(self, key: Any, exc: TypeError) -> TypeError:
        try:
            hash(key)
        except TypeError:
            how = "the key returned by key=... is" if self.custom is not None else "its arguments are"
            return TypeError(
                f"cannot cache {self.name}: {how} not hashable ({exc}); pass "
                f"key=... to cached() to build a hashable key from the arguments"
            )
        return exc


def _entry_of(ttl: float | None) -> Callable[[Any], Any]:
    """What a load makes of the function's result: the value as it is (wrapped only if
    it is itself a ``CacheEntry``, so that it comes back unchanged), or an entry with
    the decorator's ttl."""
    if ttl is None:
        return _as_value
    return lambda value: CacheEntry.expires_after(value, ttl)


def _as_value(value: Any) -> Any:
    return CacheEntry(value) if isinstance(value, CacheEntry) else value


class CachedCallable(Protocol[P, R_co]):
    """The interface of every sync cached callable: a function, a bound method, a
    classmethod or a staticmethod, as type checkers see it."""

    @property
    def cache(self) -> SyncCache[Any, Any]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable: ...


class AsyncCachedCallable(Protocol[P, R_co]):
    """The interface of every async cached callable, as type checkers see it."""

    @property
    def cache(self) -> AsyncCache[Any, Any]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...
    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable: ...


class _Base(Generic[P, R]):
    cache: Any
    __wrapped__: Callable[..., Any]

    def __init__(self, cache: Any, fn: Callable[..., Any], kind: str, key: KeyFn | None,
                 ttl: float | None) -> None:
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]  # an object, not a function
        self.cache = cache
        self._fn = fn
        self._kind = kind
        self._keys = _KeyMaker(fn, key)
        self._name = self._keys.name
        self._nparams = self._keys.nparams
        self._entry = _entry_of(ttl)
        self._install_fast_call()

    def _install_fast_call(self) -> None:
        """Make calling this object the core's one-frame hit (``Core.make_call``): the
        call's key built and looked up in the primary tier, the value returned, anything
        else handed to ``_slow``. A per-function subclass carries it, since Python looks
        ``__call__`` up on the type."""
        core = getattr(self.cache, "_core", None)
        if core is None:
            return
        if self._nparams < 0:  # a custom key function, or parameters beyond plain ones
            return
        is_async = isinstance(self, AsyncCachedFunction)
        fast = core.make_call(self._name, self._fn, self._slow, is_async)  # type: ignore[attr-defined]
        if fast is not None:
            cls = type(self)
            self.__class__ = type(cls.__name__, (cls,), {
                "__call__": staticmethod(fast), "__module__": cls.__module__,
                "__qualname__": cls.__qualname__})

    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable:
        """The cache key these arguments map to (what ``cache.get(...)`` would take)."""
        key = self._keys(args, kwargs)
        try:
            hash(key)
        except TypeError as exc:
            raise self._keys.unhashable(key, exc) from None
        return key

    def _checked_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        """The call's key; a ``TypeError`` that says what to do if it is not hashable."""
        key = self._keys(args, kwargs) if kwargs or len(args) != self._nparams else (self._name, *args)
        try:
            hash(key)
        except TypeError as exc:
            raise self._keys.unhashable(key, exc) from None
        return key

    def __repr__(self) -> str:
        return f"<cached {self._name} of {self.cache!r}>"


class CachedFunction(_Base[P, R]):
    """What ``@cache.cached()`` makes of a function: call it as the function.

    ``invalidate(*args, **kwargs)`` removes the entry those arguments would use, from
    every tier; ``cache`` is the :class:`cachet.sync.Cache` behind it; ``__wrapped__`` is
    the original function. As a method it binds like a function (see
    :class:`BoundCachedFunction`).
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._slow(args, kwargs)  # replaced by the core's one-frame hit where it can

    def _slow(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        key = self._checked_key(args, kwargs)  # get_or_insert looks the key up itself
        fn, make = self._fn, self._entry
        entry = self.cache.get_or_insert(key, lambda: make(fn(*args, **kwargs)))
        return entry.value  # type: ignore[no-any-return]

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the entry of this call from every tier of the cache."""
        self.cache.invalidate(self.key(*args, **kwargs))

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self: CachedFunction[Concatenate[S, P2], R], instance: S,
                owner: type[Any] | None = None) -> BoundCachedFunction[P2, R]: ...
    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        if self._kind is _FUNCTION:
            return self if instance is None else BoundCachedFunction(self, instance)
        if self._kind is _CLASSMETHOD:
            return BoundCachedFunction(self, owner if owner is not None else type(instance))
        return self


class BoundCachedFunction(Generic[P, R]):
    """A :class:`CachedFunction` bound to an instance (or, for a classmethod, a class)."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, func: CachedFunction[..., R], obj: object) -> None:
        self.__func__ = func
        self.__self__ = obj

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__func__(self.__self__, *args, **kwargs)

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the entry of this call (on this instance) from every tier."""
        self.__func__.invalidate(self.__self__, *args, **kwargs)

    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable:
        """The cache key of this call on this instance."""
        return self.__func__.key(self.__self__, *args, **kwargs)

    @property
    def cache(self) -> SyncCache[Any, Any]:
        """The cache behind the function."""
        return self.__func__.cache  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<bound {self.__func__!r} of {self.__self__!r}>"


class AsyncCachedFunction(_Base[P, R]):
    """What ``@cache.cached()`` of a :class:`cachet.aio.Cache` makes of a coroutine function.

    Await it as the function. ``await invalidate(*args, **kwargs)`` removes the entry
    those arguments would use; ``cache`` is the cache behind it.
    """

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._slow(args, kwargs)  # replaced by the core's one-frame hit where it can

    async def _slow(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
        key = self._checked_key(args, kwargs)  # get_or_insert looks the key up itself
        fn, make = self._fn, self._entry

        async def load() -> Any:
            return make(await fn(*args, **kwargs))

        entry = await self.cache.get_or_insert(key, load)
        return entry.value  # type: ignore[no-any-return]

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the entry of this call from every tier of the cache."""
        await self.cache.invalidate(self.key(*args, **kwargs))

    @overload
    def __get__(self, instance: None, owner: type[Any] | None = None) -> Self: ...
    @overload
    def __get__(self: AsyncCachedFunction[Concatenate[S, P2], R], instance: S,
                owner: type[Any] | None = None) -> BoundAsyncCachedFunction[P2, R]: ...
    def __get__(self, instance: Any, owner: type[Any] | None = None) -> Any:
        if self._kind is _FUNCTION:
            return self if instance is None else BoundAsyncCachedFunction(self, instance)
        if self._kind is _CLASSMETHOD:
            return BoundAsyncCachedFunction(self, owner if owner is not None else type(instance))
        return self


class BoundAsyncCachedFunction(Generic[P, R]):
    """An :class:`AsyncCachedFunction` bound to an instance (or a class)."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, func: AsyncCachedFunction[..., R], obj: object) -> None:
        self.__func__ = func
        self.__self__ = obj

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return self.__func__(self.__self__, *args, **kwargs)

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the entry of this call (on this instance) from every tier."""
        await self.__func__.invalidate(self.__self__, *args, **kwargs)

    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable:
        """The cache key of this call on this instance."""
        return self.__func__.key(self.__self__, *args, **kwargs)

    @property
    def cache(self) -> AsyncCache[Any, Any]:
        """The cache behind the function."""
        return self.__func__.cache  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<bound {self.__func__!r} of {self.__self__!r}>"


class CacheDecorator:
    """What ``cachet.sync.Cache.cached(key=..., ttl=...)`` returns: apply it to a function."""

    __slots__ = ("_cache", "_key", "_ttl")

    def __init__(self, cache: Any, key: KeyFn | None, ttl: float | None) -> None:
        self._cache, self._key, self._ttl = cache, key, ttl

    @overload
    def __call__(self, fn: classmethod[Any, P, R]) -> CachedCallable[P, R]: ...
    @overload
    def __call__(self, fn: staticmethod[P, R]) -> CachedCallable[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, R]) -> CachedFunction[P, R]: ...
    def __call__(self, fn: Any) -> Any:
        func, kind = _unwrap(fn)
        if inspect.iscoroutinefunction(func):
            raise TypeError(
                f"{func.__qualname__} is a coroutine function: decorate it with the cached() "
                f"of a cachet.aio.Cache (a cachet.sync.Cache would cache the coroutine object)"
            )
        return CachedFunction(self._cache, func, kind, self._key, self._ttl)


class AsyncCacheDecorator:
    """What ``cachet.aio.Cache.cached(key=..., ttl=...)`` returns: apply it to a coroutine function."""

    __slots__ = ("_cache", "_key", "_ttl")

    def __init__(self, cache: Any, key: KeyFn | None, ttl: float | None) -> None:
        self._cache, self._key, self._ttl = cache, key, ttl

    @overload
    def __call__(
        self, fn: classmethod[Any, P, Coroutine[Any, Any, R]]
    ) -> AsyncCachedCallable[P, R]: ...
    @overload
    def __call__(self, fn: staticmethod[P, Coroutine[Any, Any, R]]) -> AsyncCachedCallable[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> AsyncCachedFunction[P, R]: ...
    def __call__(self, fn: Any) -> Any:
        func, kind = _unwrap(fn)
        if not inspect.iscoroutinefunction(func):
            raise TypeError(
                f"{getattr(func, '__qualname__', func)!r} is not a coroutine function: decorate it "
                f"with the cached() of a cachet.sync.Cache, or make it `async def`"
            )
        return AsyncCachedFunction(self._cache, func, kind, self._key, self._ttl)


def _seconds(ttl: Duration | None) -> float | None:
    return None if ttl is None else to_seconds(ttl, "cached(ttl=...)")


def make_sync_decorator(cache: Any, *, key: KeyFn | None, ttl: Duration | None) -> CacheDecorator:
    """The decorator behind ``cachet.sync.Cache.cached``."""
    if key is not None and not callable(key):
        raise TypeError(f"cached(key=...) must be a callable building a key, not {type(key).__name__}")
    return CacheDecorator(cache, key, _seconds(ttl))


def make_async_decorator(cache: Any, *, key: KeyFn | None, ttl: Duration | None) -> AsyncCacheDecorator:
    """The decorator behind ``cachet.aio.Cache.cached``."""
    if key is not None and not callable(key):
        raise TypeError(f"cached(key=...) must be a callable building a key, not {type(key).__name__}")
    return AsyncCacheDecorator(cache, key, _seconds(ttl))
