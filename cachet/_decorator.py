"""``Cache.cached``: memoize a function through ``get_or_insert``; the part both
frontends share (``cachet.sync._cache`` and ``cachet.aio._cache`` hold the rest).

The default key is ``(qualified name, *arguments)`` with keyword arguments folded into
their positions and defaults filled in, so ``f(1, b=2)``, ``f(1, 2)`` and ``f(a=1, b=2)``
share an entry. A call passing exactly the function's positional parameters (the usual
call) builds the key without ``inspect.Signature.bind``.

The wrapper is an object, not a function, so that it can be a descriptor: as a method
it binds to its instance (``obj.method.invalidate(x)`` then means what it says), and
above ``@classmethod`` / ``@staticmethod`` it binds the way those do. Its ``__call__``
is the whole hit path: build the key, ask the cache's hit, return ``entry.value``. A miss
goes through the cache's ``get_or_insert``, so stampede protection, re-entrancy checks,
insert policies and telemetry are the cache's, unchanged.

Typing: ``CachedFunction[P, R]`` / ``AsyncCachedFunction[P, R]`` keep the decorated
function's parameters (``ParamSpec``) for type checkers, and their ``__get__`` drops
``self`` for methods.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Hashable
from typing import Any, Generic, ParamSpec, TypeVar

from ._core.durations import Duration, to_seconds
from ._core.entry import CacheEntry

P = ParamSpec("P")
P2 = ParamSpec("P2")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
S = TypeVar("S")
C = TypeVar("C")

KeyFn = Callable[..., Hashable]


# How a wrapper binds when it is a class attribute.
_FUNCTION, _CLASSMETHOD, _STATICMETHOD = "function", "classmethod", "staticmethod"


def unwrap(fn: Any) -> tuple[Callable[..., Any], str]:
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


class CachedBase(Generic[P, R]):
    """What a cached function of either frontend is, but for how it is called."""

    # The attributes the hit path reads are slots: an instance ``__dict__`` filled by
    # ``functools.update_wrapper`` makes each of its lookups slower (about 90 ns a hit,
    # a quarter of the whole, benchmarks/compare.py's decorator rows).
    __slots__ = ("__dict__", "__weakref__", "_nparams", "_prefix", "cache")
    cache: Any
    __wrapped__: Callable[..., Any]
    _bound: type[BoundBase[Any, Any, Any]]  # the class of this wrapper bound to an instance

    def __init__(self, cache: Any, fn: Callable[..., Any], kind: str, key: KeyFn | None,
                 ttl: float | None) -> None:
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]  # an object, not a function
        self.cache = cache
        self._fn = fn
        self._kind = kind
        self._keys = _KeyMaker(fn, key)
        self._name = self._keys.name
        self._prefix = (self._name,)
        # The number of arguments of the common call whose key is (name, *args); -1 for
        # a custom key function or parameters beyond plain ones.
        self._nparams = self._keys.nparams
        self._entry = _entry_of(ttl)

    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable:
        """The cache key these arguments map to (what ``cache.get(...)`` would take)."""
        return self._checked_key(args, kwargs)

    def _checked_key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Hashable:
        """The call's key; a ``TypeError`` that says what to do if it is not hashable."""
        key = self._keys(args, kwargs) if kwargs or len(args) != self._nparams else (self._name, *args)
        self._check_hashable(key)
        return key

    def _check_hashable(self, key: Hashable) -> None:
        try:
            hash(key)
        except TypeError as exc:
            raise self._keys.unhashable(key, exc) from None

    def _bind(self, instance: Any, owner: type[Any] | None) -> Any:
        """``__get__``: bind as a function, a classmethod or a staticmethod would."""
        if self._kind is _FUNCTION:
            return self if instance is None else self._bound(self, instance)
        if self._kind is _CLASSMETHOD:
            return self._bound(self, owner if owner is not None else type(instance))
        return self

    def __repr__(self) -> str:
        return f"<cached {self._name} of {self.cache!r}>"


class BoundBase(Generic[P, R, C]):
    """A cached function bound to an instance (or, for a classmethod, a class); ``C`` is
    the type of its cache."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, func: Any, obj: object) -> None:
        self.__func__ = func
        self.__self__ = obj

    def key(self, *args: P.args, **kwargs: P.kwargs) -> Hashable:
        """The cache key of this call on this instance."""
        return self.__func__.key(self.__self__, *args, **kwargs)  # type: ignore[no-any-return]

    @property
    def cache(self) -> C:
        """The cache behind the function."""
        return self.__func__.cache  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return f"<bound {self.__func__!r} of {self.__self__!r}>"


def decorator_args(key: KeyFn | None, ttl: Duration | None) -> tuple[KeyFn | None, float | None]:
    """``cached(key=..., ttl=...)`` checked: a ``TypeError`` or ``ValueError`` says what is wrong."""
    if key is not None and not callable(key):
        raise TypeError(f"cached(key=...) must be a callable building a key, not {type(key).__name__}")
    return key, None if ttl is None else to_seconds(ttl, "cached(ttl=...)")


class DecoratorBase:
    """What ``Cache.cached(key=..., ttl=...)`` returns: apply it to a function of the
    frontend's kind (``_async``), which ``_wrapper`` wraps; the other kind is refused
    with ``_refusal`` (a sync cache would cache the coroutine object)."""

    __slots__ = ("_cache", "_key", "_ttl")
    _async: bool
    _wrapper: type[CachedBase[Any, Any]]
    _refusal: str  # formatted with the function's qualified name

    def __init__(self, cache: Any, key: KeyFn | None, ttl: Duration | None) -> None:
        self._cache = cache
        self._key, self._ttl = decorator_args(key, ttl)

    def _wrap(self, fn: Any) -> Any:
        func, kind = unwrap(fn)
        if inspect.iscoroutinefunction(func) is not self._async:
            raise TypeError(self._refusal.format(getattr(func, "__qualname__", repr(func))))
        return self._wrapper(self._cache, func, kind, self._key, self._ttl)
