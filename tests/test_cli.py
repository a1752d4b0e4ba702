"""The fanfare-async command, run as a real subprocess against the test double."""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import signal
import struct
import sys
import termios
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest

from fanfare_async import Audience, decode_group_audiences
from fanfare_async._cli import main
from fanfare_async.testing import Fault, MockFanfareServer

pytestmark = pytest.mark.anyio

TIMEOUT = 20.0
NO_RICH = "import sys; sys.modules['rich'] = None; from fanfare_async._cli import main; "


@dataclass
class Run:
    """A finished command: exit code, stdout bytes, stderr text."""

    code: int
    out: bytes
    err: str

    def records(self) -> list[dict[str, Any]]:
        """stdout as NDJSON, every line parsed on its own."""
        return [msgspec.json.decode(line) for line in self.out.splitlines()]


def cli_env(server: MockFanfareServer | None = None, **extra: str) -> dict[str, str]:
    """The environment for the child: the double's key and URL, no colour forcing."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    if server is not None:
        env["FANFARE_SECRET_KEY"] = server.secret_key
        env["FANFARE_BASE_URL"] = server.url
    env.update(extra)
    return env


async def spawn(*args: str, env: dict[str, str], **kwargs: Any) -> asyncio.subprocess.Process:
    """Start ``python -m fanfare_async ARGS`` (the in-process double keeps serving)."""
    kwargs.setdefault("stdin", asyncio.subprocess.DEVNULL)
    kwargs.setdefault("stdout", asyncio.subprocess.PIPE)
    kwargs.setdefault("stderr", asyncio.subprocess.PIPE)
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "fanfare_async", *args, env=env, **kwargs
    )


async def run_cli(*args: str, env: dict[str, str], stdin: bytes | None = None) -> Run:
    """Run the command to completion."""
    pipe = asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL
    proc = await spawn(*args, env=env, stdin=pipe)
    out, err = await asyncio.wait_for(proc.communicate(stdin), TIMEOUT)
    assert proc.returncode is not None
    return Run(proc.returncode, out, err.decode())


def as_models(data: Any) -> list[Audience]:
    """Printed JSON (bytes or parsed) back to models, to compare with the double's body."""
    raw = data if isinstance(data, bytes) else msgspec.json.encode(data)
    return decode_group_audiences(raw)


def ids_file(tmp_path: Path, *lines: str) -> str:
    """Write an ids file, one line each; returns its path."""
    path = tmp_path / "ids.txt"
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return str(path)


# -- get ----------------------------------------------------------------------------------


async def test_get_one_id_prints_its_array(server: MockFanfareServer) -> None:
    """`get ID` prints the group's JSON array (the API's camelCase data)."""
    group = server.group_ids[0]
    run = await run_cli("get", group, env=cli_env(server))
    assert run.code == 0, run.err
    assert as_models(run.out) == as_models(server.body_for(group))


async def test_get_several_ids_prints_an_object(server: MockFanfareServer) -> None:
    """`get A B` prints {id: array} for each id."""
    a, b = server.group_ids[:2]
    run = await run_cli("get", a, b, env=cli_env(server))
    assert run.code == 0, run.err
    document = msgspec.json.decode(run.out)
    assert list(document) == [a, b]
    assert as_models(document[b]) == as_models(server.body_for(b))


async def test_get_unknown_id_next_to_good_ids(server: MockFanfareServer) -> None:
    """`get A missing B`: exit 1, {A, B} on stdout as for all-success, the 404 on stderr."""
    a, b = server.group_ids[:2]
    run = await run_cli("get", a, "no-such-group", b, env=cli_env(server))
    assert run.code == 1
    document = msgspec.json.decode(run.out)
    assert list(document) == [a, b]
    assert as_models(document[a]) == as_models(server.body_for(a))
    assert as_models(document[b]) == as_models(server.body_for(b))
    assert run.out.count(b"\n") == 1  # one document
    assert run.err == (
        "fanfare-async: no-such-group: NotFoundError (404): "
        "Audience group no-such-group not found [GROUP_NOT_FOUND]\n"
    )
    assert server.secret_key not in run.err


async def test_get_one_unknown_id_prints_nothing(server: MockFanfareServer) -> None:
    """`get missing`: exit 1, nothing on stdout, the error on stderr."""
    run = await run_cli("get", "no-such-group", env=cli_env(server))
    assert run.code == 1
    assert run.out == b""
    assert "no-such-group: NotFoundError (404)" in run.err


async def test_get_every_id_failing_prints_nothing(server: MockFanfareServer) -> None:
    """`get x y` with no id found: exit 1, nothing on stdout, one stderr line per id."""
    run = await run_cli("get", "missing-1", "missing-2", env=cli_env(server))
    assert run.code == 1
    assert run.out == b""
    lines = run.err.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["missing-1", "missing-2"]
    assert all("NotFoundError (404)" in line for line in lines)


async def test_get_one_good_id_and_one_failing_keeps_the_object_shape(
    server: MockFanfareServer,
) -> None:
    """Two ids given, one found: stdout is still an object {id: array}, not a bare array."""
    a = server.group_ids[0]
    run = await run_cli("get", "no-such-group", a, env=cli_env(server))
    assert run.code == 1
    document = msgspec.json.decode(run.out)
    assert isinstance(document, dict)
    assert list(document) == [a]


async def test_get_proxy_page_reads_once_on_stderr(server: MockFanfareServer) -> None:
    """A 502 nginx page for one id reads "ServerError (502): Bad Gateway"; the other prints."""
    a, b = server.group_ids[:2]
    page = (
        b"<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway"
        b"</h1></center><hr><center>nginx/1.22.1</center></body></html>"
    )
    server.inject(Fault.error(502, body=page), group_id=b)
    run = await run_cli("get", "--max-retries", "0", a, b, env=cli_env(server))
    assert run.code == 1
    assert list(msgspec.json.decode(run.out)) == [a]
    assert run.err == f"fanfare-async: {b}: ServerError (502): Bad Gateway\n"


async def test_get_rejected_key_exits_1_with_readable_errors(server: MockFanfareServer) -> None:
    """A rejected key: exit 1, nothing on stdout, the API's error text per id, no key shown."""
    key = "sk_test_not_the_right_key_0000"
    a, b = server.group_ids[:2]
    run = await run_cli("get", a, b, env=cli_env(server, FANFARE_SECRET_KEY=key))
    assert run.code == 1
    assert run.out == b""
    assert f"{a}: AuthenticationError (401): Secret key required" in run.err
    assert "None" not in run.err
    assert key not in run.err


# -- bulk ---------------------------------------------------------------------------------


async def test_bulk_file_with_comments_blanks_and_invalid_lines(
    server: MockFanfareServer, tmp_path: Path
) -> None:
    """One record per distinct id; an invalid line is reported with its number; exit 1."""
    good = server.group_ids[:3]
    path = ids_file(
        tmp_path, "# ids", good[0], "", "  ", good[1], "x" * 300, good[0], "missing", good[2]
    )
    run = await run_cli("bulk", path, env=cli_env(server))
    assert run.code == 1
    records = {r["group_id"]: r for r in run.records()}
    assert len(run.out.splitlines()) == len(records) == 5
    for group in good:
        assert records[group]["ok"] is True
        assert as_models(records[group]["audiences"]) == as_models(server.body_for(group))
    invalid = records["x" * 300]
    assert invalid["line"] == 6
    assert invalid["error"]["type"] == "InvalidGroupIdError"
    error = records["missing"]["error"]
    assert (error["type"], error["status"]) == ("NotFoundError", 404)
    assert "missing" in error["message"]
    assert "3 ok, 2 failed" in run.err
    assert server.total_requests == 4  # the invalid id never went out


async def test_bulk_all_valid_exits_0(server: MockFanfareServer, tmp_path: Path) -> None:
    """Every id found: exit 0 and a summary line on stderr."""
    path = ids_file(tmp_path, *server.group_ids)
    run = await run_cli("bulk", path, env=cli_env(server))
    assert run.code == 0, run.err
    assert sorted(r["group_id"] for r in run.records()) == sorted(server.group_ids)
    assert "fanfare-async: 50 ok, 0 failed of 50" in run.err


async def test_bulk_reads_stdin(server: MockFanfareServer) -> None:
    """`bulk -` reads ids from stdin, CRLF line ends included."""
    data = "\r\n".join(server.group_ids[:5]).encode()
    run = await run_cli("bulk", "-", env=cli_env(server), stdin=data)
    assert run.code == 0, run.err
    assert {r["group_id"] for r in run.records()} == set(server.group_ids[:5])


async def test_bulk_rejected_key_stops_with_exit_1(
    server: MockFanfareServer, tmp_path: Path
) -> None:
    """A key the API rejects is an id failure (exit 1) and stops the run."""
    env = cli_env(server, FANFARE_SECRET_KEY="sk_test_not_the_right_key_0000")
    run = await run_cli("bulk", ids_file(tmp_path, *server.group_ids), env=env)
    assert run.code == 1
    assert run.records()[0]["error"]["type"] == "AuthenticationError"
    assert "rejected the secret key" in run.err
    assert server.total_requests < 50


async def test_bulk_unreadable_file_exits_2(server: MockFanfareServer, tmp_path: Path) -> None:
    """A missing file is a usage error."""
    run = await run_cli("bulk", str(tmp_path / "nope.txt"), env=cli_env(server))
    assert run.code == 2
    assert "cannot read" in run.err
    assert run.out == b""


async def test_missing_key_exits_2(server: MockFanfareServer) -> None:
    """No FANFARE_SECRET_KEY at all: exit 2 naming the variable."""
    env = cli_env(server)
    del env["FANFARE_SECRET_KEY"]
    run = await run_cli("get", server.group_ids[0], env=env)
    assert run.code == 2
    assert "FANFARE_SECRET_KEY" in run.err


async def test_bad_url_exits_2(server: MockFanfareServer) -> None:
    """An unusable base URL is a configuration error, and the key is never shown."""
    run = await run_cli("bulk", "--base-url", "ftp://example.com", env=cli_env(server), stdin=b"")
    assert run.code == 2
    assert "base_url" in run.err
    assert server.secret_key not in run.err


@pytest.mark.parametrize("command", [[], ["get"], ["bulk"], ["mock-server"], ["demo"]])
async def test_help_exits_0(command: list[str]) -> None:
    """`--help` works for the command and for every subcommand."""
    run = await run_cli(*command, "--help", env=cli_env())
    assert run.code == 0
    assert b"usage: fanfare-async" in run.out
    assert b"FANFARE_SECRET_KEY" in run.out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    """Bad option values and a missing subcommand are usage errors (in-process)."""
    assert main(["bulk", "--concurrency", "0"]) == 2
    assert main([]) == 2
    assert "must be >= 1" in capsys.readouterr().err


# -- terminals, pipes and signals ---------------------------------------------------------


async def run_with_pty_stderr(
    *args: str, env: dict[str, str], program: tuple[str, ...] = ("-m", "fanfare_async")
) -> tuple[int, bytes, bytes]:
    """Run the command with stderr on a pseudo-terminal; returns (code, stdout, terminal)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    screen = bytearray()
    loop = asyncio.get_running_loop()
    os.set_blocking(master, False)

    def drain() -> None:
        try:
            screen.extend(os.read(master, 65536))
        except (BlockingIOError, OSError):
            loop.remove_reader(master)

    loop.add_reader(master, drain)
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, *program, *args, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=slave,
        )  # fmt: skip
        os.close(slave)
        out, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
        await asyncio.sleep(0.05)
        drain()
    finally:
        loop.remove_reader(master)
        os.close(master)
    assert proc.returncode is not None
    return proc.returncode, out, bytes(screen)


async def test_progress_display_on_a_terminal(server: MockFanfareServer, tmp_path: Path) -> None:
    """With stderr on a terminal, rich's live display shows done/total, ETA, cache hits."""
    server.latency = 0.01
    env = cli_env(server, TERM="xterm-256color")
    code, out, screen = await run_with_pty_stderr(
        "bulk", ids_file(tmp_path, *server.group_ids), env=env
    )
    assert code == 0, screen
    assert b"50/50" in screen
    assert b"ETA" in screen
    assert b"cache hits" in screen
    assert b"\x1b[" in screen  # a live display, redrawn in place
    assert b"50 ok, 0 failed of 50" in screen
    assert len(Run(code, out, "").records()) == 50  # stdout stays clean NDJSON


async def test_plain_progress_without_rich(server: MockFanfareServer, tmp_path: Path) -> None:
    """Without rich installed the terminal gets plain status lines, no escape codes."""
    env = cli_env(server, TERM="xterm-256color")
    path = ids_file(tmp_path, *server.group_ids)
    program = ("-c", NO_RICH + f"sys.exit(main(['bulk', {path!r}]))")
    code, _, screen = await run_with_pty_stderr(env=env, program=program)
    assert code == 0, screen
    assert b"/50 done" in screen
    assert b"ETA" in screen
    assert b"\x1b" not in screen


async def test_piped_output_is_clean(server: MockFanfareServer, tmp_path: Path) -> None:
    """stdout and stderr piped: NDJSON and one summary line, no ANSI escapes anywhere."""
    env = cli_env(server, TERM="xterm-256color")
    run = await run_cli("bulk", ids_file(tmp_path, *server.group_ids, "nope"), env=env)
    assert run.code == 1
    assert b"\x1b" not in run.out
    assert "\x1b" not in run.err
    assert len(run.records()) == 51
    assert run.err.count("\n") == 1
    assert run.err.startswith("fanfare-async: 50 ok, 1 failed (1 NotFoundError) of 51 in ")


async def test_sigint_stops_cleanly_with_partial_summary(tmp_path: Path) -> None:
    """Ctrl-C: exit 130, the partial summary on stderr, every written line complete."""
    async with MockFanfareServer(seed=3, groups=400, latency=0.05) as slow:
        path = ids_file(tmp_path, *slow.group_ids)
        proc = await spawn("bulk", "--concurrency", "4", path, env=cli_env(slow))
        assert proc.stdout is not None
        head = b"".join([await asyncio.wait_for(proc.stdout.readline(), TIMEOUT) for _ in range(3)])
        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 130
    records = Run(130, head + rest, "").records()
    assert 3 <= len(records) < 400
    assert all(r["ok"] for r in records)
    assert rest.endswith(b"\n") or rest == b""
    summary = err.decode().strip().splitlines()[-1]
    assert summary.startswith(f"fanfare-async: {len(records)} ok, 0 failed")
    assert summary.endswith("interrupted")


# -- demo, mock-server, import ------------------------------------------------------------


async def test_demo_second_pass_is_served_from_the_cache() -> None:
    """`demo` fetches twice; the second pass makes no request."""
    run = await run_cli("demo", "--groups", "300", env=cli_env())
    assert run.code == 0, run.err
    text = run.out.decode()
    assert "pass 1: 300 groups, 300 requests" in text
    assert "pass 2: 300 groups, 0 requests" in text
    assert "cache hits 300" in text
    assert "the second pass made 0 requests" in text


async def test_mock_server_prints_url_and_secret_then_stops_on_sigterm() -> None:
    """`mock-server --port 0` announces itself, serves, and exits 0 on SIGTERM."""
    proc = await spawn("mock-server", "--port", "0", "--groups", "5", env=cli_env())
    assert proc.stdout is not None
    lines: dict[str, str] = {}
    while "secret" not in lines:
        line = (await asyncio.wait_for(proc.stdout.readline(), TIMEOUT)).decode()
        assert line, "mock-server exited early"
        key, _, value = line.partition(": ")
        lines[key] = value.strip()
    assert lines["url"].startswith("http://127.0.0.1:")
    assert lines["secret"].startswith("sk_test_")
    env = cli_env(FANFARE_SECRET_KEY=lines["secret"], FANFARE_BASE_URL=lines["url"])
    run = await run_cli("get", "no-such-group", env=env)
    assert "NotFoundError (404)" in run.err  # it really serves
    proc.send_signal(signal.SIGTERM)
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    assert proc.returncode == 0
    assert b"export FANFARE_BASE_URL=" in out
    assert b"stopped after 1 request\n" in err


async def test_import_does_not_load_rich() -> None:
    """`import fanfare_async` never imports rich (only the live display does)."""
    code = "import sys, fanfare_async; assert 'rich' not in sys.modules"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, env=cli_env())
    assert await asyncio.wait_for(proc.wait(), TIMEOUT) == 0
