"""Throwaway ``redis-server`` processes for the tests and benchmarks.

Each server listens on a free loopback port with persistence off (``--save ''
--appendonly no``), is stopped by its PID, and can be killed and restarted on the same
port to simulate an outage. Without ``redis-server`` on PATH the tests skip, unless
``CACHET_REQUIRE_REDIS=1`` (set by ``.ci/run``), which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

START_TIMEOUT = 10.0


def require_redis_server() -> str:
    """The path of ``redis-server``, or skip (fail under ``CACHET_REQUIRE_REDIS=1``)."""
    import pytest

    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed"
        if os.environ.get("CACHET_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message}, and CACHET_REQUIRE_REDIS=1 requires it")
        pytest.skip(message)
    return path


def free_port(*, cluster: bool = False) -> int:
    """A loopback TCP port nobody listens on (and, for cluster nodes, its bus port + 10000)."""
    for _ in range(100):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if not cluster:
            return port
        if port + 10000 <= 65535 and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair found")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on ``127.0.0.1:port``."""

    def __init__(self, executable: str = "redis-server", port: int | None = None,
                 extra: tuple[str, ...] = (), workdir: str | None = None) -> None:
        self.executable = executable
        self.port = port if port is not None else free_port()
        self.extra = extra
        self.workdir = workdir or tempfile.mkdtemp(prefix="cachet-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        """Start the server and wait (bounded) until it answers PING."""
        if self.proc is not None:
            raise RuntimeError("already running")
        self.proc = subprocess.Popen(
            [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.workdir, "--protected-mode", "no",
             *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not _ping(self.port):
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"redis-server exited at start (port {self.port})")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer PING on port {self.port}")
            time.sleep(0.02)

    def kill(self) -> None:
        """Kill the server by its PID (SIGKILL: an outage, not a shutdown) and reap it."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self) -> None:
        """Stop the server by its PID (SIGTERM, then SIGKILL if it lingers)."""
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def restart(self) -> None:
        """Start again on the same port (after :meth:`kill`)."""
        self.kill()
        self.start()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


class RedisCluster:
    """A three-primary Redis Cluster on loopback ports (no replicas)."""

    def __init__(self, executable: str = "redis-server", nodes: int = 3) -> None:
        self.workdir = tempfile.mkdtemp(prefix="cachet-cluster-")
        self.servers: list[RedisServer] = []
        for i in range(nodes):
            port = free_port(cluster=True)
            node_dir = Path(self.workdir, str(i))
            node_dir.mkdir()
            self.servers.append(RedisServer(
                executable, port,
                ("--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
                 "--cluster-node-timeout", "2000"),
                workdir=str(node_dir),
            ))

    @property
    def url(self) -> str:
        return self.servers[0].url

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed")
        for s in self.servers:
            s.start()
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{s.port}" for s in self.servers),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
        )
        deadline = time.monotonic() + 20
        for s in self.servers:
            while b"cluster_state:ok" not in subprocess.run(
                [cli, "-p", str(s.port), "cluster", "info"], capture_output=True, timeout=5
            ).stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError("the cluster did not reach cluster_state:ok")
                time.sleep(0.05)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running_server() -> Iterator[RedisServer]:
    """A started server, stopped (by PID) on exit."""
    with RedisServer(require_redis_server()) as server:
        yield server
