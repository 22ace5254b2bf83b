"""The hit path: one function, one frame, generated per cache from one template.

A hit must cost about a locked dict lookup (DESIGN.md: every extra frame is ~1/3 of
the budget), so the freshness rules of ``level.py`` are inlined here rather than called,
and each variant a frontend needs is generated from the one template below, the way
``dataclasses`` generates ``__init__``. The variants:

- locked (``cachet.sync``: the memory tier is shared by threads) or not (``cachet.aio``:
  it is only touched on the event loop's thread);
- ``get``-shaped (``hit(key)``; a miss returns ``miss(key)``, awaited for an ``async``
  one, or ``None`` for "take the slow path"), loader-shaped (``get_or_insert(key,
  factory)``; a miss returns ``miss(mode, key, factory)``), or a memoized function's call, plain or
  ``async``: it takes the function's
  own parameters (so Python binds keywords and fills in defaults, for free), looks up
  ``(name, *arguments)`` and returns the value; anything else goes to
  ``slow(args, kwargs)``.

Names inside the template start with ``_c_`` so they cannot clash with a memoized
function's parameter names.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

_TEMPLATE = """
{async_}def _c_hit({params}):
{prologue}
{lookup}
    if _c_entry is None:
{absent}
    _c_ttl = _c_entry.ttl
    if _c_ttl is None:
        _c_ttl = _c_tier_ttl
    if _c_ttl is not None or _c_ttr is not None:
        _c_t = _c_now()
        _c_at = _c_entry.cached_at
        if _c_ttl is not None and (_c_at is None or _c_at > _c_t or _c_t - _c_at > _c_ttl):
            return {miss}
        if _c_ttr is not None and _c_at is not None and (_c_t < _c_at or _c_t - _c_at >= _c_ttr):
            return {miss}
    _c_counts[0] += 1
    return _c_entry{result}
"""

# Threads read the mapping without the lock (one C call, atomic under the GIL) and take
# it only to mark an LRU entry used, which fails harmlessly if the entry just left.
# (acquire/release around try rather than ``with``: ~60 ns less on CPython 3.11.)
_LOCKED = """\
    _c_entry = _c_get(_c_key)
    if _c_entry is not None and _c_touch is not None:
        _c_acquire()
        try:
            _c_touch(_c_key)
        except KeyError:
            pass
        finally:
            _c_release()"""

_UNLOCKED = """\
    _c_entry = _c_get(_c_key)
    if _c_entry is not None and _c_touch is not None:
        _c_touch(_c_key)"""


# Compiled templates by source: a cache builds each variant once per process.
_compiled: dict[str, Any] = {}


def call_parameters(fn: Callable[..., Any]) -> list[inspect.Parameter] | None:
    """The parameters a generated call can mirror: all plain positional-or-keyword ones
    (defaults allowed), or ``None`` for anything else (``*args``, keyword-only, ...)."""
    params = list(inspect.signature(fn).parameters.values())
    if all(p.kind is p.POSITIONAL_OR_KEYWORD for p in params):
        return params
    return None


def build_hit(
    inline: tuple[Any, Any, Any],
    *,
    tier_ttl: float | None,
    ttr: float | None,
    now: Callable[[], float],
    counts: list[int],
    locked: bool,
    miss: Callable[..., Any] | None = None,
    call: tuple[str, list[inspect.Parameter]] | None = None,
    loader: str | None = None,
    absent: tuple[str, dict[str, Any]] | None = None,
    is_async: bool = False,
) -> Callable[..., Any]:
    """Generate the hit function for a primary tier exposing ``inline``.

    ``call=(name, parameters)`` makes a memoized function's call, with ``miss`` as its
    slow path ``slow(args, kwargs)`` (awaited when ``is_async``); an unhashable argument
    also takes the slow path, which explains it. ``loader=mode`` makes a loader method.
    ``absent=(block, names)`` replaces the miss when the tier has no entry at all with
    that block of code (indented 8 spaces; ``{await_}`` and ``{miss}`` filled in), run
    with those extra names (``straight.py``'s load).
    """
    lock, data, touch = inline
    namespace: dict[str, Any] = {
        "_c_acquire": lock.acquire, "_c_release": lock.release, "_c_get": data.get,
        "_c_touch": touch, "_c_tier_ttl": tier_ttl,
        "_c_ttr": ttr, "_c_now": now, "_c_counts": counts, "_c_miss": miss,
    }
    lookup = _LOCKED if locked else _UNLOCKED
    await_ = "await " if is_async else ""
    if loader is not None:
        namespace["_c_mode"] = loader
        params, prologue, result = "_c_key, _c_factory", "", ""
        miss_expr = f"{await_}_c_miss(_c_mode, _c_key, _c_factory)"
    elif call is None:
        params, prologue, result = "_c_key", "", ""
        miss_expr = "None" if miss is None else f"{await_}_c_miss(_c_key)"
    else:
        name, parameters = call
        names = [p.name for p in parameters]
        signature = []
        for i, p in enumerate(parameters):
            if p.default is p.empty:
                signature.append(p.name)
            else:
                namespace[f"_c_default{i}"] = p.default
                signature.append(f"{p.name}=_c_default{i}")
        namespace["_c_name"] = name
        args = "(" + "".join(f"{n}, " for n in names) + ")"
        params, result = ", ".join(signature), ".value"
        prologue = f"    _c_key = (_c_name, {', '.join(names)})" if names else "    _c_key = (_c_name,)"
        miss_expr = f"{'await ' if is_async else ''}_c_miss({args}, {{}})"
        # An unhashable argument raises in get(): let the slow path say what to do.
        lookup = "    try:\n" + "\n".join("    " + line for line in lookup.splitlines()) + (
            f"\n    except TypeError:\n        return {miss_expr}"
        )
    if absent is None:
        absent_block = f"        return {miss_expr}"
    else:
        absent_block = absent[0].format(await_=await_, miss=miss_expr).rstrip()
        namespace.update(absent[1])
    source = _TEMPLATE.format(
        async_="async " if is_async else "", params=params, prologue=prologue,
        lookup=lookup, miss=miss_expr, result=result, absent=absent_block,
    )
    code = _compiled.get(source)
    if code is None:
        code = _compiled[source] = compile(
            source, f"<cachet hit path {'locked' if locked else 'unlocked'}>", "exec")
    exec(code, namespace)
    fn: Callable[..., Any] = namespace["_c_hit"]
    if call is not None:  # errors in binding the arguments name the memoized function
        qualname = call[0].rsplit(".", 1)[-1] if "." in call[0] else call[0]
        fn.__code__ = fn.__code__.replace(co_name=qualname.rsplit(".", 1)[-1])
        fn.__name__ = fn.__qualname__ = qualname
    return fn
