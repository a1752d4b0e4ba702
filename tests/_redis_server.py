"""A real ``redis-server`` for tests: a free loopback port, no persistence, a temp dir.

    from tests._redis_server import redis_server

    async with redis_server() as srv:
        srv.url, srv.port, srv.pid
        srv.pause()            # SIGSTOP: connections stay open, nothing answers
        srv.resume()           # SIGCONT
        srv.kill()             # SIGKILL, and reaped
        await srv.restart()    # kill if running, start again on the same port

Without a ``redis-server`` binary the test is skipped, or fails when the
environment variable ``CI`` is set (CI must run these tests, not skip them).
The server is stopped by its pid on exit, never by name.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path

import pytest

__all__ = ["RedisServer", "redis_server", "redis_server_binary"]

#: Seconds a start may take before the server counts as broken.
START_TIMEOUT = 10.0


def redis_server_binary() -> str:
    """The path of redis-server; skips the test (fails it under CI) when there is none."""
    path = shutil.which("redis-server")
    if path is None:
        reason = "redis-server is not installed (apt-get install redis-server)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the Redis tests", pytrace=False)
        pytest.skip(reason)
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def _answers_ping(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return await reader.readline() == b"+PONG\r\n"
    except OSError:
        return False
    finally:
        writer.close()
        with suppress(OSError):
            await writer.wait_closed()


class RedisServer:
    """One redis-server process on a fixed loopback port."""

    def __init__(self, binary: str, directory: Path, port: int) -> None:
        self._binary = binary
        self._directory = directory
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self._process is None:
            raise RuntimeError("redis-server is not running")
        return self._process.pid

    def _spawn(self) -> subprocess.Popen[bytes]:
        argv = [
            self._binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self._directory),
            "--logfile", str(self._directory / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # noqa: S603 - a fixed binary

    async def start(self) -> None:
        """Start the server and wait (bounded) until it answers PING."""
        process = self._process = self._spawn()
        self._paused = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while not await _answers_ping(self.port):
            if process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {process.returncode} on port {self.port}"
                )
            if loop.time() > deadline:
                self.kill()
                raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT} s")
            await asyncio.sleep(0.01)

    def pause(self) -> None:
        """SIGSTOP the server: its sockets stay open and nothing answers."""
        os.kill(self.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        """SIGCONT a paused server."""
        os.kill(self.pid, signal.SIGCONT)
        self._paused = False

    def kill(self) -> None:
        """SIGKILL the server and reap it (no-op when it is not running)."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait(timeout=START_TIMEOUT)
        self._paused = False

    async def restart(self) -> None:
        """Kill the server if it runs, then start a new one on the same port."""
        self.kill()
        await self.start()

    def stop(self) -> None:
        """Terminate the server by its pid (resuming it first if paused), then reap it."""
        process, self._process = self._process, None
        if process is None:
            return
        if self._paused:
            os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=START_TIMEOUT)


async def _started(binary: str, directory: Path) -> RedisServer:
    last: RuntimeError | None = None
    for _ in range(3):  # the free port may be taken between probing and binding it
        server = RedisServer(binary, directory, _free_port())
        try:
            await server.start()
        except RuntimeError as exc:
            server.kill()
            last = exc
        else:
            return server
    raise RuntimeError(f"redis-server would not start: {last}")


@asynccontextmanager
async def redis_server() -> AsyncIterator[RedisServer]:
    """A fresh redis-server for the block, stopped on exit."""
    binary = redis_server_binary()
    with tempfile.TemporaryDirectory(prefix="fanfare-redis-") as directory:
        server = await _started(binary, Path(directory))
        try:
            yield server
        finally:
            server.stop()
