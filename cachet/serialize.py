"""The byte boundary (SPEC §4): codecs, framing, signing, key encoding.

``.serialize(codec=None, *, secret=None)`` on a builder puts a boundary between typed
tiers above and byte tiers below. Each byte tier is wrapped by :func:`encoded_tier`,
which encodes keys with :func:`encode_key` and values with a :class:`Serializer`; the
byte tier stores a ``CacheEntry`` whose value is ``bytes`` and keeps ``cached_at`` and
``ttl`` as entry fields.

A payload is framed as::

    [version: 1 byte][codec tag: 1 byte][integrity: 1 byte][check][body]

``integrity`` is ``c`` (CRC-32, 4 bytes; catches corruption and truncation) without a
secret, or ``h`` (HMAC-SHA256, 32 bytes; also catches forgery) with one. The reader
knows which codec and which integrity it expects and demands exactly that header: the
payload never chooses how it is decoded, so a JSON payload is never fed to pickle and
an unsigned payload is never unpickled by a cache that has a secret.

Rules:

1. Decoding never raises out of a tier and never returns a wrong value: an empty,
   wrong-version, wrong-codec, corrupt, truncated or badly signed payload reads as a
   miss and is reported through ``on_decode_error``.
2. Encoding failures raise :class:`~cachet.SerializationError` naming the type.
3. Key bytes are a pure function of the key's value: equal keys (``1``, ``1.0``,
   ``True``) give equal bytes in every process, under every hash seed and Python version.
4. An unsigned pickle codec over a network tier (``network = True``) is refused at build
   time unless ``allow_unsigned_pickle=True``.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib
import inspect
import json
import os
import pickle
import stat
import struct
import warnings
import zlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import cloudpickle

from ._core.entry import CacheEntry, check_stamps, new_entry
from ._core.errors import DecodeError as DecodeError
from ._core.errors import SerializationError
from ._core.policy import InsertOutcome
from ._core.tier import Change

try:  # pragma: no cover - depends on the environment
    _orjson: Any = importlib.import_module("orjson")
except ImportError:  # pragma: no cover
    _orjson = None

__all__ = [
    "FORMAT_VERSION",
    "MAX_KEY_BYTES",
    "AsyncEncodedTier",
    "Codec",
    "DecodeError",
    "EncodedTier",
    "InsecureStoreWarning",
    "JsonCodec",
    "KeyEncodingError",
    "PickleCodec",
    "Serializer",
    "encode_key",
    "encoded_tier",
    "namespaced_key",
    "record_context",
]

FORMAT_VERSION = 2
"""The first byte of every payload. Bumped when the framing changes; old payloads then read
as misses. Version 2: the check (CRC or HMAC) covers the record's place and stamps too."""


class InsecureStoreWarning(UserWarning):
    """Emitted at build: unsigned pickles would be read from a file that other users can
    write (the file or its folder), so any of them could run code in this process."""


MAX_KEY_BYTES = 200
"""Encoded keys longer than this are replaced by a SHA-256 digest."""

_CRC = b"c"
_crc_struct = struct.Struct(">I")
_pack_crc = _crc_struct.pack
_unpack_crc = _crc_struct.unpack_from
_HMAC = b"h"
_MAC_SIZE = 32


# -- codecs ----------------------------------------------------------------------------


@runtime_checkable
class Codec(Protocol):
    """Turns values into bytes and back. Implement it to store values your own way.

    ``encode`` may raise anything on a value it cannot encode (the boundary reports it
    as ``SerializationError``); ``decode`` may raise anything on bytes it cannot read
    (the boundary turns that into a miss). A codec may set ``tag``, one byte that is
    written into each payload and checked on read, so payloads of another codec are
    never fed to this one (default ``b"u"``).

    >>> class Utf8Codec:
    ...     tag = b"t"
    ...     def encode(self, value: str) -> bytes: return value.encode()
    ...     def decode(self, data: bytes) -> str: return data.decode()
    >>> Serializer(Utf8Codec()).loads(Serializer(Utf8Codec()).dumps("hi"))
    'hi'
    """

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class PickleCodec:
    """The default codec: ``cloudpickle`` to encode (lambdas, local classes), ``pickle`` to decode.

    Unpickling runs code chosen by whoever wrote the bytes: give the boundary a
    ``secret`` (HMAC signing) whenever someone else could write to the store.
    """

    tag = b"p"

    def __init__(self, protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        self.protocol = protocol

    def encode(self, value: Any) -> bytes:
        data: bytes = cloudpickle.dumps(value, protocol=self.protocol)
        return data

    def decode(self, data: bytes) -> Any:
        return pickle.loads(data)

    def __repr__(self) -> str:
        return "PickleCodec()"


class JsonCodec:
    """Plain data as JSON: dicts with str keys, lists, str, int, float, bool, None.

    Uses ``orjson`` when installed, else the standard ``json`` module. Tuples come back
    as lists. Non-finite floats are refused by ``json``; ``orjson`` writes them as
    ``null``, so keep NaN and infinities out of JSON-cached values.
    """

    tag = b"j"

    def __init__(self) -> None:
        if _orjson is not None:
            self._dumps: Callable[[Any], bytes] = _orjson.dumps
            self._loads: Callable[[bytes], Any] = _orjson.loads
        else:  # pragma: no cover - exercised where orjson is missing
            self._dumps = _std_json_dumps
            self._loads = json.loads

    def encode(self, value: Any) -> bytes:
        return self._dumps(value)

    def decode(self, data: bytes) -> Any:
        return self._loads(data)

    def __repr__(self) -> str:
        return "JsonCodec()"


def _std_json_dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


# -- framing and signing ---------------------------------------------------------------


class KeyEncodingError(SerializationError, TypeError):
    """A key of a type the boundary cannot encode deterministically (also a ``TypeError``)."""


class Serializer:
    """Frames values as versioned, integrity-checked payloads for one codec.

    Without ``secret`` each payload carries a CRC-32 (corruption, truncation); with
    ``secret`` an HMAC-SHA256, compared in constant time. A serializer with a secret
    refuses unsigned payloads and the reverse.

    ``context`` (``dumps``/``loads``) is what the check covers besides the payload's
    own bytes; the encoded tiers pass :func:`record_context` (the namespace, the key and
    the stamps), so a payload moved to another key or namespace, or read with other
    stamps, fails its check and reads as a miss.

    >>> s = Serializer(PickleCodec(), secret=b"k")
    >>> s.loads(s.dumps({"a": (1, 2)}))
    {'a': (1, 2)}
    """

    __slots__ = ("_decode", "_encode", "_header", "_secret", "_sign", "codec", "signed")

    def __init__(self, codec: Any = None, *, secret: bytes | str | None = None) -> None:
        codec = PickleCodec() if codec is None else codec
        if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
            raise TypeError(
                f"a codec needs encode(value) -> bytes and decode(bytes) -> value; "
                f"{type(codec).__name__} lacks them"
            )
        tag = getattr(codec, "tag", b"u")
        if isinstance(tag, str):
            tag = tag.encode()
        if not isinstance(tag, bytes) or len(tag) != 1:
            raise ValueError(f"a codec's tag must be one byte; {type(codec).__name__}.tag is {tag!r}")
        if isinstance(secret, str):
            secret = secret.encode()
        if secret is not None and not secret:
            raise ValueError("secret must not be empty")
        self.codec = codec
        self.signed = secret is not None
        self._secret = secret
        self._encode: Callable[[Any], bytes] = codec.encode
        # The default codec's decode is pickle.loads itself: call it without the frame.
        self._decode: Callable[[bytes], Any] = pickle.loads if type(codec) is PickleCodec else codec.decode
        self._header = bytes([FORMAT_VERSION]) + tag + (_HMAC if secret is not None else _CRC)
        self._sign = _hmac_sha256(secret) if secret is not None else None

    def dumps(self, value: Any, context: bytes = b"") -> bytes:
        """The payload for ``value``, its check covering ``context`` too;
        ``SerializationError`` names the type that failed."""
        try:
            body = self._encode(value)
        except Exception as exc:
            raise SerializationError(
                f"cannot encode a value of type {_type_name(value)} with {self.codec!r}: {exc}"
            ) from exc
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise SerializationError(
                f"{self.codec!r}.encode() returned {type(body).__name__}, not bytes "
                f"(value of type {_type_name(value)})"
            )
        body = bytes(body)
        if self._secret is not None:
            assert self._sign is not None
            return self._header + self._sign(context, body) + body
        return self._header + _pack_crc(zlib.crc32(body, zlib.crc32(context))) + body

    def loads(self, payload: bytes, context: bytes = b"") -> Any:
        """The value in ``payload`` (written with ``context``), or :class:`DecodeError`
        saying what is wrong with it."""
        if type(payload) is not bytes:
            if not isinstance(payload, (bytearray, memoryview)):
                raise DecodeError(f"expected a bytes payload, got {type(payload).__name__}")
            payload = bytes(payload)
        if not payload.startswith(self._header):
            raise DecodeError(self._explain_header(payload))
        if self._secret is not None:
            if len(payload) < 3 + _MAC_SIZE:
                raise DecodeError("truncated payload: no room for its signature")
            body = payload[3 + _MAC_SIZE:]
            assert self._sign is not None
            mac = self._sign(context, body)
            if not hmac.compare_digest(mac, payload[3:3 + _MAC_SIZE]):
                raise DecodeError("bad signature: the payload was altered, moved to another key, "
                                  "its stamps changed, or it was signed with another secret")
        else:
            if len(payload) < 7:
                raise DecodeError("truncated payload: no room for its checksum")
            body = payload[7:]
            if zlib.crc32(body, zlib.crc32(context)) != _unpack_crc(payload, 3)[0]:
                raise DecodeError("checksum mismatch: the payload is corrupt, truncated, or not "
                                  "the one written for this key and stamps")
        try:
            return self._decode(body)
        except Exception as exc:
            raise DecodeError(f"{self.codec!r} could not decode the payload: {exc!r}") from exc

    def _explain_header(self, payload: bytes) -> str:
        if not payload:
            return "empty payload"
        if payload[0] != FORMAT_VERSION:
            return f"payload format version {payload[0]} (this cachet reads version {FORMAT_VERSION})"
        if len(payload) < 3:
            return "truncated payload header"
        if payload[1:2] != self._header[1:2]:
            return f"payload written by codec tag {payload[1:2]!r}; this boundary decodes {self._header[1:2]!r}"
        if self._secret is not None:
            return "unsigned payload refused: this boundary has a secret and only reads signed payloads"
        return "signed payload: this boundary has no secret to verify it"

    def __repr__(self) -> str:
        return f"Serializer({self.codec!r}, signed={self.signed})"


def _type_name(value: Any) -> str:
    t = type(value)
    return t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


# -- keys ------------------------------------------------------------------------------
#
# A str key is its UTF-8 bytes, so it reads as itself in the store. Every other key
# starts with 0xFF, a byte that never occurs in UTF-8, then a type tag:
#   N  None            #  a number, canonical: integral values as decimal ints (so 1, 1.0
#   b  bytes              and True agree), other floats as their shortest repr
#   x  an int too large for any float to equal it, in hex
#   (  tuple: each element's encoding with a decimal length prefix, "<len>:<bytes>"
#   h  the SHA-256 hex digest of an encoding longer than MAX_KEY_BYTES


def encode_key(key: Any, max_bytes: int = MAX_KEY_BYTES) -> bytes:
    """The deterministic bytes for ``key``; equal keys give equal bytes.

    Supports str, bytes, int, float, bool, None and tuples of these (nested). Anything
    else raises :class:`KeyEncodingError`: pass a key function that maps your keys to one
    of those types.

    >>> encode_key("user:42")
    b'user:42'
    >>> encode_key(1) == encode_key(1.0) == encode_key(True)
    True
    """
    t = type(key)
    data: bytes
    if t is str:
        data = key.encode("utf-8", "surrogatepass")
    elif t is tuple:
        data = _encode_tuple(key)
    else:
        data = _encode_other(key)
    if len(data) > max_bytes:
        return b"\xffh" + hashlib.sha256(data).hexdigest().encode()
    return data


_SMALL = 2**63
# A str this short encodes within MAX_KEY_BYTES (at most 4 UTF-8 bytes a character).
_SHORT_STR = MAX_KEY_BYTES // 4


def _encode_part(key: Any) -> bytes:
    if isinstance(key, str):
        return str.encode(key, "utf-8", "surrogatepass")
    return _encode_other(key)


def _encode_other(key: Any) -> bytes:
    if key is None:
        return b"\xffN"
    if isinstance(key, str):  # a str subclass (StrEnum): its str value
        return str.encode(key, "utf-8", "surrogatepass")
    if isinstance(key, int):  # bool and IntEnum included: True == 1
        n = int(key)
        if n.bit_length() > 1100:  # beyond any float; hex avoids the int-to-str digit limit
            return b"\xffx" + format(n, "x").encode()
        return b"\xff#" + str(n).encode()
    if isinstance(key, float):
        f = float(key)
        if f.is_integer():  # -0.0, 1.0, 1e300: equal to an int, so encoded as that int
            return b"\xff#" + str(int(f)).encode()
        return b"\xff#" + repr(f).encode()  # shortest round-trip repr: stable since 3.1
    if isinstance(key, bytes):
        return b"\xffb" + bytes(key)
    if isinstance(key, tuple):
        return _encode_tuple(key)
    raise KeyEncodingError(
        f"cannot encode a key of type {_type_name(key)} for a byte tier: keys below a "
        f"serialization boundary must be str, bytes, int, float, bool, None or tuples of "
        f"these; pass a key function (e.g. cached(key=lambda obj: obj.id)) that maps your "
        f"keys to one of them"
    )


def _encode_tuple(key: tuple[Any, ...]) -> bytes:
    out = [b"\xff("]
    for k in key:
        t = type(k)
        if t is str:
            p = k.encode("utf-8", "surrogatepass")
        elif t is int and -_SMALL < k < _SMALL:
            p = b"\xff#%d" % k
        else:
            p = _encode_part(k)
        out.append(b"%d:" % len(p))
        out.append(p)
    return b"".join(out)


def namespaced_key(namespace: str, key: bytes) -> bytes:
    """``<namespace>:<key>``, the form network tiers (Redis) store keys under."""
    return namespace.encode() + b":" + key


# -- the encoded tier ------------------------------------------------------------------

_PLACE = struct.Struct("<HH")  # lengths of the namespace and the key
_STAMPS = struct.Struct("<Bdd")  # flags (1: cached_at, 2: ttl), cached_at, ttl


def record_context(namespace: bytes, key: bytes, cached_at: float | None, ttl: float | None) -> bytes:
    """What a stored payload's check covers besides its own bytes: where it is stored
    (namespace and encoded key) and its stamps. A payload copied to another key, another
    namespace, or under rewritten stamps then fails the check (a miss, not a value)."""
    flags = (1 if cached_at is not None else 0) | (2 if ttl is not None else 0)
    return (_PLACE.pack(len(namespace), len(key)) + namespace + key
            + _STAMPS.pack(flags, cached_at or 0.0, ttl or 0.0))


DecodeHook = Callable[[bytes, Exception], None]


class _EncodedBase:
    __slots__ = ("_dumps", "_loads", "_namespace", "decode_errors", "inner", "name", "on_decode_error",
                 "serializer")

    def __init__(self, inner: Any, serializer: Serializer, *, name: str = "tier") -> None:
        self.inner = inner
        self.serializer = serializer
        self.name = name
        self.on_decode_error: DecodeHook | None = None
        """Called as ``hook(key_bytes, exc)`` for each payload that read as a miss."""
        self.decode_errors = 0
        """How many payloads read as misses because they could not be decoded."""
        self._dumps = serializer.dumps
        self._loads = serializer.loads
        namespace = getattr(inner, "namespace", None)  # signed with each payload (record_context)
        self._namespace = namespace.encode() if isinstance(namespace, str) else bytes(namespace or b"")

    def _from_row(self, key: bytes, row: tuple[Any, float | None, float | None]) -> CacheEntry[Any] | None:
        """The entry for a byte tier's ``get_row`` result (one entry built, not two)."""
        payload, cached_at, ttl = row
        try:
            check_stamps(cached_at, ttl)
            value = self._loads(payload, record_context(self._namespace, key, cached_at, ttl))
        except Exception as exc:  # DecodeError, or anything a broken byte tier handed back
            self._failed(key, exc)
            return None
        return new_entry(value, cached_at, ttl)  # ttl checked above, as CacheEntry would

    def _from_rows(self, keys: list[bytes], rows: list[Any]) -> list[CacheEntry[Any] | None]:
        """The entries for a byte tier's ``get_rows`` result: each slot a row, ``None``, or
        the ``DecodeError`` of a record the byte tier did not write (a counted miss)."""
        entries: list[CacheEntry[Any] | None] = []
        for k, row in zip(keys, rows, strict=True):
            if isinstance(row, DecodeError):
                self._failed(k, row)
                row = None
            entries.append(None if row is None else self._from_row(k, row))
        return entries

    def _decoded(self, key: bytes, stored: CacheEntry[Any]) -> CacheEntry[Any] | None:
        try:
            check_stamps(stored.cached_at, stored.ttl)
            value = self._loads(stored.value, record_context(self._namespace, key, stored.cached_at, stored.ttl))
        except Exception as exc:  # DecodeError, or anything a broken byte tier handed back
            self._failed(key, exc)
            return None
        return CacheEntry(value, stored.cached_at, stored.ttl)

    def _failed(self, key: bytes, exc: Exception) -> None:
        self.decode_errors += 1
        hook = self.on_decode_error
        if hook is not None:
            try:
                hook(key, exc)
            except Exception:  # a reporting failure must not turn a miss into an error
                pass

    def _encoded(self, key: bytes, entry: CacheEntry[Any]) -> CacheEntry[bytes]:
        context = record_context(self._namespace, key, entry.cached_at, entry.ttl)
        return CacheEntry(self._dumps(entry.value, context), entry.cached_at, entry.ttl)

    def _byte_change(self, key: bytes, change: Change) -> Change:
        """``change`` for the byte tier: it sees the decoded entry (``None`` for one that
        does not decode, as a read would) and its new entry is encoded."""

        def on_bytes(stored: CacheEntry[Any] | None) -> tuple[Any, Any]:
            new, result = change(None if stored is None else self._decoded(key, stored))
            if isinstance(new, CacheEntry):
                new = self._encoded(key, new)
            return new, result

        return on_bytes

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.serializer!r} over {self.inner!r}>"


class EncodedTier(_EncodedBase):
    """A typed tier over a sync byte tier: keys and values encoded, ``cached_at``/``ttl`` kept.

    ``nonblocking`` follows the inner tier, so the aio frontend calls it inline or in a
    worker thread exactly as it would the inner tier.
    """

    __slots__ = ("_get_row", "get_many", "len", "nonblocking", "update")

    def __init__(self, inner: Any, serializer: Serializer, *, name: str = "tier") -> None:
        super().__init__(inner, serializer, name=name)
        self.nonblocking = bool(getattr(inner, "nonblocking", False))
        # Many keys in one round trip (cachet._core.tier), where the byte tier can.
        self.get_many = self._get_many if callable(getattr(inner, "get_rows", None)) else None
        self._get_row: Callable[[bytes], tuple[bytes, float | None, float | None] | None] | None = (
            getattr(inner, "get_row", None))
        length = getattr(inner, "len", None)
        if length is not None:
            self.len = length
        # The atomic step (cachet._core.tier), where the byte tier has one.
        self.update = self._update if callable(getattr(inner, "update", None)) else None

    def get(self, key: Any) -> CacheEntry[Any] | None:
        # encode_key's first case, written out: most keys are short str.
        k = key.encode("utf-8", "surrogatepass") if type(key) is str and len(key) <= _SHORT_STR else (
            encode_key(key))
        get_row = self._get_row
        if get_row is not None:  # the inner tier can skip building an entry of bytes
            try:
                row = get_row(k)
            except DecodeError as exc:  # a record the byte tier did not write
                self._failed(k, exc)
                return None
            return None if row is None else self._from_row(k, row)
        stored = self.inner.get(k)
        if stored is None:
            return None
        return self._decoded(k, stored)

    def _get_many(self, keys: list[Any]) -> list[CacheEntry[Any] | None]:
        encoded = [encode_key(key) for key in keys]
        return self._from_rows(encoded, self.inner.get_rows(encoded))

    def insert(self, key: Any, entry: CacheEntry[Any]) -> InsertOutcome:
        k = encode_key(key)
        outcome: InsertOutcome = self.inner.insert(k, self._encoded(k, entry))
        return outcome

    def invalidate(self, key: Any) -> None:
        self.inner.invalidate(encode_key(key))

    def _update(self, key: Any, change: Change) -> Any:
        k = encode_key(key)
        return self.inner.update(k, self._byte_change(k, change))

    def clear(self) -> None:
        self.inner.clear()


class AsyncEncodedTier(_EncodedBase):
    """As :class:`EncodedTier`, over an async byte tier (coroutine methods)."""

    __slots__ = ("_get_row", "get_many", "len", "update")

    def __init__(self, inner: Any, serializer: Serializer, *, name: str = "tier") -> None:
        super().__init__(inner, serializer, name=name)
        get_rows = getattr(inner, "get_rows", None)
        self.get_many = self._get_many if inspect.iscoroutinefunction(get_rows) else None
        get_row = getattr(inner, "get_row", None)
        self._get_row: Callable[[bytes], Any] | None = (
            get_row if inspect.iscoroutinefunction(get_row) else None)
        length = getattr(inner, "len", None)
        if length is not None:
            self.len = length
        # The atomic step (cachet._core.tier), where the byte tier has one.
        self.update = self._update if callable(getattr(inner, "update", None)) else None

    async def get(self, key: Any) -> CacheEntry[Any] | None:
        k = key.encode("utf-8", "surrogatepass") if type(key) is str and len(key) <= _SHORT_STR else (
            encode_key(key))
        if self._get_row is not None:  # as EncodedTier.get
            try:
                row = await self._get_row(k)
            except DecodeError as exc:
                self._failed(k, exc)
                return None
            return None if row is None else self._from_row(k, row)
        stored = await self.inner.get(k)
        if stored is None:
            return None
        return self._decoded(k, stored)

    async def _get_many(self, keys: list[Any]) -> list[CacheEntry[Any] | None]:
        encoded = [encode_key(key) for key in keys]
        return self._from_rows(encoded, await self.inner.get_rows(encoded))

    async def insert(self, key: Any, entry: CacheEntry[Any]) -> InsertOutcome:
        k = encode_key(key)
        outcome: InsertOutcome = await self.inner.insert(k, self._encoded(k, entry))
        return outcome

    async def invalidate(self, key: Any) -> None:
        await self.inner.invalidate(encode_key(key))

    async def _update(self, key: Any, change: Change) -> Any:
        k = encode_key(key)
        return await self.inner.update(k, self._byte_change(k, change))

    async def clear(self) -> None:
        await self.inner.clear()


def encoded_tier(tier: Any, spec: Any) -> EncodedTier | AsyncEncodedTier:
    """Wrap the byte tier ``tier`` for the boundary described by ``spec`` (a ``TierSpec``).

    ``spec.codec`` is ``"default"`` (pickle) or a codec object; ``spec.secret`` turns on
    signing. Raises ``ValueError`` for an unsigned pickle codec over a tier that declares
    ``network = True``, unless ``spec.allow_unsigned_pickle``.
    """
    codec = spec.codec
    if codec is None or isinstance(codec, str):
        if codec not in (None, "default", "pickle", "json"):
            raise ValueError(f"unknown codec {codec!r}: pass a Codec object, 'pickle' or 'json'")
        codec = JsonCodec() if codec == "json" else PickleCodec()
    secret = spec.secret
    name = getattr(spec, "name", "tier")
    if (
        isinstance(codec, PickleCodec)
        and secret is None
        and getattr(tier, "network", False)
        and not getattr(spec, "allow_unsigned_pickle", False)
    ):
        raise ValueError(
            f"tier {name!r} is shared over the network and would unpickle unsigned bytes, which "
            f"lets anyone who can write to it run code in this process: set "
            f"serialize(secret=...) or use JsonCodec, or pass allow_unsigned_pickle=True"
        )
    if isinstance(codec, PickleCodec) and secret is None:
        _warn_if_others_can_write(getattr(tier, "path", None), name)
    try:
        serializer = Serializer(codec, secret=secret)
    except TypeError as exc:
        raise ValueError(f"tier {name!r}: {exc}") from exc
    if inspect.iscoroutinefunction(getattr(tier, "get", None)):
        return AsyncEncodedTier(tier, serializer, name=name)
    return EncodedTier(tier, serializer, name=name)


def _hmac_sha256(secret: bytes) -> Callable[[bytes, bytes], bytes]:
    """HMAC-SHA256 (RFC 2104) with the keyed inner and outer states computed once.

    Copying two prepared ``hashlib`` states per payload gives the same digest as
    ``hmac.digest(secret, context + body, "sha256")`` at a fraction of its cost.
    """
    key = hashlib.sha256(secret).digest() if len(secret) > 64 else secret
    key = key.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def sign(context: bytes, body: bytes) -> bytes:
        i = inner.copy()
        i.update(context)
        i.update(body)
        o = outer.copy()
        o.update(i.digest())
        return o.digest()

    return sign


def _warn_if_others_can_write(path: Any, name: str) -> None:
    """Warn when a local file read through an unsigned pickle codec, or its folder, is
    writable by users other than its owner (a folder such as ``/tmp`` lets them create
    the database, or its ``-wal`` file, before this process does)."""
    if not isinstance(path, str) or os.name != "posix" or path == ":memory:" or path.startswith("file:"):
        return
    path = os.path.abspath(path)
    for where in (path, os.path.dirname(path)):
        try:
            st = os.stat(where)
        except OSError:
            continue
        if _others_can_write(st):
            warnings.warn(
                f"tier {name!r}: {where} is writable by other users, and the cache unpickles "
                f"what it reads from {path}: any of them could run code in this process. Set "
                f"serialize(secret=...), use JsonCodec, or keep the file in a folder only you "
                f"can write",
                InsecureStoreWarning,
                stacklevel=_caller_level(),
            )
            return


def _caller_level() -> int:
    """The ``stacklevel`` of the first frame outside cachet (the user's ``build()``)."""
    import sys

    package = os.path.dirname(os.path.abspath(__file__))
    frame: Any = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename.startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def _others_can_write(st: os.stat_result) -> bool:
    if st.st_mode & stat.S_IWOTH:
        return True
    if not st.st_mode & stat.S_IWGRP:
        return False
    import grp
    import pwd

    try:  # a user's private group (umask 002 setups) holds nobody else
        group = grp.getgrgid(st.st_gid)
        private = not group.gr_mem and pwd.getpwuid(st.st_uid).pw_gid == st.st_gid
    except KeyError:
        return True
    return not private
