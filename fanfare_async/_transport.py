"""HTTP transport: one pooled aiohttp session, retries, limits, and error translation.

Every aiohttp exception is translated here, once, into the fanfare_async
tree; nothing above this module sees an ``aiohttp`` error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from . import __about__
from ._api_errors import api_error_text, build_api_error
from ._config import TransportConfig
from ._exceptions import (
    APIError,
    FanfareClientClosedError,
    FanfareDecodeError,
    FanfareError,
    FanfareTimeoutError,
    RateLimitError,
    TransportError,
)
from ._ratelimit import RateLimiter
from ._retry import CLIENT_HELD_STATUSES, RETRYABLE_STATUSES, backoff_delay, parse_retry_after

logger = logging.getLogger("fanfare_async")

#: Error bodies are read for their message only; more than this is not needed.
MAX_ERROR_BODY_BYTES = 64 * 1024

_METHOD = "GET"


@dataclass(frozen=True, slots=True)
class Fetched:
    """A successful response: its body and its ``Date`` header (raw, parsed lazily)."""

    body: bytes
    date: str | None


class AttemptRecord(Protocol):
    """What an attempt hook returns: told once how the attempt ended."""

    def end(self, status: int, error: BaseException | None) -> None:
        """``status``: the response's (0: none came); ``error``: what failed the attempt
        (the library's own error, with the aiohttp one as its cause), None on success."""


#: Called as each attempt goes out, with its URL and its number (0: the first send).
AttemptHook = Callable[[str, int], AttemptRecord]


def _translated(exc: BaseException, url: str) -> FanfareError | None:
    """The fanfare_async error for an aiohttp / OS exception (None: not ours to map)."""
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):  # aiohttp's timeouts too
        return FanfareTimeoutError(f"{_METHOD} {url} timed out")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return TransportError(f"{_METHOD} {url}: response body cut short ({exc})")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return TransportError(f"{_METHOD} {url}: TLS certificate rejected")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return TransportError(f"{_METHOD} {url}: cannot connect ({exc.os_error})")
    if isinstance(exc, aiohttp.ClientResponseError):
        _redact_request_info(exc)
        return TransportError(f"{_METHOD} {url}: invalid HTTP response ({exc.message})")
    if isinstance(exc, (aiohttp.ClientError, OSError)):
        detail = str(exc) or type(exc).__name__
        return TransportError(f"{_METHOD} {url}: connection failed ({detail})")
    return None


def _redact_request_info(exc: aiohttp.ClientResponseError) -> None:
    """aiohttp keeps the request's headers on the error: drop the Authorization one."""
    info = exc.request_info
    headers = CIMultiDict(info.headers)
    headers.popall("Authorization", None)
    exc.request_info = aiohttp.RequestInfo(
        info.url, info.method, CIMultiDictProxy(headers), info.real_url
    )


def _is_retryable_transport_error(exc: TransportError) -> bool:
    return not isinstance(exc.__cause__, aiohttp.ClientConnectorCertificateError)


class Transport:
    """Sends ``GET /audiences/groups/{segment}`` with retries and the client's rate limit."""

    def __init__(
        self,
        config: TransportConfig,
        *,
        secret_key: str,
        limiter: RateLimiter,
        session: aiohttp.ClientSession | None,
    ) -> None:
        self._config = config
        self._limiter = limiter
        self._session = session
        self._owns_session = session is None
        self._closed = False
        #: Told about every attempt (telemetry sets it); None: nothing to tell.
        self.attempt_hook: AttemptHook | None = None
        self._prefix = str(config.base_url) + "/audiences/groups/"
        self._headers = {
            "Authorization": f"Bearer {secret_key}",
            "Accept": "application/json",
            "User-Agent": f"fanfare-async/{__about__.__version__} aiohttp/{aiohttp.__version__}",
        }

    def _get_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise FanfareClientClosedError("the client is closed")
        session = self._session
        if session is None:
            config = self._config
            connector = aiohttp.TCPConnector(
                limit=config.max_connections,
                limit_per_host=config.max_connections,
                ttl_dns_cache=300,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=config.timeout,
                raise_for_status=False,
                trust_env=False,
            )
            self._session = session
        elif session.closed:
            raise FanfareClientClosedError("the aiohttp session passed to the client is closed")
        return session

    async def aclose(self) -> None:
        """Close the session if the client created it; idempotent."""
        self._closed = True
        session, self._session = self._session, None
        if session is not None and self._owns_session and not session.closed:
            await session.close()

    def url_for(self, segment: str) -> str:
        """The full URL for an already-encoded path segment."""
        return self._prefix + segment

    async def fetch(self, segment: str) -> Fetched:
        """GET the group at ``segment`` (already percent-encoded), retrying what is transient."""
        url = self._prefix + segment
        request_url = URL(url, encoded=True)
        limiter = self._limiter
        config = self._config
        hook = self.attempt_hook
        attempt = 0
        while True:
            session = self._get_session()
            sent = limiter.try_acquire()
            if sent is None:
                sent = await limiter.acquire(config.max_retry_wait)
            record = None if hook is None else hook(url, attempt)
            status = 0
            try:
                async with session.get(
                    request_url,
                    headers=self._headers,
                    allow_redirects=False,
                    timeout=config.timeout,
                ) as response:
                    status = response.status
                    headers = response.headers
                    if 200 <= status < 300:
                        limiter.observe(sent, status, headers, None)
                        limit = config.max_response_bytes
                        if _readable_whole(response, limit):  # no second coroutine to read
                            body = await response.read()
                        else:
                            body = await self._read_body(response, url, limit)
                        if logger.isEnabledFor(logging.DEBUG):
                            logger.debug("%s %s -> %d (%d bytes)", _METHOD, url, status, len(body))
                        if record is not None:
                            record.end(status, None)
                        return Fetched(body, headers.get("Date"))
                    error: FanfareError = await self._api_error(response, url, sent)
            except FanfareError as exc:
                error = exc
            except BaseException as exc:  # cancellation too: _translated leaves it alone
                translated = _translated(exc, url)
                if translated is None:
                    if record is not None:
                        record.end(status, exc)
                    raise
                translated.__cause__ = exc
                error = translated
            finally:
                limiter.release()
            if record is not None:
                record.end(status, error)
            await asyncio.sleep(self._retry_delay(error, attempt, url))
            attempt += 1

    async def _api_error(self, response: aiohttp.ClientResponse, url: str, sent: int) -> APIError:
        """The typed error for a non-2xx response (its body read, within limits)."""
        status = response.status
        headers = response.headers
        retry_after = parse_retry_after(headers.get("Retry-After"), now=time.time())
        self._limiter.observe(sent, status, headers, retry_after)
        body = await self._read_body(response, url, MAX_ERROR_BODY_BYTES, truncate=True)
        logger.debug("%s %s -> %d", _METHOD, url, status)
        return build_api_error(
            status=status,
            reason=response.reason,
            headers=headers,
            body=body,
            method=_METHOD,
            url=url,
            retry_after=retry_after,
        )

    def _retry_delay(self, error: FanfareError, attempt: int, url: str) -> float:
        """Seconds to wait before retrying after ``error``; raises it when it is final."""
        if attempt >= self._config.max_retries:
            raise error
        if isinstance(error, TransportError):
            if not _is_retryable_transport_error(error):
                raise error
            delay = backoff_delay(attempt)
            logger.debug(
                "%s %s failed (%s); retry %d in %.2fs", _METHOD, url, error, attempt + 1, delay
            )
            return delay
        if not isinstance(error, APIError) or error.status_code not in RETRYABLE_STATUSES:
            raise error
        retry_after = error.retry_after
        if retry_after is not None and retry_after > self._config.max_retry_wait:
            if isinstance(error, RateLimitError):
                raise error
            raise _too_long_wait(error, retry_after) from error
        if retry_after is not None:
            delay = retry_after
        elif error.status_code in CLIENT_HELD_STATUSES:
            delay = 0.0  # the rate limiter holds the whole client, this request included
        else:
            delay = backoff_delay(attempt)
        logger.debug(
            "%s %s -> %d; retry %d in %.2fs", _METHOD, url, error.status_code, attempt + 1, delay
        )
        return delay

    @staticmethod
    async def _read_body(
        response: aiohttp.ClientResponse, url: str, limit: int, *, truncate: bool = False
    ) -> bytes:
        """Read at most ``limit`` bytes; more is refused (or cut, for error bodies)."""
        length = response.content_length
        if length is not None and length > limit and not truncate:
            raise _too_large(url, limit, length)
        if _readable_whole(response, limit):
            return await response.read()
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(256 * 1024):
            size += len(chunk)
            if size > limit:
                if truncate:
                    chunks.append(chunk[: limit - (size - len(chunk))])
                    break
                raise _too_large(url, limit, None)
            chunks.append(chunk)
        return b"".join(chunks)


def _readable_whole(response: aiohttp.ClientResponse, limit: int) -> bool:
    """The body has a declared length within ``limit`` and arrives as declared (not
    compressed): one ``read()`` is safe."""
    length = response.content_length
    return length is not None and length <= limit and "Content-Encoding" not in response.headers


def _too_large(url: str, limit: int, length: int | None) -> FanfareDecodeError:
    size = f"{length} bytes" if length is not None else "more"
    return FanfareDecodeError(
        f"{_METHOD} {url}: response body is {size}, over max_response_bytes={limit}; refused"
    )


def _too_long_wait(exc: APIError, retry_after: float) -> RateLimitError:
    error = RateLimitError(
        f"server asked to wait {retry_after:.0f}s, longer than max_retry_wait: "
        f"{api_error_text(exc)}",
        retry_after=retry_after,
        status_code=exc.status_code,
        error=exc.error,
        code=exc.code,
        details=exc.details,
        body=exc.body,
        headers=exc.headers,
        request_id=exc.request_id,
        method=exc.method,
        url=exc.url,
    )
    error.message = exc.message
    return error
