"""The byte boundary (SPEC §4): codecs, framing, signing, key encoding, the encoded tier."""

from __future__ import annotations

import datetime
import decimal
import enum
import fractions
import os
import pickle
import subprocess
import sys
import uuid

import pytest

from cachet import CacheEntry, SerializationError, TierError
from cachet.serialize import (
    FORMAT_VERSION,
    AsyncEncodedTier,
    Codec,
    DecodeError,
    EncodedTier,
    JsonCodec,
    KeyEncodingError,
    PickleCodec,
    Serializer,
    encode_key,
    encoded_tier,
)
from cachet.testing import MockTier
from cachet.tiers import MemoryTier

pytestmark = pytest.mark.anyio


class Point:
    def __init__(self, x: int, y: int) -> None:
        self.x, self.y = x, y

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Point) and (self.x, self.y) == (other.x, other.y)


class Color(enum.Enum):
    RED = 1


PICKLE_VALUES = [
    None, True, False, 0, -1, 2**100, 1.5, float("inf"), "", "héllo ☃", b"\x00\xff", bytearray(b"ab"),
    [1, [2, [3]]], (1, "a", None), {"a": {"b": [1, 2]}}, {1, 2, 3}, frozenset({"x"}),
    decimal.Decimal("1.10"), fractions.Fraction(1, 3), complex(1, 2),
    datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), datetime.date(2024, 1, 2),
    datetime.timedelta(seconds=5), uuid.UUID(int=7), Color.RED, Point(1, 2), range(3),
    "x" * 100_000,
]
JSON_VALUES = [None, True, 0, -5, 2**62, 1.25, "", "héllo ☃", [1, "a", None, [2.5]],
               {"a": {"b": [1, 2]}, "c": None}]


def serializers() -> list[tuple[str, Serializer]]:
    return [("pickle", Serializer(PickleCodec())), ("pickle+hmac", Serializer(PickleCodec(), secret=b"k1")),
            ("json", Serializer(JsonCodec())), ("json+hmac", Serializer(JsonCodec(), secret="k2"))]


# -- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("value", PICKLE_VALUES, ids=lambda v: type(v).__name__)
@pytest.mark.parametrize("signed", [False, True])
def test_pickle_round_trip(value: object, signed: bool) -> None:
    s = Serializer(PickleCodec(), secret=b"secret" if signed else None)
    payload = s.dumps(value)
    assert payload[0] == FORMAT_VERSION
    assert s.loads(payload) == value
    assert type(s.loads(payload)) is type(value)


def test_pickle_codec_encodes_lambdas_and_local_classes() -> None:
    class Local:
        def __init__(self) -> None:
            self.f = lambda n: n * 2

    s = Serializer()
    assert s.loads(s.dumps(Local())).f(21) == 42


@pytest.mark.parametrize("value", JSON_VALUES, ids=repr)
@pytest.mark.parametrize("signed", [False, True])
def test_json_round_trip(value: object, signed: bool) -> None:
    s = Serializer(JsonCodec(), secret=b"secret" if signed else None)
    assert s.loads(s.dumps(value)) == value


def test_json_tuples_come_back_as_lists() -> None:
    s = Serializer(JsonCodec())
    assert s.loads(s.dumps({"t": (1, 2)})) == {"t": [1, 2]}


def test_user_codec_follows_the_protocol() -> None:
    class Upper:
        tag = b"U"

        def encode(self, value: str) -> bytes:
            return value.upper().encode()

        def decode(self, data: bytes) -> str:
            return data.decode()

    assert isinstance(Upper(), Codec)
    s = Serializer(Upper())
    assert s.loads(s.dumps("abc")) == "ABC"
    with pytest.raises(DecodeError, match="codec tag"):
        s.loads(Serializer(PickleCodec()).dumps("abc"))


def test_codec_without_methods_is_refused() -> None:
    with pytest.raises(TypeError, match="encode"):
        Serializer(object())


# -- encoding failures -----------------------------------------------------------------


def test_unpicklable_value_raises_serialization_error_naming_the_type() -> None:
    import threading

    with pytest.raises(SerializationError, match="lock"):
        Serializer().dumps(threading.Lock())


def test_json_refuses_non_json_value_naming_the_type() -> None:
    with pytest.raises(SerializationError, match="Point"):
        Serializer(JsonCodec()).dumps(Point(1, 2))


# -- soft failures: each kind of bad payload -------------------------------------------


def _bad_payloads(s: Serializer) -> dict[str, bytes]:
    good = s.dumps({"v": 1})
    other_version = bytes([FORMAT_VERSION + 1]) + good[1:]
    flipped = bytearray(good)
    flipped[-3] ^= 0x01
    return {
        "empty": b"",
        "one byte": good[:1],
        "wrong version": other_version,
        "zero version": b"\x00" + good[1:],
        "corrupt": bytes(flipped),
        "truncated": good[:-1],
        "header only": good[:3],
        "garbage": os.urandom(64),
        "bare pickle": pickle.dumps({"v": 1}),
    }


@pytest.mark.parametrize("name", ["pickle", "pickle+hmac", "json", "json+hmac"])
def test_every_bad_payload_is_a_decode_error(name: str) -> None:
    s = dict(serializers())[name]
    for what, payload in _bad_payloads(s).items():
        with pytest.raises(DecodeError):
            s.loads(payload)
            pytest.fail(f"{what} payload decoded")


def test_payload_signed_with_another_secret_is_refused() -> None:
    mine, theirs = Serializer(secret=b"mine"), Serializer(secret=b"theirs")
    with pytest.raises(DecodeError, match="signature"):
        mine.loads(theirs.dumps("v"))


def test_unsigned_pickle_is_refused_when_a_secret_is_set() -> None:
    class Boom:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (pytest.fail, ("an unsigned pickle was unpickled",))

    unsigned = Serializer(PickleCodec()).dumps(Boom())
    with pytest.raises(DecodeError, match="unsigned payload refused"):
        Serializer(PickleCodec(), secret=b"k").loads(unsigned)


def test_json_payload_is_never_fed_to_pickle() -> None:
    with pytest.raises(DecodeError, match="codec tag"):
        Serializer(PickleCodec()).loads(Serializer(JsonCodec()).dumps([1]))


# -- keys ------------------------------------------------------------------------------

KEYS = ["", "user:42", "héllo ☃", "\ud800", b"", b"user:42", 0, 1, -1, 2**64, 10**400, 1.5, -0.25,
        1e-7, float("inf"), float("-inf"), None, (), ("a", 1), ("a", (1, (None, b"x"))), ("a", "b"), ("ab",),
        "k" * 500, ("k",) * 100, True, False]


def test_equal_keys_are_one_key() -> None:
    assert encode_key(1) == encode_key(1.0) == encode_key(True)
    assert encode_key(0) == encode_key(0.0) == encode_key(-0.0) == encode_key(False)
    assert encode_key((1, "a")) == encode_key((1.0, "a")) == encode_key((True, "a"))
    assert encode_key(2.0**70) == encode_key(2**70)

    class Num(enum.IntEnum):
        ONE = 1

    assert encode_key(Num.ONE) == encode_key(1)


def test_unequal_keys_encode_apart() -> None:
    distinct = [k for k in KEYS if k is not True and k is not False]
    encoded = [encode_key(k) for k in distinct]
    assert len(set(encoded)) == len(encoded)
    # A str key never collides with a non-str key of the same text.
    assert encode_key("1") != encode_key(1)
    assert encode_key("user") != encode_key(b"user")
    assert encode_key(("a", "b")) != encode_key(("ab",)) != encode_key("ab")


def test_str_keys_are_readable_and_long_keys_hashed() -> None:
    assert encode_key("user:42") == b"user:42"
    long = encode_key("k" * 500)
    assert len(long) < 100 and long.startswith(b"\xffh")
    assert encode_key("k" * 500) == long


@pytest.mark.parametrize("key", [[1], {"a": 1}, {1}, frozenset({1}), object(), Point(1, 2), ("a", [1]),
                                 bytearray(b"x")])
def test_other_key_types_say_to_pass_a_key_function(key: object) -> None:
    with pytest.raises(KeyEncodingError, match="key function"):
        encode_key(key)
    assert issubclass(KeyEncodingError, TypeError) and issubclass(KeyEncodingError, SerializationError)


_KEY_SCRIPT = """
import sys
from cachet.serialize import encode_key
keys = ["", "user:42", "h\\u00e9llo", b"raw", 0, 1, 1.0, True, 2**64, 10**400, 1.5, 1e-7, None,
        ("a", 1), ("a", (1.5, (None, b"x"))), "k" * 500, float("inf")]
sys.stdout.write("\\n".join(encode_key(k).hex() for k in keys))
"""


def test_key_encoding_is_the_same_in_other_processes_and_hash_seeds() -> None:
    outputs = set()
    for seed in ("0", "1", "12345", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run([sys.executable, "-c", _KEY_SCRIPT], env=env, capture_output=True,
                             text=True, check=True, timeout=60).stdout
        outputs.add(out)
    assert len(outputs) == 1
    # ...and it is pinned: a change here breaks every store already written.
    lines = outputs.pop().splitlines()
    assert bytes.fromhex(lines[1]) == b"user:42"
    assert bytes.fromhex(lines[5]) == bytes.fromhex(lines[6]) == bytes.fromhex(lines[7]) == b"\xff#1"
    assert bytes.fromhex(lines[13]) == b"\xff(1:a3:\xff#1"


# -- the encoded tier ------------------------------------------------------------------


class _Spec:
    def __init__(self, codec: object = "default", secret: bytes | None = None,
                 allow_unsigned_pickle: bool = False, name: str = "l2") -> None:
        self.codec, self.secret, self.allow_unsigned_pickle, self.name = codec, secret, allow_unsigned_pickle, name


def test_encoded_tier_stores_bytes_and_keeps_entry_fields() -> None:
    inner = MemoryTier()
    tier = encoded_tier(inner, _Spec())
    assert isinstance(tier, EncodedTier) and tier.nonblocking
    tier.insert(("u", 1), CacheEntry({"a": 1}, cached_at=5.0, ttl=3.0))
    stored = inner.get(encode_key(("u", 1)))
    assert stored is not None and isinstance(stored.value, bytes)
    assert (stored.cached_at, stored.ttl) == (5.0, 3.0)
    assert tier.get(("u", 1.0)) == CacheEntry({"a": 1}, 5.0, 3.0)
    assert tier.len() == 1
    tier.invalidate(("u", True))
    assert tier.get(("u", 1)) is None


@pytest.mark.parametrize("what", ["empty", "wrong version", "corrupt", "truncated", "garbage", "bare pickle"])
def test_bad_payload_in_the_store_reads_as_a_reported_miss(what: str) -> None:
    inner = MemoryTier()
    tier = encoded_tier(inner, _Spec())
    seen: list[tuple[bytes, Exception]] = []
    tier.on_decode_error = lambda key, exc: seen.append((key, exc))
    inner.insert(b"k", CacheEntry(_bad_payloads(tier.serializer)[what], cached_at=1.0))
    assert tier.get("k") is None
    assert tier.decode_errors == 1
    assert seen and seen[0][0] == b"k" and isinstance(seen[0][1], DecodeError)


def test_other_secret_and_unsigned_pickle_read_as_misses_in_a_signed_tier() -> None:
    inner = MemoryTier()
    signed = encoded_tier(inner, _Spec(secret=b"mine"))
    encoded_tier(inner, _Spec(secret=b"theirs")).insert("a", CacheEntry(1, cached_at=1.0))
    encoded_tier(inner, _Spec()).insert("b", CacheEntry(2, cached_at=1.0))
    assert signed.get("a") is None and signed.get("b") is None
    assert signed.decode_errors == 2


def test_a_failing_hook_does_not_turn_the_miss_into_an_error() -> None:
    inner = MemoryTier()
    tier = encoded_tier(inner, _Spec())
    tier.on_decode_error = lambda key, exc: 1 / 0
    inner.insert(b"k", CacheEntry(b"", cached_at=1.0))
    assert tier.get("k") is None


def test_unsigned_pickle_over_a_network_tier_is_refused() -> None:
    net = MockTier()
    net.network = True  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"serialize\(secret=\.\.\.\).*JsonCodec.*allow_unsigned_pickle=True"):
        encoded_tier(net, _Spec())
    assert encoded_tier(net, _Spec(secret=b"k")) is not None
    assert encoded_tier(net, _Spec(codec=JsonCodec())) is not None
    assert encoded_tier(net, _Spec(allow_unsigned_pickle=True)) is not None
    assert encoded_tier(MockTier(), _Spec()) is not None  # not a network tier


def test_async_inner_tier_gets_an_async_wrapper() -> None:
    class AsyncBytes:
        def __init__(self) -> None:
            self.data: dict[bytes, CacheEntry[bytes]] = {}

        async def get(self, key: bytes) -> CacheEntry[bytes] | None:
            return self.data.get(key)

        async def insert(self, key: bytes, entry: CacheEntry[bytes]) -> object:
            self.data[key] = entry
            return None

        async def invalidate(self, key: bytes) -> None:
            self.data.pop(key, None)

        async def clear(self) -> None:
            self.data.clear()

    assert isinstance(encoded_tier(AsyncBytes(), _Spec()), AsyncEncodedTier)


async def test_async_tier_round_trip_through_the_aio_cache(anyio_backend: str, clock: object) -> None:
    from cachet.aio import Cache as AsyncCache

    class AsyncBytes:
        def __init__(self) -> None:
            self.data: dict[bytes, CacheEntry[bytes]] = {}

        async def get(self, key: bytes) -> CacheEntry[bytes] | None:
            return self.data.get(key)

        async def insert(self, key: bytes, entry: CacheEntry[bytes]) -> object:
            from cachet import InsertOutcome

            assert type(key) is bytes and type(entry.value) is bytes
            self.data[key] = entry
            return InsertOutcome.ACCEPTED

        async def invalidate(self, key: bytes) -> None:
            self.data.pop(key, None)

        async def clear(self) -> None:
            self.data.clear()

    store = AsyncBytes()
    cache = AsyncCache.builder(clock).memory(10).serialize(secret=b"s").fallback(store).build()
    async with cache:
        await cache.insert(("k", 1), {"v": [1, 2]})
        assert set(store.data) == {encode_key(("k", 1))}
        store.data[encode_key("bad")] = CacheEntry(b"\x01junk", cached_at=clock.now())  # type: ignore[attr-defined]
        assert await cache.get("bad") is None


# -- through a cache, on every frontend ------------------------------------------------


async def test_cache_round_trip_over_a_byte_tier(frontend, clock) -> None:
    l2 = MemoryTier()
    cache = (frontend.builder(clock).memory(10).serialize(JsonCodec(), secret=b"s")
             .fallback(frontend.builder(clock).storage(l2)).build())
    async with frontend.open(cache) as c:
        await c.insert("user:1", {"name": "ada", "langs": ["en"]})
        stored = l2.get(b"user:1")
        assert stored is not None and isinstance(stored.value, bytes) and stored.cached_at == clock.now()
        await c.invalidate("user:1")
        l2.insert(b"user:1", stored)  # only in L2 now
        entry = await c.get("user:1")
        assert entry is not None and entry.value == {"name": "ada", "langs": ["en"]}
        assert await c.get(1) is None
        await c.insert(1, "one")
        assert (await c.get(True)).value == "one"
        assert (await c.get(1.0)).value == "one"


async def test_corrupt_l2_payload_reads_as_a_miss_through_the_cache(frontend, clock) -> None:
    l2 = MemoryTier()
    cache = (frontend.builder(clock).memory(10).serialize()
             .fallback(frontend.builder(clock).storage(l2)).build())
    async with frontend.open(cache) as c:
        l2.insert(b"k", CacheEntry(b"\x01p", cached_at=clock.now()))
        assert await c.get("k") is None
        loaded = await c.get_or_insert("k", frontend.factory(lambda: "fresh"))
        assert loaded.value == "fresh"
        assert (await c.get("k")).value == "fresh"


async def test_unencodable_key_or_value_fails_loudly(frontend, clock) -> None:
    cache = (frontend.builder(clock).memory(10).serialize()
             .fallback(frontend.builder(clock).storage(MemoryTier())).build())
    async with frontend.open(cache) as c:
        import threading

        with pytest.raises((SerializationError, TierError)) as info:
            await c.insert("k", threading.Lock())
        err = info.value
        cause = err if isinstance(err, SerializationError) else err.__cause__
        assert isinstance(cause, SerializationError) and "lock" in str(cause)
        with pytest.raises((KeyEncodingError, TierError)) as info2:
            await c.insert(frozenset({1}), 1)
        err2 = info2.value
        cause2 = err2 if isinstance(err2, KeyEncodingError) else err2.__cause__
        assert isinstance(cause2, KeyEncodingError) and "key function" in str(cause2)


def test_redis_like_tier_refused_at_build_without_secret() -> None:
    from cachet import Cache

    net = MockTier()
    net.network = True  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="allow_unsigned_pickle"):
        Cache.builder().memory(10).serialize().fallback(net).build()
    Cache.builder().memory(10).serialize(secret="s").fallback(net).build().close()
    Cache.builder().memory(10).serialize(allow_unsigned_pickle=True).fallback(net).build().close()


@pytest.mark.parametrize("secret", [b"s", b"k" * 64, b"long" * 40])
@pytest.mark.parametrize("body", [b"", b"payload", bytes(range(256)) * 8])
def test_signature_is_standard_hmac_sha256(secret: bytes, body: bytes) -> None:
    import hmac

    from cachet.serialize import _hmac_sha256

    assert _hmac_sha256(secret)(b"", body) == hmac.digest(secret, body, "sha256")
    assert _hmac_sha256(secret)(b"ctx", body) == hmac.digest(secret, b"ctx" + body, "sha256")


@pytest.mark.parametrize("ttl", [-1.0, 0.0, float("nan"), "soon"])
def test_a_row_with_a_bad_ttl_reads_as_a_miss_and_a_decode_error(ttl: object) -> None:
    """A byte tier's ``get_row`` (the boundary's fast read) is not trusted with the ttl."""

    class RowTier(MemoryTier):
        def get_row(self, key: bytes) -> tuple[object, object, object] | None:
            entry = self.get(key)
            return None if entry is None else (entry.value, entry.cached_at, ttl)

    tier = EncodedTier(RowTier(), Serializer())
    tier.insert("k", CacheEntry({"v": 1}, 1.0))
    assert tier.get("k") is None and tier.decode_errors == 1
