"""SQLite L2 hit against a bare ``SELECT`` on the same table, in one run.

    python benchmarks/bench_sqlite.py [--keys 1000] [--rounds 7]

Reports the median ns per operation of:

- ``select``: ``conn.execute(SELECT value ...).fetchone()`` on the tier's own table and
  connection settings (the floor);
- ``tier.get``: the bare ``SQLiteTier.get`` (bytes in, bytes out);
- ``cache.get (L2 hit)``: ``cachet.sync.Cache.get`` that misses a one-entry L1 and hits the
  SQLite L2 (key encoding, the fallback walk, decoding and promotion into L1 included;
  keys cycle, so each get evicts the previous promotion);

- ``hand-written minimum``: the least an L2 hit must do, written inline: the ``SELECT``,
  the payload's CRC check, unpickling, one ``CacheEntry``, one store into a dict (no
  lock, flight, stats, expiry check or bounded L1): how much of the target is left for those;
- ``encoded.get``: the boundary's wrapper over the SQLite tier (key encoding + decoding);
- ``cache.get over memory L2``: the same cache shape with a plain memory L2 and no
  boundary: what the core's miss-walk-promote path costs on its own;

and the encode / decode costs of the boundary on their own. Target: cache.get at most
1.5x the bare SELECT.
"""

from __future__ import annotations

import argparse
import os
import pickle
import struct
import sys
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, per_call_ns, table

from cachet import Cache, CacheEntry
from cachet.serialize import JsonCodec, PickleCodec, Serializer, encode_key
from cachet.tiers import MemoryTier
from cachet.tiers._sqlite import _GET


def median(fn: Callable[[], object], number: int, rounds: int) -> float:
    return interleaved({"x": fn}, rounds=rounds, number=number, measure=per_call_ns)["x"]


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
    parser.add_argument("--rounds", type=int, default=15)
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

            crc_of = struct.Struct(">I").unpack_from
            floor_l1: dict[object, object] = {}

            def minimum(key: str) -> object:
                row = conn.execute(_GET, (ns, key.encode())).fetchone()
                payload = row[0]
                body = payload[7:]
                if zlib.crc32(body) != crc_of(payload, 3)[0]:
                    raise AssertionError("corrupt payload")
                entry = CacheEntry(pickle.loads(body), row[1], row[2])
                floor_l1.clear()
                floor_l1[key] = entry
                return entry

            assert minimum(keys[0]).value == value  # type: ignore[attr-defined]
            mem_l2 = MemoryTier()
            mem_cache: Cache[str, object] = (
                Cache.builder().memory(1).fallback(Cache.builder().storage(mem_l2)).build()
            )
            for k in keys:
                mem_cache.insert(k, value)

            results = interleaved({
                "select": cycler(bkeys, select),  # type: ignore[arg-type]
                "tier.get": cycler(bkeys, tier.get),  # type: ignore[arg-type]
                "hand-written minimum": cycler(keys, minimum),  # type: ignore[arg-type]
                "encoded.get": cycler(keys, l2.get),  # type: ignore[arg-type]
                "cache.get (L2 hit)": cycler(keys, cache.get),  # type: ignore[arg-type]
                "cache.get over memory L2": cycler(keys, mem_cache.get),  # type: ignore[arg-type]
            }, rounds=rounds, number=n)
            assert cache.get(keys[0]).value == value  # type: ignore[union-attr]
            stats = cache.stats()["tiers"]  # type: ignore[index]
            assert stats["sqlite"]["hits"] > 0

        core = results["cache.get (L2 hit)"] - results["encoded.get"]
        print(table(f"SQLite L2 hit, {n} keys, {len(Serializer().dumps(value))}-byte payload",
                    results, "select", {"cache.get (L2 hit)": 1.5}))
        print(f"\ncore walk + promotion (cache.get - encoded.get): {core:.0f} ns; "
              f"SQLite tier + boundary (encoded.get): {results['encoded.get']:.0f} ns\n")
        print("boundary costs, ns/op:")
        key = keys[7]
        print(f"  {'encode_key(str)':<32}{median(lambda: encode_key(key), 20000, rounds):>7.0f}")
        tkey = ("user", 42)
        print(f"  {'encode_key(tuple)':<32}{median(lambda: encode_key(tkey), 20000, rounds):>7.0f}")
        for label, ser in (("pickle", Serializer(PickleCodec())),
                           ("pickle+hmac", Serializer(PickleCodec(), secret=b"s" * 32)),
                           ("json", Serializer(JsonCodec()))):
            payload = ser.dumps(value)
            enc = median(lambda ser=ser: ser.dumps(value), 5000, rounds)  # type: ignore[misc]
            dec = median(lambda ser=ser, p=payload: ser.loads(p), 20000, rounds)  # type: ignore[misc]
            print(f"  {label + ' encode':<32}{enc:>7.0f}")
            print(f"  {label + ' decode':<32}{dec:>7.0f}   ({len(payload)} bytes)")


if __name__ == "__main__":
    main()
