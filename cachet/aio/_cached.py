"""``cachet.aio.Cache.cached``: a memoized coroutine function (see ``cachet._decorator``).

Awaiting the wrapper is the whole hit path: the call's key, the cache's hit, the value;
a miss goes through the cache's ``get_or_insert``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine, Hashable
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


class AsyncCachedCallable(Protocol[P, R_co]):
    """The interface of every async cached callable, as type checkers see it."""

    @property
    def cache(self) -> Cache[Any, Any]: ...
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R_co]: ...
    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None: ...
    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable: ...


class AsyncCachedFunction(CachedBase[P, R]):
    """What ``@cache.cached()`` of a :class:`cachet.aio.Cache` makes of a coroutine function.

    Await it as the function. ``await invalidate(*args, **kwargs)`` removes the entry
    those arguments would use; ``cache`` is the cache behind it.
    """

    async def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        if kwargs or len(args) != self._nparams:
            return await self._load(args, kwargs)
        entry = self.cache._hit(self._prefix + args)  # the key (name, *args)
        if entry is None:
            return await self._load(args, kwargs)
        return entry.value  # type: ignore[no-any-return]

    async def _load(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> R:
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
        return self._bind(instance, owner)


class BoundAsyncCachedFunction(BoundBase[P, R]):
    """An :class:`AsyncCachedFunction` bound to an instance (or a class)."""

    __slots__ = ()

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Coroutine[Any, Any, R]:
        return self.__func__(self.__self__, *args, **kwargs)  # type: ignore[no-any-return]

    async def invalidate(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Remove the entry of this call (on this instance) from every tier."""
        await self.__func__.invalidate(self.__self__, *args, **kwargs)

    @property
    def cache(self) -> Cache[Any, Any]:
        """The cache behind the function."""
        return self.__func__.cache  # type: ignore[no-any-return]


AsyncCachedFunction._bound = BoundAsyncCachedFunction


class AsyncCacheDecorator(DecoratorBase):
    """What ``cachet.aio.Cache.cached(key=..., ttl=...)`` returns: apply it to a coroutine function."""

    __slots__ = ()

    @overload
    def __call__(
        self, fn: classmethod[Any, P, Coroutine[Any, Any, R]]
    ) -> AsyncCachedCallable[P, R]: ...
    @overload
    def __call__(self, fn: staticmethod[P, Coroutine[Any, Any, R]]) -> AsyncCachedCallable[P, R]: ...  # type: ignore[overload-overlap]
    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, R]]) -> AsyncCachedFunction[P, R]: ...
    def __call__(self, fn: Any) -> Any:
        func, kind = unwrap(fn)
        if not inspect.iscoroutinefunction(func):
            raise TypeError(
                f"{getattr(func, '__qualname__', func)!r} is not a coroutine function: decorate it "
                f"with the cached() of a cachet.sync.Cache, or make it `async def`"
            )
        return AsyncCachedFunction(self._cache, func, kind, self._key, self._ttl)
