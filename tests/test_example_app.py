"""The example web app (examples/webapp/app.py): run for real under uvicorn with 2 workers
sharing a real redis-server in front of the test double, and its error mapping in-process."""

from __future__ import annotations

import importlib.util
import os
import random
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from urllib.parse import quote

import anyio
import pytest
from anyio.abc import Process


def _require(module: str) -> None:
    """Skip without ``module`` (fail under CI: CI must run these tests)."""
    if importlib.util.find_spec(module) is None:
        reason = f"{module} is not installed (it is in the dev extra)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}: CI must run the example app's tests", pytrace=False)
        pytest.skip(reason, allow_module_level=True)


for _module in ("starlette", "uvicorn", "httpx"):
    _require(_module)

import httpx  # noqa: E402
from starlette.applications import Starlette  # noqa: E402

from examples.webapp.app import PID_HEADER, create_app, retry_after_header  # noqa: E402
from fanfare_async import FanfareClient, FanfareClientClosedError, decode_group_audiences  # noqa: E402
from fanfare_async.testing import Fault, MockFanfareServer  # noqa: E402

from ._redis_server import redis_server  # noqa: E402

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parent.parent
#: Seconds uvicorn and both workers may take to answer (2 cores, other tests running).
START_TIMEOUT = 20.0
#: Seconds the supervisor may take to stop its workers after SIGTERM.
STOP_TIMEOUT = 10.0
_STARTED_WORKER = re.compile(r"Started server process \[(\d+)\]")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _is_worker(pid: int) -> bool:
    """Whether ``pid`` is still a live (not zombie) multiprocessing child, as uvicorn's
    workers are: checked before anything is sent to it, so a reused pid is left alone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel only whether it exists
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    state = stat.rpartition(")")[2].split()[0]
    return state != "Z" and b"multiprocessing" in cmdline


class Uvicorn:
    """``uvicorn examples.webapp.app:app --workers 2`` on a free loopback port."""

    def __init__(self, process: Process, port: int, log: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log
        self.ready_pids: set[int] = set()
        #: Workers still running once the supervisor had exited (then killed by pid).
        self.leftover: list[int] = []

    @property
    def ready(self) -> bool:
        return len(self.ready_pids) >= 2

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def worker_pids(self) -> set[int]:
        """Every worker the supervisor started, from its log."""
        return {int(pid) for pid in _STARTED_WORKER.findall(self.log)}

    async def wait_ready(self) -> None:
        """Poll /healthz, a new connection each time, until both workers have answered."""
        limits = httpx.Limits(max_keepalive_connections=0)
        with anyio.fail_after(START_TIMEOUT):
            async with httpx.AsyncClient(base_url=self.url, timeout=2.0, limits=limits) as http:
                while not self.ready:
                    if self.process.returncode is not None:
                        raise RuntimeError(f"uvicorn exited with {self.process.returncode}")
                    try:
                        response = await http.get("/healthz")
                    except httpx.TransportError:
                        await anyio.sleep(0.05)
                        continue
                    assert response.status_code == 200, response.text
                    assert response.json() == {"status": "ok", "shared_tier": True}
                    self.ready_pids.add(int(response.headers[PID_HEADER]))
                    await anyio.sleep(0.01)

    async def stop(self) -> None:
        """SIGTERM the supervisor by its pid and wait (bounded); SIGKILL it past that.
        Then kill by pid any worker it left running (recorded in ``leftover``)."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            with anyio.move_on_after(STOP_TIMEOUT):
                await self.process.wait()
            if self.process.returncode is None:
                self.process.kill()
                await self.process.wait()
        for pid in sorted(self.worker_pids):
            if _is_worker(pid):
                self.leftover.append(pid)
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


@asynccontextmanager
async def uvicorn_app(env: dict[str, str], directory: Path) -> AsyncIterator[Uvicorn]:
    """The example app under uvicorn's multiprocess supervisor, stopped on exit."""
    last = ""
    for attempt in range(3):  # the free port may be taken between probing and binding it
        port = _free_port()
        log = directory / f"uvicorn-{attempt}.log"
        command = [
            sys.executable, "-m", "uvicorn", "examples.webapp.app:app",
            "--host", "127.0.0.1", "--port", str(port), "--workers", "2",
            "--no-access-log", "--timeout-graceful-shutdown", "5",
        ]  # fmt: skip
        with log.open("wb") as output:
            process = await anyio.open_process(
                command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=output
            )
        server = Uvicorn(process, port, log)
        try:
            try:
                await server.wait_ready()
            finally:
                if not server.ready:
                    with anyio.CancelScope(shield=True):
                        await server.stop()
        except Exception as exc:
            last = server.log
            if "address already in use" in last.lower():
                continue
            raise RuntimeError(f"the example app did not start ({exc!r}):\n{last}") from exc
        try:
            yield server
        finally:
            with anyio.CancelScope(shield=True):
                await server.stop()
        return
    raise RuntimeError(f"the example app would not start:\n{last}")


def app_env(server: MockFanfareServer, redis_url: str | None) -> dict[str, str]:
    """The process environment without a developer's FANFARE_*, plus the app's settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FANFARE_")}
    env["FANFARE_SECRET_KEY"] = server.secret_key
    env["FANFARE_BASE_URL"] = server.url
    if redis_url is not None:
        env["FANFARE_REDIS_URL"] = redis_url
        # Generous, so a loaded 2-core machine never times Redis out: past its timeout
        # the tier is skipped, and a skipped tier may fetch a group twice, by design.
        env["FANFARE_REDIS_TIMEOUT"] = "2"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def group_path(group_id: str) -> str:
    return f"/groups/{quote(group_id, safe='')}/audiences"


async def test_two_workers_share_one_request_per_group(tmp_path: Path) -> None:
    """Hundreds of concurrent requests over 50 groups, served by 2 uvicorn workers sharing
    Redis: right answers, 404s and 400s, one API request per group, clean shutdown."""
    async with redis_server() as srv, MockFanfareServer(seed=18, groups=50, latency=0.05) as api:
        groups = api.group_ids
        unknown = [f"unknown-{i}" for i in range(10)]
        invalid = [" ", "x" * 300]
        ids = [g for g in groups for _ in range(5)] + unknown * 2 + invalid * 2
        random.Random(18).shuffle(ids)
        answers: list[tuple[str, httpx.Response]] = []

        async with uvicorn_app(app_env(api, srv.url), tmp_path) as app:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=app.url, timeout=20.0, limits=limits) as http:

                async def fetch(group_id: str) -> None:
                    answers.append((group_id, await http.get(group_path(group_id))))

                with anyio.fail_after(20):
                    async with anyio.create_task_group() as tg:
                        for group_id in ids:
                            tg.start_soon(fetch, group_id)
            workers = app.worker_pids
            await app.stop()
            log = app.log
            exit_code = app.process.returncode
            leftover = app.leftover

        counts = {g: api.request_count(g) for g in groups}
        async with FanfareClient(api.secret_key, base_url=api.url) as direct:
            expected = await direct.get_many_group_audiences(groups)

    assert len(answers) == len(ids) == 250 + 20 + 4
    served_by: dict[str, set[int]] = {}
    for group_id, response in answers:
        assert api.secret_key not in response.text
        assert api.secret_key not in str(response.headers)
        served_by.setdefault(group_id, set()).add(int(response.headers[PID_HEADER]))
        if group_id in invalid:
            assert response.status_code == 400, response.text
            assert response.json()["error"] == "invalid_group_id"
        elif group_id in unknown:
            assert response.status_code == 404, response.text
            assert response.json()["error"] == "not_found"
        else:
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
            assert decode_group_audiences(response.content) == expected[group_id]
    assert all(isinstance(expected[g], list) and expected[g] for g in groups)
    assert counts == dict.fromkeys(groups, 1)
    assert len(workers) == 2
    assert set().union(*(served_by[g] for g in groups)) == workers  # both answered groups
    assert any(len(served_by[g]) == 2 for g in groups)  # some group by both, still 1 request
    assert exit_code == 0, log
    assert leftover == []
    assert log.count("Application shutdown complete.") == 2, log  # client and tier closed
    for trouble in ("Traceback", "Unclosed", "Task was destroyed", "ERROR"):
        assert trouble not in log, log


@asynccontextmanager
async def in_process_app(
    api: MockFanfareServer, monkeypatch: pytest.MonkeyPatch, **env: str
) -> AsyncIterator[tuple[httpx.AsyncClient, Starlette]]:
    """The example app on httpx's ASGI transport, its lifespan run around the block."""
    monkeypatch.delenv("FANFARE_REDIS_URL", raising=False)
    monkeypatch.setenv("FANFARE_SECRET_KEY", api.secret_key)
    monkeypatch.setenv("FANFARE_BASE_URL", api.url)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    app = create_app()
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as http,
    ):
        yield http, app


@pytest.mark.parametrize(("retry_after", "header"), [(30, "30"), (2.5, "3")])
async def test_a_429_answers_503_with_retry_after(
    monkeypatch: pytest.MonkeyPatch, retry_after: float, header: str
) -> None:
    """A 429 whose Retry-After exceeds max_retry_wait is a 503 at once, Retry-After rounded up."""
    async with MockFanfareServer(groups=1) as api:
        group = api.group_ids[0]
        async with in_process_app(api, monkeypatch, FANFARE_MAX_RETRY_WAIT="1") as (http, _):
            api.inject(Fault.error(429, retry_after=retry_after))
            with anyio.fail_after(5):  # not waited out
                response = await http.get(group_path(group))
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == header
    assert response.json()["error"] == "rate_limited"
    assert api.request_count(group) == 1
    assert api.secret_key not in response.text


def test_retry_after_header_rounds_up_with_a_default_of_1() -> None:
    """Whole seconds rounded up, never 0; 1 when the API named no wait."""
    assert [retry_after_header(s) for s in (None, 0.0, 0.2, 1.0, 1.01, 59.5)] == [
        "1", "1", "1", "1", "2", "60",
    ]  # fmt: skip
    assert retry_after_header(float("inf")) == "1"


async def test_errors_map_to_statuses_and_the_client_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """404, 400, another API error as 502 (without the key or the API's URL); shutdown
    closes the client; /healthz needs no API request."""
    async with MockFanfareServer(groups=1) as api:
        group = api.group_ids[0]
        async with in_process_app(api, monkeypatch) as (http, app):
            ok = await http.get(group_path(group))
            missing = await http.get(group_path("no-such-group"))
            invalid = await http.get(group_path("\x01"))
            api.inject(Fault.error(403))
            upstream = await http.get(group_path("another"))
            health = await http.get("/healthz")
            client = app.state.client
        assert isinstance(client, FanfareClient)
        with pytest.raises(FanfareClientClosedError):
            await client.get_group_audiences(group)
        total, url = api.total_requests, api.url
    assert ok.status_code == 200
    assert decode_group_audiences(ok.content)
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")
    assert (invalid.status_code, invalid.json()["error"]) == (400, "invalid_group_id")
    assert (upstream.status_code, upstream.json()) == (
        502,
        {"error": "upstream_error", "message": "upstream answered 403"},
    )
    assert (health.status_code, health.json()) == (200, {"status": "ok", "shared_tier": False})
    assert total == 3  # ok, missing, upstream; the invalid id and /healthz made none
    for response in (ok, missing, invalid, upstream, health):
        assert int(response.headers[PID_HEADER]) == os.getpid()
        assert api.secret_key not in response.text
        assert url not in response.text
