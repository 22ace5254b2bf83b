"""``cachet.sync.Cache.cached``: a memoized function for blocking code (see ``cachet._decorator``).

Calling the wrapper is the whole hit path: the call's key, the cache's hit, the value;
a miss goes through the cache's ``get_or_insert``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from .._decorator import BoundBase, CachedBase, DecoratorBase, unwrap

if TYPE_CHECKING:
    from typing_extensions import Self

    from ._cache import Cache

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")


class CachedCallable(Protocol[P, R_co]):
    """The interface of every sync cached callable: a function, a bound method, a
    classmethod or a staticmethod, as type checkers see it."""

    @property
    def cache(self) -> Cache[Any, Any]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R_co: ...
    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable: ...


class CachedFunction(CachedBase[P, R]):
    """What ``@cache.cached()`` makes of a function: call it as the function.

    ``invalidate(*args, **kwargs)`` removes the entry those arguments would use, from
    every tier; ``cache`` is the :class:`cachet.sync.Cache` behind it; ``__wrapped__`` is
    the original function. As a method it binds like a function (see
    :class:`BoundCachedFunction`).
    """

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if kwargs or len(args) != self._nparams:
            return self._load(args, kwargs)
        entry = self.cache._hit(self._prefix + args)  # the key (name, *args)
        if entry is None:
            return self._load(args, kwargs)
        return entry.value  # type: ignore[no-any-return]

    def _load(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
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
        return self._bind(instance, owner)


class BoundCachedFunction(BoundBase[P, R]):
    """A :class:`CachedFunction` bound to an instance (or, for a classmethod, a class)."""

    __slots__ = ()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.__func__(self.__self__, *args, **kwargs)  # type: ignore[no-any-return]

    def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the entry of this call (on this instance) from every tier."""
        self.__func__.invalidate(self.__self__, *args, **kwargs)

    @property
    def cache(self) -> Cache[Any, Any]:
        """The cache behind the function."""
        return self.__func__.cache  # type: ignore[no-any-return]


CachedFunction._bound = BoundCachedFunction


class CacheDecorator(DecoratorBase):
    """What ``cachet.sync.Cache.cached(key=..., ttl=...)`` returns: apply it to a function."""

    __slots__ = ()

    @overload
    def __call__(self, fn: classmethod[Any, P, R]) -> CachedCallable[P, R]: ...
    @overload
    def __call__(self, fn: staticmethod[P, R]) -> CachedCallable[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, R]) -> CachedFunction[P, R]: ...
    def __call__(self, fn: Any) -> Any:
        func, kind = unwrap(fn)
        if inspect.iscoroutinefunction(func):
            raise TypeError(
                f"{func.__qualname__} is a coroutine function: decorate it with the cached() "
                f"of a cachet.aio.Cache (a cachet.sync.Cache would cache the coroutine object)"
            )
        return CachedFunction(self._cache, func, kind, self._key, self._ttl)
