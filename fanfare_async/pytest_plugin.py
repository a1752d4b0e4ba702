"""pytest fixtures for testing code that uses fanfare_async: ``fanfare_server``, ``fanfare_client``.

Registered through the ``pytest11`` entry point, so the fixtures exist in every pytest run of an
environment where the package is installed (with plugin autoloading disabled, add
``-p fanfare_async.pytest_plugin``)::

    @pytest.mark.anyio  # or @pytest.mark.asyncio
    async def test_lookup(fanfare_server, fanfare_client):
        group_id = fanfare_server.group_ids[0]
        assert await fanfare_client.get_group_audiences(group_id)
        assert fanfare_server.request_count(group_id) == 1

Both objects live on the event loop the test runs on: the server's ``wait_for_requests``,
``pause``/``resume`` and the client's aiohttp session all need that loop, and the client must be
closed on it before it closes. So the fixtures are async generators driven by whichever plugin
drives the test. anyio's plugin runs a plain ``@pytest.fixture`` async generator for a test that
uses ``anyio_backend``, and so does pytest-asyncio in auto mode; in strict mode pytest-asyncio runs
only fixtures made by its own ``pytest_asyncio.fixture``, and such a fixture would be run by
pytest-asyncio even for an anyio test, on another loop. Hence ``fanfare_server`` and
``fanfare_client`` are small sync fixtures that pick, per test, the async one to request:

* a test that pytest-asyncio runs (``asyncio`` mark, added to every async test in auto mode):
  a fixture made, when pytest-asyncio is active, with its ``fixture`` decorator (taken from the
  plugin pytest already loaded, never imported here), one per loop scope so it shares the test's
  loop even with ``@pytest.mark.asyncio(loop_scope="module")``;
* a test that anyio runs (``anyio_backend``, which must be ``"asyncio"``): a plain async fixture;
* anything else (a sync test, no async plugin): a setup error saying what to do.

Importing this module imports pytest and the standard library only (beyond ``fanfare_async``
itself, which Python imports first); the test double is imported when a fixture is first set up.
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any, Final, cast

import pytest

if TYPE_CHECKING:
    from ._client import FanfareClient
    from .testing import MockFanfareServer

__all__ = ["fanfare_client", "fanfare_client_options", "fanfare_server", "fanfare_server_options"]

_LOOP_SCOPES: Final = ("function", "class", "module", "package", "session")
_ANYIO: Final = "anyio"
#: The loop scopes that have pytest-asyncio fixtures in this run (empty without pytest-asyncio).
_asyncio_scopes_key: Final = pytest.StashKey[frozenset[str]]()


# -- what the fixtures do, whoever drives them ----------------------------------------------------


@contextlib.asynccontextmanager
async def _serving(options: Mapping[str, Any]) -> AsyncIterator[MockFanfareServer]:
    from .testing import MockFanfareServer

    async with MockFanfareServer(**options) as server:
        yield server


@contextlib.asynccontextmanager
async def _connecting(
    server: MockFanfareServer, options: Mapping[str, Any]
) -> AsyncIterator[FanfareClient]:
    from ._client import FanfareClient

    kwargs: dict[str, Any] = {"secret_key": server.secret_key, "base_url": server.url, **options}
    client = FanfareClient(**kwargs)
    try:
        yield client
    finally:
        await client.aclose()


def _server_fixture(doc: str) -> Callable[..., AsyncIterator[MockFanfareServer]]:
    """A new async fixture function serving ``fanfare_server`` (new each call: pytest-asyncio
    records a loop scope on the function object)."""

    async def fixture(
        fanfare_server_options: Mapping[str, Any],
    ) -> AsyncIterator[MockFanfareServer]:
        async with _serving(fanfare_server_options) as server:
            yield server

    fixture.__doc__ = doc
    return fixture


def _client_fixture(doc: str) -> Callable[..., AsyncIterator[FanfareClient]]:
    """A new async fixture function serving ``fanfare_client``."""

    async def fixture(
        fanfare_server: MockFanfareServer, fanfare_client_options: Mapping[str, Any]
    ) -> AsyncIterator[FanfareClient]:
        async with _connecting(fanfare_server, fanfare_client_options) as client:
            yield client

    fixture.__doc__ = doc
    return fixture


_MAKERS: Final = {"server": _server_fixture, "client": _client_fixture}


def _variant(kind: str, driver: str) -> str:
    return f"_fanfare_{kind}_{driver}"


def _doc(kind: str, driver: str) -> str:
    return f"fanfare_{kind} as {driver} runs it (request fanfare_{kind} instead)."


# The anyio variants: plain async fixtures, run by anyio's plugin (and ignored by pytest-asyncio
# in strict mode).
_fanfare_server_anyio = pytest.fixture(
    _server_fixture(_doc("server", "anyio's plugin")), name=_variant("server", _ANYIO)
)
_fanfare_client_anyio = pytest.fixture(
    _client_fixture(_doc("client", "anyio's plugin")), name=_variant("client", _ANYIO)
)


def pytest_configure(config: pytest.Config) -> None:
    """Add the pytest-asyncio variants of the fixtures when pytest-asyncio is active."""
    decorator = getattr(config.pluginmanager.get_plugin("asyncio"), "fixture", None)
    scopes: frozenset[str] = frozenset()
    if callable(decorator):
        holder = types.ModuleType(f"{__name__}._asyncio_fixtures")
        try:
            for scope in _LOOP_SCOPES:
                for kind, make in _MAKERS.items():
                    function = make(_doc(kind, f"pytest-asyncio (loop_scope={scope!r})"))
                    name = _variant(kind, f"asyncio_{scope}")
                    setattr(holder, name, decorator(function, loop_scope=scope, name=name))
        except TypeError:  # pytest-asyncio < 0.24: no loop_scope; asyncio tests get the error
            pass
        else:
            config.pluginmanager.register(holder, holder.__name__)
            scopes = frozenset(_LOOP_SCOPES)
    config.stash[_asyncio_scopes_key] = scopes


# -- the public fixtures -------------------------------------------------------------------------


def _pick(request: pytest.FixtureRequest, kind: str) -> str:
    """The name of the async fixture that serves ``fanfare_<kind>`` on this test's loop."""
    config = request.config
    marker = request.node.get_closest_marker("asyncio")
    scopes = config.stash.get(_asyncio_scopes_key, frozenset())
    if marker is not None and scopes:
        scope = marker.kwargs.get("loop_scope") or marker.kwargs.get("scope")
        if scope is None:
            try:
                scope = config.getini("asyncio_default_test_loop_scope") or "function"
            except ValueError:  # a pytest-asyncio without that setting
                scope = "function"
        if scope in scopes:
            return _variant(kind, f"asyncio_{scope}")
    if "anyio_backend" in request.fixturenames:
        backend = request.getfixturevalue("anyio_backend")
        backend_name = backend if isinstance(backend, str) else backend[0]
        if backend_name != "asyncio":
            pytest.fail(
                f"fanfare_{kind} runs on asyncio only (aiohttp), not on anyio backend "
                f"{backend_name!r}: make the anyio_backend fixture return 'asyncio'",
                pytrace=False,
            )
        return _variant(kind, _ANYIO)
    pytest.fail(
        f"fanfare_{kind} needs an async test run on asyncio: mark it @pytest.mark.anyio (anyio's "
        "plugin, anyio_backend 'asyncio') or @pytest.mark.asyncio (pytest-asyncio >= 0.24)",
        pytrace=False,
    )


@pytest.fixture
def fanfare_server_options() -> dict[str, Any]:
    """Keyword arguments for the MockFanfareServer of ``fanfare_server``; none by default.

    Override this fixture (in a conftest.py, a module or a class), or parametrize it in a test
    that names it as an argument, to change the server, e.g. ``{"groups": 10, "latency": 0.05,
    "rate_limit": 100}``.
    """
    return {}


@pytest.fixture
def fanfare_client_options() -> dict[str, Any]:
    """Keyword arguments for the FanfareClient of ``fanfare_client``; none by default.

    They come on top of (and may replace) ``secret_key`` and ``base_url`` from the server, e.g.
    ``{"max_retries": 0, "cache_maxsize": 0}``; override or parametrize it like
    ``fanfare_server_options``.
    """
    return {}


@pytest.fixture
def fanfare_server(request: pytest.FixtureRequest) -> MockFanfareServer:
    """A started fanfare_async.testing.MockFanfareServer on 127.0.0.1, closed after the test.

    Built with ``fanfare_server_options``. For async tests run on asyncio by anyio
    (``@pytest.mark.anyio``) or pytest-asyncio (``@pytest.mark.asyncio``, strict or auto mode,
    any loop_scope): the server runs on the test's own event loop, so ``wait_for_requests``,
    ``pause`` and ``resume`` work from the test. Give your own code ``.url`` and ``.secret_key``;
    ``.group_ids`` lists the groups it serves, ``.request_count(group_id)`` what reached it.
    """
    return cast("MockFanfareServer", request.getfixturevalue(_pick(request, "server")))


@pytest.fixture
def fanfare_client(request: pytest.FixtureRequest) -> FanfareClient:
    """A FanfareClient pointed at ``fanfare_server``, closed (aclose) after the test.

    Made with the server's ``secret_key`` and ``url`` plus ``fanfare_client_options``. Its
    aiohttp session is created on the test's event loop at the first lookup, so a test that
    never uses the client leaves nothing open. Same async tests as ``fanfare_server``.
    """
    return cast("FanfareClient", request.getfixturevalue(_pick(request, "client")))
