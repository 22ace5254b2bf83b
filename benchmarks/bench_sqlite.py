"""SQLite L2 hit against a bare ``SELECT`` on the same table, in one run.

    python benchmarks/bench_sqlite.py [--keys 1000] [--rounds 7]

Reports the median ns per operation of:

- ``select``: ``conn.execute(SELECT value ...).fetchone()`` on the tier's own table and
  connection settings (the floor);
- ``tier.get``: the bare ``SQLiteTier.get`` (bytes in, bytes out);
- ``cache.get (L2 hit)``: ``cachet.sync.Cache.get`` that misses a one-entry L1 and hits the
  SQLite L2 (key encoding, the fallback walk, decoding and promotion into L1 included;
  keys cycle, so each get evicts the previous promotion);

- ``encoded.get``: the boundary's wrapper over the SQLite tier (key encoding + decoding);
- ``cache.get over memory L2``: the same cache shape with a plain memory L2 and no
  boundary: what the core's miss-walk-promote path costs on its own;

and the encode / decode costs of the boundary on their own. Target: cache.get at most
1.5x the bare SELECT.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable

from cachet import Cache
from cachet.serialize import JsonCodec, PickleCodec, Serializer, encode_key
from cachet.tiers import MemoryTier
from cachet.tiers._sqlite import _GET


def per_op_ns(fn: Callable[[], object], n: int, rounds: int) -> float:
    """Median over ``rounds`` of the mean ns per call of ``fn`` run ``n`` times."""
    samples = []
    for _ in range(rounds):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            fn()
        samples.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(samples)


def cycler(items: list[object], call: Callable[[object], object]) -> Callable[[], object]:
    it = iter(())  # type: ignore[var-annotated]

    def step() -> object:
        nonlocal it
        try:
            item = next(it)
        except StopIteration:
            it = iter(items)
            item = next(it)
        return call(item)

    return step


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    n, rounds = args.keys, args.rounds
    value = {"id": 42, "name": "a small value", "tags": ["x", "y"]}

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "bench.db")
        cache: Cache[str, object] = (
            Cache.builder().memory(1).fallback(Cache.builder().sqlite(path)).build()
        )
        keys = [f"user:{i}" for i in range(n)]
        with cache:
            for k in keys:
                cache.insert(k, value)
            l2 = cache._core.levels[1].tier  # the encoded wrapper
            tier = l2.inner
            conn = tier._take("bench")
            tier._give(conn)
            ns = tier.namespace
            bkeys = [encode_key(k) for k in keys]

            def select(k: object) -> object:
                return conn.execute(_GET, (ns, k)).fetchone()

            mem_l2 = MemoryTier()
            mem_cache: Cache[str, object] = (
                Cache.builder().memory(1).fallback(Cache.builder().storage(mem_l2)).build()
            )
            for k in keys:
                mem_cache.insert(k, value)

            results: dict[str, float] = {}
            # Interleave the measurements, so drift hits them alike.
            for _ in range(3):
                for label, fn in (
                    ("select", cycler(bkeys, select)),  # type: ignore[arg-type]
                    ("tier.get", cycler(bkeys, tier.get)),  # type: ignore[arg-type]
                    ("encoded.get", cycler(keys, l2.get)),  # type: ignore[arg-type]
                    ("cache.get (L2 hit)", cycler(keys, cache.get)),  # type: ignore[arg-type]
                    ("cache.get over memory L2", cycler(keys, mem_cache.get)),  # type: ignore[arg-type]
                ):
                    t = per_op_ns(fn, n, rounds)
                    results[label] = min(results.get(label, t), t)
            assert cache.get(keys[0]).value == value  # type: ignore[union-attr]
            stats = cache.stats()["tiers"]  # type: ignore[index]
            assert stats["sqlite"]["hits"] > 0

        floor = results["select"]
        core = results["cache.get (L2 hit)"] - results["encoded.get"]
        print(f"core walk + promotion (cache.get - encoded.get): {core:.0f} ns; "
              f"SQLite tier + boundary (encoded.get): {results['encoded.get']:.0f} ns")
        print(f"SQLite {n} keys, value {len(Serializer().dumps(value))} bytes pickled; median ns/op")
        for label, t in results.items():
            print(f"  {label:<22}{t:>9.0f} ns   {t / floor:5.2f}x select")

        print("boundary costs, ns/op:")
        key = keys[7]
        print(f"  {'encode_key(str)':<32}{per_op_ns(lambda: encode_key(key), 20000, rounds):>7.0f}")
        tkey = ("user", 42)
        print(f"  {'encode_key(tuple)':<32}{per_op_ns(lambda: encode_key(tkey), 20000, rounds):>7.0f}")
        for label, ser in (("pickle", Serializer(PickleCodec())),
                           ("pickle+hmac", Serializer(PickleCodec(), secret=b"s" * 32)),
                           ("json", Serializer(JsonCodec()))):
            payload = ser.dumps(value)
            enc = per_op_ns(lambda ser=ser: ser.dumps(value), 5000, rounds)  # type: ignore[misc]
            dec = per_op_ns(lambda ser=ser, p=payload: ser.loads(p), 20000, rounds)  # type: ignore[misc]
            print(f"  {label + ' encode':<32}{enc:>7.0f}")
            print(f"  {label + ' decode':<32}{dec:>7.0f}   ({len(payload)} bytes)")


if __name__ == "__main__":
    main()
