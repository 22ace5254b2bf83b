"""The hit path: one function, one frame, generated per cache from one template.

A hit must cost about a locked dict lookup (DESIGN.md: every extra frame is ~1/3 of
the budget), so the freshness rules of ``level.py`` are inlined here rather than called,
and each variant a frontend needs is generated from the one template below, the way
``dataclasses`` generates ``__init__``. The variants:

- locked (``cachet.sync``: the memory tier is shared by threads) or not (``cachet.aio``:
  it is only touched on the event loop's thread);
- ``get``-shaped (``hit(key)``; a miss returns ``miss(key)``, or ``None`` for "take the
  slow path"), or a memoized function's call (``call(*args, **kwargs)`` builds the key
  ``(name, *args)`` and returns the value; anything else goes to ``slow(args, kwargs)``),
  plain or ``async``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_TEMPLATE = """
{async_}def {fn}({params}):
{prologue}
{lookup}
    if entry is None:
        return {miss}
    ttl = entry.ttl
    if ttl is None:
        ttl = tier_ttl
    if ttl is not None or ttr is not None:
        t = now()
        at = entry.cached_at
        if ttl is not None and (at is None or at > t or t - at > ttl):
            return {miss}
        if ttr is not None and at is not None and (t < at or t - at >= ttr):
            return {miss}
    counts[0] += 1
    return entry{result}
"""

_LOCKED = """\
    with lock:
        entry = get(key)
        if entry is not None and touch is not None:
            touch(key)"""

_UNLOCKED = """\
    entry = get(key)
    if entry is not None and touch is not None:
        touch(key)"""

_CALL_PROLOGUE = """\
    if kwargs or len(args) != nparams:
        return {await_}slow(args, kwargs)
    key = (name, *args)"""


def build_hit(
    inline: tuple[Any, Any, Any],
    *,
    tier_ttl: float | None,
    ttr: float | None,
    now: Callable[[], float],
    counts: list[int],
    locked: bool,
    miss: Callable[..., Any] | None = None,
    call: tuple[str, int] | None = None,
    is_async: bool = False,
) -> Callable[..., Any]:
    """Generate the hit function for a primary tier exposing ``inline``.

    ``call=(name, nparams)`` makes a memoized function's call, with ``miss`` as its slow
    path ``slow(args, kwargs)`` (awaited when ``is_async``); an unhashable argument also
    takes the slow path, which explains it.
    """
    lock, data, touch = inline
    await_ = "await " if is_async else ""
    lookup = _LOCKED if locked else _UNLOCKED
    if call is None:
        params, prologue, result = "key", "", ""
        miss_expr = "None" if miss is None else "miss(key)"
    else:
        params, result = "*args, **kwargs", ".value"
        prologue = _CALL_PROLOGUE.format(await_=await_)
        miss_expr = f"{await_}slow(args, kwargs)"
        # An unhashable argument raises in get(): let the slow path say what to do.
        lookup = "    try:\n" + "\n".join("    " + line for line in lookup.splitlines()) + (
            f"\n    except TypeError:\n        return {miss_expr}"
        )
    source = _TEMPLATE.format(
        async_="async " if is_async else "", fn="hit", params=params, prologue=prologue,
        lookup=lookup, miss=miss_expr, result=result,
    )
    namespace: dict[str, Any] = {
        "lock": lock, "get": data.get, "touch": touch, "tier_ttl": tier_ttl, "ttr": ttr,
        "now": now, "counts": counts, "miss": miss, "slow": miss,
        "name": call[0] if call else None, "nparams": call[1] if call else None,
    }
    exec(compile(source, f"<cachet hit path {'locked' if locked else 'unlocked'}>", "exec"),
         namespace)
    fn: Callable[..., Any] = namespace["hit"]
    return fn
