"""A real ``redis-server`` for the shared-tier benchmarks, stopped by its pid.

``with RedisProcess(cpu=1) as redis: redis.url ...`` starts one on a free
loopback port (no persistence, a temp dir), pinned to ``cpu`` when given, and
waits until it answers PING. ``pause()`` / ``resume()`` send SIGSTOP / SIGCONT.
The same logic as ``tests/_redis_server.py``, without pytest and synchronous.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT = 10.0


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def redis_py_version() -> str | None:
    """redis-py's version when the ``redis`` extra is installed, else None."""
    try:
        import redis
    except ImportError:
        return None
    return str(redis.__version__)


def redis_server_version() -> str:
    binary = redis_server_binary()
    if binary is None:
        return "absent"
    proc = subprocess.run(  # noqa: S603 - a fixed binary
        [binary, "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    for word in proc.stdout.split():
        if word.startswith("v="):
            return word[2:]
    return proc.stdout.strip() or "unknown"


def free_port() -> int:
    """A loopback port nothing listens on (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _answers_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64) == b"+PONG\r\n"
    except OSError:
        return False


class RedisProcess:
    """One redis-server process on a free loopback port."""

    def __init__(self, *, cpu: int | None = None) -> None:
        self._cpu = cpu
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._paused = False
        self.port = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _spawn(self, directory: Path) -> subprocess.Popen[bytes]:
        binary = redis_server_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        argv = [
            binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(directory),
            "--logfile", str(directory / "redis.log"),
            "--daemonize", "no",
        ]  # fmt: skip
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL)  # noqa: S603 - a fixed binary

    def _start(self, directory: Path) -> None:
        self.port = free_port()
        process = self._process = self._spawn(directory)
        if self._cpu is not None and hasattr(os, "sched_setaffinity"):
            available = sorted(os.sched_getaffinity(0))
            if len(available) >= 2:
                os.sched_setaffinity(process.pid, {available[self._cpu % len(available)]})
        deadline = time.monotonic() + START_TIMEOUT
        while not _answers_ping(self.port):
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT} s")
            time.sleep(0.01)

    def __enter__(self) -> RedisProcess:
        self._tmp = tempfile.TemporaryDirectory(prefix="fanfare-bench-redis-")
        last: Exception | None = None
        for _ in range(3):  # the free port may be taken between probing and binding it
            try:
                self._start(Path(self._tmp.name))
            except RuntimeError as exc:
                last = exc
                self._stop()
            else:
                return self
        self._tmp.cleanup()
        raise RuntimeError(f"redis-server would not start: {last}")

    def flushall(self) -> None:
        """Drop every key (between runs, so Redis does not grow over the suite)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10.0) as sock:
            sock.sendall(b"FLUSHALL\r\n")
            reply = sock.recv(64)
        if reply != b"+OK\r\n":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, nothing answers."""
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        assert self._process is not None
        os.kill(self._process.pid, signal.SIGCONT)
        self._paused = False

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if self._paused:
            os.kill(process.pid, signal.SIGCONT)
            self._paused = False
        process.terminate()
        try:
            process.wait(timeout=START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=START_TIMEOUT)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
