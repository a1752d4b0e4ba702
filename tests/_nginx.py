"""A real nginx reverse proxy for integration tests, started and stopped by its pid.

::

    async with MockFanfareServer() as server, nginx_proxy(server.url, rate=200, burst=50) as proxy:
        client = FanfareClient(server.secret_key, base_url=proxy.url + "/api")
        ...
        await proxy.stop()            # flushes the access log
        proxy.statuses()              # Counter({200: ..., 429: ...})

Each proxy gets a temporary directory holding its nginx.conf, pid file, error and access logs
and every ``*_temp_path``, and listens on a free 127.0.0.1 port. nginx is looked up at
``/usr/sbin/nginx``, then on ``PATH``; when it is missing, :func:`nginx_binary` fails the test
if the ``CI`` environment variable is set (CI installs it, so a missing nginx is a broken
machine) and skips it otherwise.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import anyio
import anyio.to_thread
import pytest
from yarl import URL

__all__ = ["AccessLogEntry", "NginxProxy", "free_port", "nginx_binary", "nginx_proxy"]

_DEFAULT_NGINX: Final = "/usr/sbin/nginx"
_START_TIMEOUT: Final = 10.0
_STOP_TIMEOUT: Final = 5.0
_START_ATTEMPTS: Final = 3
#: One access-log line per request: status, gzip ratio ("-" when not compressed), the
#: connection's serial number and how many requests it had carried, upstream status.
_LOG_FORMAT: Final = "$status $gzip_ratio $connection $connection_requests $upstream_status"


def nginx_binary() -> str:
    """The nginx executable; fails the test in CI (``CI`` set) when it is missing, else skips."""
    if os.access(_DEFAULT_NGINX, os.X_OK):
        return _DEFAULT_NGINX
    found = shutil.which("nginx")
    if found is not None:
        return found
    reason = f"nginx not found at {_DEFAULT_NGINX} or on PATH (apt-get install nginx-light)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class AccessLogEntry:
    """One request as nginx logged it."""

    status: int
    gzipped: bool
    """Whether nginx compressed the response (``$gzip_ratio`` was set)."""
    connection: int
    connection_requests: int
    """The request's serial number on its client connection (1 for the first)."""
    upstream_status: str
    """``$upstream_status``: "-" when nginx answered by itself (a 429 from limit_req)."""


def render_config(
    directory: Path,
    *,
    port: int,
    upstream: str,
    rate: float | None,
    burst: int,
    nodelay: bool,
    gzip: bool,
    keepalive_requests: int,
    upstream_keepalive: int,
) -> str:
    """The nginx.conf of one proxy; every path it writes lies in ``directory``."""
    d = directory
    limit_zone = limit = ""
    if rate is not None:
        # nginx takes r/s in whole requests; r/m gives finer rates below 1/s.
        per = f"{round(rate)}r/s" if rate >= 1 else f"{round(rate * 60)}r/m"
        limit_zone = f"limit_req_zone $server_name zone=fanfare:1m rate={per};"
        limit = (
            f"limit_req zone=fanfare burst={burst}{' nodelay' if nodelay else ''};\n"
            "            limit_req_status 429;\n"
            "            limit_req_log_level info;"
        )
    compression = (
        "gzip on;\n"
        "        gzip_types application/json;\n"
        "        gzip_min_length 20;\n"
        "        gzip_proxied any;"
        if gzip
        else "gzip off;"
    )
    return f"""\
daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;

events {{
    worker_connections 1024;
}}

http {{
    log_format fanfare '{_LOG_FORMAT}';
    access_log {d}/access.log fanfare;
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    {limit_zone}

    upstream fanfare_upstream {{
        server {upstream};
        keepalive {upstream_keepalive};
    }}

    server {{
        listen 127.0.0.1:{port};
        server_name fanfare_proxy;
        keepalive_requests {keepalive_requests};
        {compression}

        location / {{
            {limit}
            proxy_pass http://fanfare_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_max_temp_file_size 0;
        }}
    }}
}}
"""


class NginxProxy:
    """A running nginx in front of one upstream; see :func:`nginx_proxy`."""

    def __init__(self, process: subprocess.Popen[bytes], directory: Path, port: int) -> None:
        self.process = process
        self.directory = directory
        self.port = port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, without a path: add the upstream's base path."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        """The nginx master's pid."""
        return self.process.pid

    @property
    def access_log(self) -> Path:
        """The access log (complete once :meth:`stop` has returned)."""
        return self.directory / "access.log"

    def entries(self) -> list[AccessLogEntry]:
        """The access log's lines, parsed."""
        entries = []
        for line in self.access_log.read_text().splitlines():
            status, ratio, connection, serial, upstream = line.split(" ", 4)
            entries.append(
                AccessLogEntry(int(status), ratio != "-", int(connection), int(serial), upstream)
            )
        return entries

    def statuses(self) -> collections.Counter[int]:
        """How many responses of each status nginx sent."""
        return collections.Counter(entry.status for entry in self.entries())

    def error_log(self) -> str:
        """nginx's error log and what it wrote to stderr, for failure messages."""
        parts = []
        for name in ("stderr.log", "error.log"):
            path = self.directory / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    async def stop(self) -> None:
        """Graceful shutdown by pid (SIGQUIT), then SIGKILL of its process group; idempotent.

        Once it returns, every request nginx handled is in the access log.
        """
        process = self.process
        if process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGQUIT)
        # Shielded: a cancelled test still reaps its nginx.
        with anyio.CancelScope(shield=True):
            try:
                await anyio.to_thread.run_sync(process.wait, _STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                # The master leads its own process group (start_new_session): the worker
                # goes with it.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await anyio.to_thread.run_sync(process.wait)


async def _wait_until_listening(proxy: NginxProxy) -> bool:
    """True once the port accepts connections; False if nginx exited first."""
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if proxy.process.poll() is not None:
            return False
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        except OSError:
            await asyncio.sleep(0.01)  # readiness polling, bounded by the deadline
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    await proxy.stop()
    raise TimeoutError(
        f"nginx did not listen on 127.0.0.1:{proxy.port} within {_START_TIMEOUT}s:\n"
        + proxy.error_log()
    )


def _upstream_address(upstream: str) -> str:
    url = URL(upstream)
    if url.scheme != "http" or url.host is None or url.port is None:
        raise ValueError(f"upstream must be an http URL with host and port, got {upstream!r}")
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{url.port}"


@contextlib.asynccontextmanager
async def nginx_proxy(
    upstream: str,
    *,
    rate: float | None = None,
    burst: int = 0,
    nodelay: bool = True,
    gzip: bool = True,
    keepalive_requests: int = 1000,
    upstream_keepalive: int = 32,
) -> AsyncIterator[NginxProxy]:
    """Run nginx as a reverse proxy to ``upstream`` (``http://host:port``; any path is dropped,
    the request's own path goes through unchanged) while the block runs.

    ``rate`` (requests/second) turns on ``limit_req`` with ``burst`` and ``limit_req_status
    429``: the bare 429s of a gateway, no Retry-After, no rate-limit headers. With ``nodelay``
    (the default) requests past the burst are rejected at once; without it nginx queues up to
    ``burst`` of them to pace them, and rejects only beyond that. ``gzip`` compresses JSON
    answers when the client accepts it; ``keepalive_requests`` is how many requests nginx
    serves on one client connection before it closes it. Upstream connections are kept alive
    (HTTP/1.1, a pool of ``upstream_keepalive``).
    """
    binary = nginx_binary()
    address = _upstream_address(upstream)
    with tempfile.TemporaryDirectory(prefix="fanfare-nginx-") as name:
        directory = Path(name)
        proxy = None
        for _ in range(_START_ATTEMPTS):
            port = free_port()
            config = render_config(
                directory,
                port=port,
                upstream=address,
                rate=rate,
                burst=burst,
                nodelay=nodelay,
                gzip=gzip,
                keepalive_requests=keepalive_requests,
                upstream_keepalive=upstream_keepalive,
            )
            process = await anyio.to_thread.run_sync(_launch, binary, directory, config)
            proxy = NginxProxy(process, directory, port)
            try:
                if await _wait_until_listening(proxy):
                    break
            except BaseException:
                await proxy.stop()
                raise
            await anyio.to_thread.run_sync(process.wait)
            if "Address already in use" not in proxy.error_log():
                break  # another port will not help
        assert proxy is not None
        if proxy.process.poll() is not None:
            raise RuntimeError(
                f"nginx exited with {proxy.process.returncode}:\n{proxy.error_log()}"
            )
        try:
            yield proxy
        finally:
            await proxy.stop()


def _launch(binary: str, directory: Path, config: str) -> subprocess.Popen[bytes]:
    """Write ``config`` into ``directory`` and start nginx on it (blocking: run in a thread)."""
    # nginx's workers drop root to "nobody"; they must reach the temp paths in here.
    directory.chmod(0o755)
    conf = directory / "nginx.conf"
    conf.write_text(config)
    with (directory / "stderr.log").open("wb") as stderr:
        return subprocess.Popen(  # noqa: S603 - a fixed binary and arguments
            [binary, "-c", str(conf), "-p", str(directory), "-e", "stderr"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
