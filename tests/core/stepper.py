"""Drive the I/O-free core directly, with no frontend: build a ``Core`` over dict tiers
whose every operation is an effect (``direct=False``), and carry out effects by hand."""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any

from cachet import CacheEntry, ExpirationPolicy, InsertOutcome, InsertPolicy, ManualClock
from cachet._core.effects import Call, Fanout, Flow, Load, Spawn
from cachet._core.level import Level
from cachet._core.stack import Core
from cachet._core.tier import tier_ops


class DictTier:
    """A tier that is a dict; the first one of a stack can be read in place by the hit."""

    def __init__(self) -> None:
        self.data: dict[Hashable, CacheEntry[Any]] = {}
        self.inline = (threading.Lock(), self.data, None)

    def get(self, key: Hashable) -> CacheEntry[Any] | None:
        return self.data.get(key)

    def insert(self, key: Hashable, entry: CacheEntry[Any]) -> InsertOutcome:
        self.data[key] = entry
        return InsertOutcome.ACCEPTED

    def invalidate(self, key: Hashable) -> None:
        self.data.pop(key, None)

    def clear(self) -> None:
        self.data.clear()

    def update(self, key: Hashable, change: Any) -> Any:
        new, result = change(self.data.get(key))
        if new is None:
            self.data.pop(key, None)
        elif isinstance(new, CacheEntry):
            self.data[key] = new
        return result


def make_core(clock: ManualClock, ttls: list[float | None], *, ttr: float | None = None,
              stampede: bool = True, handoff: bool = False) -> tuple[Core, list[DictTier]]:
    """A core over ``len(ttls)`` dict tiers (the first with ``ttr``), signals as threading.Event."""
    tiers = [DictTier() for _ in ttls]
    levels = [Level(name=f"l{i + 1}", tier=t, ops=tier_ops(t),
                    length=None,
                    ttl=ttl, ttr=ttr if i == 0 else None, policy=InsertPolicy.always(),
                    expiration=ExpirationPolicy.lazy(), index=i,
                    inline=t.inline if i == 0 else None, direct=False)
              for i, (t, ttl) in enumerate(zip(tiers, ttls, strict=True))]
    core = Core(levels, clock, name="core", stampede=stampede, reporter=None, mutex=threading.Lock(),
                handoff=handoff, make_signal=threading.Event)
    return core, tiers


class Driver:
    """Carries out effects by calling; background flows (``Spawn``) wait in ``spawned``
    until :meth:`run_spawned`; a ``Load`` calls its factory unless ``on_load`` says otherwise."""

    def __init__(self) -> None:
        self.spawned: list[Flow] = []
        self.effects: list[Any] = []

    def run(self, flow: Flow, until: Callable[[Any], bool] | None = None) -> Any:
        """Run ``flow`` to its end (its return value), or until an effect for which ``until``
        is true, which is then returned unanswered (resume with :meth:`resume`)."""
        return self.resume(flow, None, until=until)

    def resume(self, flow: Flow, send: Any, error: BaseException | None = None,
               until: Callable[[Any], bool] | None = None) -> Any:
        while True:
            try:
                effect = flow.send(send) if error is None else flow.throw(error)
            except StopIteration as stop:
                return stop.value
            self.effects.append(effect)
            if until is not None and until(effect):
                return effect
            send = error = None
            try:
                send = self.answer(effect)
            except BaseException as exc:
                error = exc

    def answer(self, effect: Any) -> Any:
        if isinstance(effect, Call):
            return effect.fn(*effect.args)
        if isinstance(effect, Fanout):
            out = []
            for call in effect.calls:
                try:
                    out.append(call.fn(*call.args))
                except Exception as exc:
                    out.append(exc)
            return out
        if isinstance(effect, Load):
            return effect.factory()
        assert isinstance(effect, Spawn)
        self.spawned.append(effect.flow)
        return None

    def run_spawned(self) -> None:
        while self.spawned:
            self.run(self.spawned.pop(0))
