"""A circuit breaker's probe for a Redis tier: is the server answering, asked in ~1 ms.

Why not the client's own ``PING``: a frozen server (``SIGSTOP``, a long fork, a full
network buffer) keeps accepting connections, so the client waits its whole socket
timeout (a second by default) before it fails, and the caller that probes pays it. The
probe opens a connection of its own to the client's address and sends ``PING``; any
reply (``+PONG``, or ``-NOAUTH`` from a server that wants a password) within
``timeout`` means alive. Cluster and TLS clients have no single plain address: their
probe is the client's ``PING`` under its own timeouts.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio

PROBE_TIMEOUT = 0.025
"""Seconds a probe waits for a reply: far above a healthy server's answer, and short
enough that a caller who probes a frozen server is not held up more than this."""

_PING = b"PING\r\n"

Address = tuple[str, int] | str  # (host, port), or a unix socket's path


def address(client: Any) -> Address | None:
    """Where ``client`` (a redis-py client, sync or asyncio) connects, if it is one plain
    TCP or unix-socket server; ``None`` for a cluster, TLS, or anything else."""
    pool = getattr(client, "connection_pool", None)
    kwargs = getattr(pool, "connection_kwargs", None)
    if not isinstance(kwargs, dict) or "ssl_context" in kwargs or kwargs.get("ssl"):
        return None
    cls_name = getattr(getattr(pool, "connection_class", None), "__name__", "")
    if cls_name == "UnixDomainSocketConnection" and isinstance(kwargs.get("path"), str):
        return str(kwargs["path"])
    if cls_name == "Connection":
        return str(kwargs.get("host", "localhost")), int(kwargs.get("port", 6379))
    return None


def _answered(reply: bytes) -> None:
    if reply[:1] not in (b"+", b"-"):
        raise ConnectionError(f"redis probe: no reply (got {reply[:16]!r})")


def ping(where: Address, timeout: float) -> None:
    """Raise ``OSError`` unless the server at ``where`` replies to ``PING`` in ``timeout``."""
    if isinstance(where, str):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(where)
        except BaseException:
            sock.close()
            raise
    else:
        sock = socket.create_connection(where, timeout=timeout)
    with sock:
        sock.sendall(_PING)
        _answered(sock.recv(64))


async def ping_async(where: Address, timeout: float) -> None:
    """:func:`ping` on the running anyio loop (asyncio or trio)."""
    try:
        with anyio.fail_after(timeout):
            if isinstance(where, str):
                stream: Any = await anyio.connect_unix(where)
            else:
                stream = await anyio.connect_tcp(*where)
            async with stream:
                await stream.send(_PING)
                _answered(await stream.receive(64))
    except TimeoutError as exc:
        raise ConnectionError(f"redis probe: no reply within {timeout}s") from exc
