"""The pytest plugin, run on throwaway projects in a subprocess (as a user's suite would run it)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from importlib.metadata import entry_points

import pytest

pytest_plugins = ["pytester"]

#: What leaked sessions, connections or tasks print; none may appear in a throwaway's output.
LEAK_SIGNS = (
    "Unclosed",
    "unclosed",
    "Task was destroyed",
    "never awaited",
    "ResourceWarning",
    "PytestUnraisableExceptionWarning",
)

#: A user's conftest: gc after each test, so a leak shows as that test's error under -W error.
CONFTEST = """
    import gc

    import pytest


    @pytest.fixture
    def anyio_backend():
        return "asyncio"


    @pytest.fixture(autouse=True)
    def _collect_garbage():
        yield
        gc.collect()
"""

#: The body of a test using both fixtures: one lookup that fetches, one served by the cache.
LOOKUP = """\
group_id = fanfare_server.group_ids[0]
audiences = await fanfare_client.get_group_audiences(group_id)
assert [a.group_id for a in audiences] == [group_id] * len(audiences) != []
assert await fanfare_client.get_group_audiences(group_id) == audiences  # a cache hit
assert fanfare_server.request_count(group_id) == 1
"""


def _lookup(indent: str = "    ") -> str:
    """LOOKUP indented as the body of a test function (or, with more indent, of a method)."""
    return textwrap.indent(LOOKUP, indent)


def _assert_clean(result: pytest.RunResult) -> None:
    output = result.stdout.str() + result.stderr.str()
    for sign in LEAK_SIGNS:
        assert sign not in output, output


def test_registered_through_pytest11() -> None:
    """The pytest11 entry point names the plugin module, which this very run has loaded."""
    names = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert names.get("fanfare_async") == "fanfare_async.pytest_plugin"
    assert "fanfare_async.pytest_plugin" in sys.modules


def test_import_is_cheap() -> None:
    """Importing the plugin loads neither pytest-asyncio, anyio's plugin nor the test double."""
    heavy = ["pytest_asyncio", "anyio.pytest_plugin", "fanfare_async.testing", "aiohttp.web"]
    code = f"import sys, fanfare_async.pytest_plugin; print(sorted({heavy} & sys.modules.keys()))"
    out = subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]", out


def test_anyio_and_pytest_asyncio_strict(pytester: pytest.Pytester) -> None:
    """anyio and strict pytest-asyncio tests share the fixtures; failures and misuse stay clean."""
    pytester.makeini(
        "[pytest]\nasyncio_mode = strict\nasyncio_default_fixture_loop_scope = function"
    )
    pytester.makeconftest(CONFTEST)
    lookup = _lookup()
    pytester.makepyfile(
        f"""
import pytest

from fanfare_async import FanfareClient

kept = {{}}


@pytest.mark.anyio
async def test_anyio(fanfare_server, fanfare_client):
{lookup}


@pytest.mark.asyncio
async def test_asyncio_strict(fanfare_server, fanfare_client):
{lookup}
    await fanfare_server.wait_for_requests(1)


@pytest.mark.asyncio(loop_scope="module")
async def test_asyncio_module_loop(fanfare_server, fanfare_client):
{lookup}


@pytest.mark.anyio
async def test_own_client(fanfare_server):
    async with FanfareClient(fanfare_server.secret_key, base_url=fanfare_server.url) as client:
        assert await client.get_group_audiences(fanfare_server.group_ids[1])
    assert fanfare_server.total_requests == 1


@pytest.mark.asyncio
async def test_fails_after_lookup(fanfare_server, fanfare_client):
    kept["used"] = fanfare_client, fanfare_server
    await fanfare_client.get_group_audiences(fanfare_server.group_ids[0])
    assert False, "the user's own failure"


@pytest.mark.anyio
async def test_client_never_used(fanfare_client):
    kept["unused"] = fanfare_client, None


class TestOptions:
    @pytest.fixture
    def fanfare_client_options(self):
        return {{"cache_maxsize": 0}}

    @pytest.mark.anyio
    @pytest.mark.parametrize("fanfare_server_options", [{{"groups": 3, "seed": 5}}])
    async def test_options(self, fanfare_server, fanfare_client, fanfare_server_options):
        assert len(fanfare_server.group_ids) == 3
        for _ in range(2):  # no cache: both reach the server
            await fanfare_client.get_group_audiences(fanfare_server.group_ids[0])
        assert fanfare_server.request_count(fanfare_server.group_ids[0]) == 2
        for client, server in kept.values():  # the earlier tests' teardown closed both
            assert client.closed
            if server is not None:
                with pytest.raises(RuntimeError):
                    server.url


def test_sync_test(fanfare_server):
    pass


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_backend(fanfare_client):
    pass
"""
    )
    result = pytester.runpytest_subprocess("-W", "error", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=6, failed=1, errors=2, warnings=0)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_sync_test*",
            "fanfare_server needs an async test run on asyncio: mark it @pytest.mark.anyio*",
            "*ERROR at setup of test_trio_backend*",
            "fanfare_client runs on asyncio only (aiohttp), not on anyio backend 'trio'*",
            "E       AssertionError: the user's own failure",
            "FAILED *::test_fails_after_lookup - *",
        ]
    )
    _assert_clean(result)


def test_pytest_asyncio_auto_mode_without_anyio(pytester: pytest.Pytester) -> None:
    """In auto mode, unmarked async tests and fixtures get the fixtures with anyio's plugin off."""
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function")
    pytester.makeconftest(CONFTEST.replace("def anyio_backend", "def unused_backend"))
    lookup = _lookup()
    pytester.makepyfile(
        f"""
import pytest


@pytest.fixture
async def group_id(fanfare_server):
    return fanfare_server.group_ids[0]


async def test_auto(fanfare_server, fanfare_client, group_id):
{lookup}
    assert group_id == fanfare_server.group_ids[0]


class TestClassLoop:
    pytestmark = pytest.mark.asyncio(loop_scope="class")

    async def test_class_loop(self, fanfare_server, fanfare_client):
{_lookup("        ")}
"""
    )
    result = pytester.runpytest_subprocess(
        "-W", "error", "-p", "no:cacheprovider", "-p", "no:anyio", timeout=120
    )
    result.assert_outcomes(passed=2, warnings=0)
    _assert_clean(result)


def test_anyio_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    """With pytest-asyncio off, an anyio test needs no set-up of its own at all."""
    lookup = _lookup()
    pytester.makepyfile(
        f"""
import pytest


@pytest.mark.anyio
async def test_anyio(fanfare_server, fanfare_client):
{lookup}
"""
    )
    result = pytester.runpytest_subprocess(
        "-W", "error", "-p", "no:cacheprovider", "-p", "no:asyncio", timeout=120
    )
    # anyio's default anyio_backend runs each test on every installed backend; trio gets our error.
    trio = importlib.util.find_spec("trio") is not None
    result.assert_outcomes(passed=1, errors=int(trio), warnings=0)
    _assert_clean(result)


def test_fixtures_listed_without_any_async_plugin(pytester: pytest.Pytester) -> None:
    """pytest --fixtures lists the four fixtures and their docstrings, no async plugin loaded."""
    result = pytester.runpytest_subprocess(
        "--fixtures", "-W", "error", "-p", "no:asyncio", "-p", "no:anyio", timeout=120
    )
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "*fixtures defined from fanfare_async.pytest_plugin*",
            "fanfare_server_options -- *pytest_plugin.py:*",
            "    Keyword arguments for the MockFanfareServer of ``fanfare_server``*",
            "fanfare_client_options -- *pytest_plugin.py:*",
            "    Keyword arguments for the FanfareClient of ``fanfare_client``*",
            "fanfare_server -- *pytest_plugin.py:*",
            "    A started fanfare_async.testing.MockFanfareServer on 127.0.0.1, closed after*",
            "fanfare_client -- *pytest_plugin.py:*",
            "    A FanfareClient pointed at ``fanfare_server``, closed (aclose) after the test.",
        ]
    )
    assert "_fanfare_server_anyio" not in result.stdout.str()  # the variants stay hidden
    _assert_clean(result)
