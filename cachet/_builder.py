"""The builder both frontends share: it records configuration, validates it, and
assembles the core at ``build()`` (each frontend's builder adds only how its tiers are
reached and which cache class wraps the core).

Per tier: storage, name, ttl, insert policy, expiration policy, time to refresh, the
serialization boundary below it. Whole stack (top builder only): clock, telemetry,
stampede protection. Problems are collected and raised together at ``build()`` as one
``ValueError`` saying what to change.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from ._core import attributes as a
from ._core.clock import Clock, SystemClock
from ._core.durations import Duration, to_seconds
from ._core.entry import CacheEntry
from ._core.level import Level
from ._core.policy import ExpirationPolicy, FailSafe, InsertPolicy, TimeToRefresh
from ._core.stack import Core
from ._core.stats import STAT_OF_EVENT
from ._core.tier import AsyncTier, Ops, Tier
from .middleware import BreakerState, CircuitBreaker
from .serialize import encoded_tier
from .service import ServiceAdapter, as_service
from .tiers._memory import CopyingMemoryTier, MemoryTier, check_memory_args

K = TypeVar("K")
V = TypeVar("V")
B = TypeVar("B", bound="BuilderBase[Any, Any]")

_cache_names = itertools.count(1)
_TIER_METHODS = ("get", "insert", "invalidate", "clear")


@dataclass
class TierSpec:
    """One validated tier of the stack, ready for a frontend to instantiate."""

    kind: str
    name: str
    storage: Any  # a tier object, or a factory taking (clock, ttl) for lazily built tiers
    ttl: float | None
    ttr: TimeToRefresh | None
    policy: InsertPolicy
    expiration: ExpirationPolicy
    codec: Any  # the byte codec applied to this tier (None above any boundary)
    secret: bytes | None
    allow_unsigned_pickle: bool
    jitter: float = 0.0
    grace: float = 0.0  # keep expired entries this much longer (fail-safe's max_stale)
    breaker: dict[str, Any] | None = None  # .circuit_breaker(**settings) of this tier

    def make_tier(self, clock: Clock) -> Any:
        if self.kind == "memory":
            factory: Callable[[Clock, float | None, float], Any] = self.storage
            return factory(clock, self.ttl, self.grace)
        # A tier that judges expiry itself (SQLite, Redis) learns the cache's clock, ttl, name.
        bind = getattr(self.storage, "bind_cache", None)
        if callable(bind):
            bind(clock=clock, ttl=self.ttl, name=self.name)
        return self.storage


class BuilderBase(Generic[K, V]):
    """Shared configuration methods; each returns the builder so calls chain."""

    _asynchronous: ClassVar[bool] = False  # the aio builder's Redis tier uses redis.asyncio

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._kind: str | None = None
        self._storage: Any = None
        self._name: str | None = None
        self._ttl: Any = None
        self._jitter = 0.0
        self._breaker: dict[str, Any] | None = None
        self._ttr: TimeToRefresh | None = None
        self._policy = InsertPolicy.always()
        self._expiration = ExpirationPolicy.lazy()
        self._fallback: BuilderBase[Any, Any] | None = None
        self._serialize: tuple[Any, bytes | None, bool] | None = None
        self._stampede = False
        self._handler: Any = None
        self._logs = False
        self._backplane: Any = None
        self._fail_safe: FailSafe | None = None
        self._degraded = False
        self._loader_timeouts: tuple[Any, Any] = (None, None)
        self._problems: list[str] = []

    # -- storage -----------------------------------------------------------------------

    def memory(
        self: B,
        max_entries: int | None = None,
        *,
        policy: str = "lru",
        max_size: float | None = None,
        getsizeof: Callable[[CacheEntry[Any]], float] | None = None,
        cull: float | None = None,
        copy: bool = False,
    ) -> B:
        """An in-process tier (lru, lfu, fifo or rr), bounded by count or by weight.
        ``cull``: an insert past ``max_entries`` evicts that fraction of it, oldest first
        (Django's ``CULL_FREQUENCY``), not one entry. ``copy``: keep pickled copies of
        the values (:class:`~cachet.tiers.CopyingMemoryTier`)."""
        try:
            check_memory_args(max_entries, policy, max_size, getsizeof, cull)
        except (TypeError, ValueError) as exc:
            self._problems.append(str(exc))
        kind = CopyingMemoryTier if copy else MemoryTier

        def make(clock: Clock, ttl: float | None, grace: float) -> MemoryTier:
            return kind(max_entries, policy=policy, max_size=max_size, getsizeof=getsizeof,
                        clock=clock, ttl=ttl, grace=grace, cull=cull)

        return self._set_storage("memory", make)

    def storage(self: B, tier: Tier[Any] | AsyncTier[Any]) -> B:
        """Any object implementing the tier protocol (:class:`cachet.tiers.Tier`, or
        :class:`cachet.tiers.AsyncTier` on ``cachet.aio``)."""
        missing = [m for m in _TIER_METHODS if not callable(getattr(tier, m, None))]
        if missing:
            self._problems.append(
                f"{type(tier).__name__} is not a tier: it lacks {', '.join(missing)}()"
            )
        return self._set_storage("storage", tier)

    def sqlite(self: B, path: str = ":memory:", **kw: Any) -> B:
        """A SQLite tier at ``path`` (see :class:`cachet.tiers.SQLiteTier`); ``cachet.aio``
        reaches it through worker threads."""
        from .tiers import SQLiteTier

        return self._set_storage("sqlite", SQLiteTier(path, **kw))

    def redis(self: B, url: str = "redis://127.0.0.1:6379/0", **kw: Any) -> B:
        """A Redis tier for ``url`` (see :class:`cachet.tiers.RedisTier`): the sync client
        for ``cachet.sync``; ``redis.asyncio`` on asyncio and the sync client in worker
        threads on trio for ``cachet.aio``."""
        from .tiers import RedisTier

        return self._set_storage("redis", RedisTier.from_url(url, asynchronous=self._asynchronous, **kw))

    def service(self: B, service: Any) -> B:
        """A callable service (``cachet.service``) used as this tier's storage."""
        from .service import ServiceAdapter

        return self._set_storage("service", ServiceAdapter(service))

    def _set_storage(self: B, kind: str, storage: Any) -> B:
        if self._kind is not None:
            self._problems.append(
                f"this builder already has {self._kind} storage; use .fallback() for another tier"
            )
        self._kind, self._storage = kind, storage
        return self

    # -- per tier ----------------------------------------------------------------------

    def name(self: B, name: str) -> B:
        """Name this tier (and, on the top builder, the cache)."""
        if not isinstance(name, str) or not name:
            self._problems.append(f"name must be a non-empty str; got {name!r}")
        self._name = name
        return self

    def ttl(self: B, ttl: Duration, *, jitter: float = 0.0) -> B:
        """Entries in this tier expire ``ttl`` after they were stored (unless they carry their own).

        ``jitter`` (a fraction, e.g. ``0.1``) extends each stored entry's ttl by a random
        amount up to that fraction, so entries written together do not expire together
        (the jittered ttl is then written into the stored entry).
        """
        self._ttl = ttl
        if not (isinstance(jitter, (int, float)) and 0.0 <= jitter <= 1.0):
            self._problems.append(f"ttl jitter must be a fraction between 0 and 1; got {jitter!r}")
        self._jitter = float(jitter) if isinstance(jitter, (int, float)) else 0.0
        return self

    def insert_policy(self: B, policy: InsertPolicy) -> B:
        if not isinstance(policy, InsertPolicy):
            self._problems.append(f"insert_policy takes an InsertPolicy, not {type(policy).__name__}")
        self._policy = policy
        return self

    def expiration_policy(self: B, policy: ExpirationPolicy) -> B:
        if not isinstance(policy, ExpirationPolicy):
            self._problems.append(
                f"expiration_policy takes an ExpirationPolicy, not {type(policy).__name__}"
            )
        self._expiration = policy
        return self

    def circuit_breaker(self: B, *, failure_threshold: int = 5, window: Duration = 60.0,
                        cooldown: Duration = 30.0, probe_timeout: Duration | None = None) -> B:
        """Put this tier behind a circuit breaker of its own: after ``failure_threshold``
        failed calls within ``window`` seconds it opens, and for ``cooldown`` seconds every
        call fails at once (``TierError`` caused by ``CircuitOpenError``) without reaching
        the tier; then one call probes it, and a success closes it. Opening and closing
        are the tier events ``cache.breaker_opened`` and ``cache.breaker_closed``, counted
        in its ``breaker_opens``. With ``.degraded_reads()`` on the top builder, reads of
        a tier whose breaker is open are misses served by the tiers above and the loaders.
        Meant for network tiers (Redis) whose outages would cost every call a timeout.

        A tier with a ``probe(timeout)`` method (the Redis tier: a ``PING`` on a
        connection of its own) is probed that way instead of with a caller's call, so a
        server that still hangs costs the probing caller ``probe_timeout`` (default the
        tier's, 25 ms for Redis), not its socket timeout."""
        self._breaker = {"failure_threshold": failure_threshold, "window": window, "cooldown": cooldown}
        if probe_timeout is not None:
            self._breaker["probe_timeout"] = to_seconds(probe_timeout, "probe_timeout")
        return self

    def time_to_refresh(self: B, ttr: TimeToRefresh | Duration) -> B:
        """Refresh entries of this tier from the tier below once they are this old."""
        self._ttr = ttr if isinstance(ttr, TimeToRefresh) else TimeToRefresh(ttr)
        return self

    def fallback(self: B, below: BuilderBase[Any, Any] | Tier[Any] | AsyncTier[Any]) -> B:
        """The next tier below this one: a builder (with its own chain) or a tier object.
        Chains nest: ``b1.fallback(b2).fallback(b3)`` is the stack b1 -> b2 -> b3, each
        call adding below the bottom of the chain; a builder already in it is refused."""
        if not isinstance(below, BuilderBase):
            below = type(self)(self._clock).storage(below)
        mine = self._chain()
        theirs = below._chain()
        if any(b in mine for b in theirs):
            raise ValueError("fallback(): that builder is already in this chain; a tier can appear only once")
        mine[-1]._fallback = below
        return self

    def _chain(self) -> list[BuilderBase[Any, Any]]:
        """This builder and the ones below it, top first."""
        chain: list[BuilderBase[Any, Any]] = []
        node: BuilderBase[Any, Any] | None = self
        while node is not None and node not in chain:
            chain.append(node)
            node = node._fallback
        return chain

    def serialize(
        self: B, codec: Any = None, *, secret: bytes | str | None = None,
        allow_unsigned_pickle: bool = False,
    ) -> B:
        """Tiers below this one store bytes, encoded by ``codec`` (default: pickle, signed with ``secret``)."""
        if isinstance(secret, str):
            secret = secret.encode()
        self._serialize = (codec, secret, allow_unsigned_pickle)
        return self

    # -- whole stack (top builder) -----------------------------------------------------

    def stampede_protection(self: B, enabled: bool = True) -> B:
        """Coalesce concurrent gets, invalidates and loads of the same key."""
        self._stampede = enabled
        return self

    def event_handler(self: B, handler: Any) -> B:
        """Send typed events to ``handler.on_tier_event`` / ``handler.on_operation_complete``."""
        self._handler = handler
        return self

    def fail_safe(self: B, max_stale: Duration, *, backoff: Duration | None = None) -> B:
        """When the tier below or a loader fails, serve an entry that expired at most
        ``max_stale`` ago instead of raising, and keep serving it from the primary tier
        for ``backoff`` (default: ``min(30 s, max_stale)``) before asking again. Off by
        default. The memory tier keeps expired entries ``max_stale`` longer for it."""
        try:
            self._fail_safe = FailSafe(max_stale, backoff)
        except (TypeError, ValueError) as exc:
            self._problems.append(str(exc))
        return self

    def degraded_reads(self: B, enabled: bool = True) -> B:
        """Let reads go on when the bottom tier fails: its error is reported (the tier's
        ``cache.get_error``, its ``errors`` count) and the read is a miss, so the primary
        tier and the loaders keep serving. Off by default (the error is raised as
        ``TierError``). Writes still raise: an ``insert`` or ``invalidate`` that did not
        reach a tier says so. Needs a tier below the primary."""
        self._degraded = enabled
        return self

    def loader_timeouts(self: B, *, soft: Duration | None = None,
                        hard: Duration | None = None) -> B:
        """Bound how long a caller waits for a load (``get_or_insert`` and friends).

        ``soft``: when fail-safe has an expired value for the key, serve it after this
        long. ``hard``: give up after this long and raise :class:`cachet.LoaderTimeout`
        (or serve the fail-safe value, if there is one). Either way the load goes on
        (a worker thread for ``cachet.sync``, the cache's task group for ``cachet.aio``,
        so use it inside ``async with``) and its result is cached when it arrives.
        """
        self._loader_timeouts = (soft, hard)
        return self

    def _timeouts(self, problems: list[str]) -> tuple[float | None, float | None]:
        soft = _duration(self._loader_timeouts[0], "loader_timeouts soft", problems)
        hard = _duration(self._loader_timeouts[1], "loader_timeouts hard", problems)
        if soft is not None and hard is not None and soft >= hard:
            problems.append(f"loader_timeouts: soft ({soft}s) must be shorter than hard ({hard}s)")
        return soft, hard

    def backplane(self: B, backplane: Any) -> B:
        """Keep the in-process tier coherent with other processes (see ``cachet.backplane``):
        local writes are published, and other processes' writes evict the key here."""
        if not callable(getattr(backplane, "attach", None)):
            self._problems.append(f"{type(backplane).__name__} is not a backplane: it lacks attach()")
        self._backplane = backplane
        return self


    def enable_logs(self: B) -> B:
        """Emit events as ``logging`` records on the ``cachet`` logger."""
        self._logs = True
        return self

    # -- validation --------------------------------------------------------------------

    def _cache_name(self) -> str:
        return self._name or f"cachet-{next(_cache_names)}"

    def _specs(self) -> list[TierSpec]:
        """Flatten the chain into validated tier specs, or raise one ``ValueError``."""
        problems: list[str] = []
        chain = self._chain()  # fallback() keeps it free of loops
        specs: list[TierSpec] = []
        seen: set[str] = set()
        codec: Any = None
        secret: bytes | None = None
        allow_unsigned = False
        for i, b in enumerate(chain):
            where = "the top tier" if i == 0 else f"fallback tier {i}"
            problems.extend(f"{where}: {p}" for p in b._problems)
            if b._kind is None:
                problems.append(
                    f"{where} has no storage: call .memory(), .sqlite(), .redis(), .storage(tier) "
                    f"or .service(svc) on its builder"
                )
                continue
            ttl = _duration(b._ttl, f"{where}: ttl", problems)
            ttr = b._ttr
            # With no tier below, entries refresh through the loaders' factories only.
            if ttr is not None and ttl is not None and ttr.duration >= ttl:
                problems.append(
                    f"{where}: time_to_refresh ({ttr.duration}s) must be shorter than its "
                    f"ttl ({ttl}s), or entries expire before they can be refreshed"
                )
            name = b._name or b._kind
            base, n = name, 2
            while name in seen:
                name, n = f"{base}-{n}", n + 1
            seen.add(name)
            # A byte tier with no boundary above it (``.sqlite()`` alone) is encoded with its
            # own builder's ``.serialize()`` settings, or the default codec.
            if codec is None and getattr(b._storage, "bytes_only", False):
                own_codec, own_secret, own_allow = b._serialize or (None, None, False)
                specs.append(TierSpec(b._kind, name, b._storage, ttl, ttr, b._policy,
                                      b._expiration, own_codec or "default", own_secret, own_allow,
                                      b._jitter))
            else:
                specs.append(TierSpec(b._kind, name, b._storage, ttl, ttr, b._policy,
                                      b._expiration, codec, secret, allow_unsigned, b._jitter))
            specs[-1].breaker = b._breaker
            if b._breaker is not None:
                try:  # its settings are checked now, at build
                    CircuitBreaker(**b._breaker)
                except (TypeError, ValueError) as exc:
                    problems.append(f"{where}: circuit_breaker: {exc}")
            if b._serialize is not None:
                if codec is not None:
                    problems.append(f"{where}: the stack already serializes above this tier")
                codec, secret, allow_unsigned = b._serialize
                codec = codec if codec is not None else "default"
        self._timeouts(problems)
        if self._degraded and len(specs) < 2:
            problems.append("degraded_reads() needs a tier below the primary (.fallback(...)): "
                            "a failing primary tier is always raised")
        if problems:
            raise ValueError("invalid cache configuration:\n  - " + "\n  - ".join(problems))
        if self._fail_safe is not None:
            for spec in specs:
                spec.grace = self._fail_safe.max_stale
        return specs

    def _assemble(self, adapt: Adapter, *, handoff: bool, make_signal: Callable[[], Any],
                  owner: Callable[[], int] | None = None) -> tuple[Core, list[Any], list[TierSpec]]:
        """Validate, build the tiers (``adapt(tier, spec)`` gives the frontend's
        ``(ops, len)`` for each) and the core; returns it, the tiers (and backplane) the
        cache must close, and the specs. ``handoff``, ``make_signal`` and ``owner`` are
        the frontend's (see ``Core``)."""
        specs = self._specs()
        levels, owned = build_levels(specs, self._clock, adapt)
        reporter = None
        name = self._cache_name()
        if self._handler is not None or self._logs:
            from .telemetry._reporter import Reporter

            reporter = Reporter(name, self._handler, self._logs)
        core = Core(levels, self._clock, name=name, stampede=self._stampede, reporter=reporter,
                    fail_safe=self._fail_safe, loader_timeouts=self._timeouts([]),
                    degraded=self._degraded,
                    handoff=handoff, mutex=threading.Lock(), make_signal=make_signal, owner=owner)
        for level in levels:
            _listen(core, level)
        if self._backplane is not None:
            core.publish = self._backplane.attach(
                evict=core.evict_local, clear=core.clear_local, asynchronous=self._asynchronous
            )
            owned.append(self._backplane)
        return core, owned, specs


def _duration(value: Any, what: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    try:
        return to_seconds(value, what)
    except (TypeError, ValueError) as exc:
        problems.append(str(exc))
        return None


Adapter = Callable[[Any, TierSpec], tuple[Ops, Any]]


def build_levels(specs: list[TierSpec], clock: Clock, adapt: Adapter) -> tuple[list[Level], list[Any]]:
    """Instantiate each spec's tier and wrap it in a ``Level``.

    ``adapt(tier, spec)`` gives the frontend's ``(ops, len)`` for a tier. Returns
    the levels and the tiers the cache created (and so must close).
    """
    levels, owned = [], []
    for i, spec in enumerate(specs):
        tier = raw = spec.make_tier(clock)
        if spec.kind in ("memory", "sqlite", "redis"):
            owned.append(tier)
        if spec.codec is not None:
            tier = encoded_tier(tier, spec)
        if spec.breaker is not None:
            tier = _BreakerGuard.around(tier, spec, clock, getattr(raw, "probe", None))
        ops, length = adapt(tier, spec)
        ttr = spec.ttr
        levels.append(Level(
            name=spec.name, tier=tier, ops=ops, length=length, ttl=spec.ttl,
            ttr=ttr.duration if ttr else None, spawner=ttr.spawner if ttr else None,
            retry_after=ttr.retry_after if ttr else None, jitter=spec.jitter,
            policy=spec.policy, expiration=spec.expiration, index=i,
            inline=getattr(tier, "inline", None) if i == 0 else None,
            direct=bool(getattr(tier, "nonblocking", False)),
        ))
    return levels, owned


class _BreakerGuard(ServiceAdapter):
    """A tier behind its own circuit breaker (``.circuit_breaker()``): the breaker is the
    middleware's, around the tier as a service. ``guarded`` is the tier itself (its
    listeners are set on it); ``on_breaker_change`` is set by the assembly to report."""

    guarded: Any
    breaker: CircuitBreaker
    on_breaker_change: Callable[[BreakerState, BreakerState], None] | None
    nonblocking: bool
    len: Callable[[], Any]

    @classmethod
    def around(cls, tier: Any, spec: TierSpec, clock: Clock,
               probe: Callable[..., Any] | None) -> _BreakerGuard:
        guard: _BreakerGuard

        def changed(old: BreakerState, new: BreakerState) -> None:
            if guard.on_breaker_change is not None:
                guard.on_breaker_change(old, new)

        assert spec.breaker is not None
        options = dict(spec.breaker)
        timeout = options.pop("probe_timeout", None)
        if probe is not None and timeout is not None:
            probe = functools.partial(probe, timeout)
        breaker = CircuitBreaker(**options, clock=clock, name=spec.name, on_change=changed, probe=probe)
        guard = cls(breaker(as_service(tier)))
        guard.guarded, guard.breaker = tier, breaker
        guard.on_breaker_change = None
        guard.nonblocking = bool(getattr(tier, "nonblocking", False))
        length = getattr(tier, "len", None)
        if length is not None:  # counting is not a call the breaker guards
            guard.len = length
        return guard


def _listen(core: Core, level: Level) -> None:
    """Let a tier report what happens inside it: evictions and expiry (the memory tier),
    payloads that failed to decode (the byte boundary; they read as misses), its circuit
    breaker opening and closing."""
    tier = level.tier
    if isinstance(tier, _BreakerGuard):
        def changed(old: BreakerState, new: BreakerState) -> None:
            if new is BreakerState.OPEN:
                core.report(level, a.BREAKER_OPENED)
            elif new is BreakerState.CLOSED:
                core.report(level, a.BREAKER_CLOSED)

        tier.on_breaker_change = changed
        tier = tier.guarded
    if hasattr(tier, "listener"):
        events = {"eviction": a.EVICTION, "expired": a.EXPIRED}
        # Counted in stats by the lookups that find entries expired; the sweep's removals
        # are events only, so one expired entry counts once.
        if core.reporter is None:
            # Telemetry off: an eviction is one counter (a full L1 evicts on every insert).
            row, stat = core.counts[level.index], STAT_OF_EVENT[a.EVICTION]
            if hasattr(tier, "evictions_into"):  # the memory tier counts in place
                tier.evictions_into = (row, stat)
            else:

                def count(event: str, key: Any) -> None:
                    if event == "eviction":
                        row[stat] += 1

                tier.listener = count
        else:
            tier.listener = lambda event, key: core.report(
                level, events[event], count=event == "eviction")
    if hasattr(tier, "on_decode_error"):
        tier.on_decode_error = lambda key, exc: core.report(level, a.DECODE_ERROR)
