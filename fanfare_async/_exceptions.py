"""The exceptions raised by fanfare_async.

Every error the client raises is a :class:`FanfareError`; callers never need
to catch ``aiohttp`` or ``msgspec`` exceptions::

    FanfareError
    ├── FanfareConfigError
    ├── InvalidGroupIdError (also ValueError)
    ├── FanfareClientClosedError
    ├── TransportError            connection failed, reset, DNS, TLS, body cut short
    │   └── FanfareTimeoutError   (also the builtin TimeoutError)
    ├── FanfareDecodeError        body is not the documented shape
    └── APIError                  any non-2xx response
        ├── BadRequestError (400, 422)
        ├── AuthenticationError (401)
        ├── PermissionDeniedError (403)
        ├── NotFoundError (404)
        ├── ConflictError (409)
        ├── RateLimitError (429, has retry_after)
        └── ServerError (5xx)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from multidict import CIMultiDict, CIMultiDictProxy

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "FanfareClientClosedError",
    "FanfareConfigError",
    "FanfareDecodeError",
    "FanfareError",
    "FanfareTimeoutError",
    "InvalidGroupIdError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerError",
    "TransportError",
]


class FanfareError(Exception):
    """Base class of every error raised by fanfare_async."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructor fields live in __dict__: rebuild without __init__
        # so errors survive copy.copy() and pickling.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[FanfareError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


class FanfareConfigError(FanfareError):
    """The client was configured wrongly (missing secret key, bad URL, bad option)."""


class InvalidGroupIdError(FanfareError, ValueError):
    """A group id was rejected before any I/O (empty, too long, control characters)."""


class FanfareClientClosedError(FanfareError):
    """The client was used after ``aclose()``, or was closed while a call was in flight."""


class TransportError(FanfareError):
    """No complete HTTP response: connection failed or reset, DNS, TLS, body cut short."""


class FanfareTimeoutError(TransportError, TimeoutError):
    """The request, or reading its response, took longer than the configured timeout."""


class FanfareDecodeError(FanfareError):
    """The response body is not the documented shape; ``path`` names where (e.g. ``$[3].name``)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class APIError(FanfareError):
    """The API answered with a non-2xx status.

    Attributes mirror the response: ``status_code``, ``error``, ``message``,
    ``code``, ``details``, ``body`` (parsed JSON, or the raw text),
    ``headers``, ``request_id`` (the ``x-request-id`` header unless given), ``method``, ``url``,
    and ``retry_after`` (seconds from ``Retry-After``, None when absent).
    """

    def __init__(
        self,
        message: str | None,
        *,
        status_code: int,
        error: str | None = None,
        code: str | None = None,
        details: Any = None,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
        request_id: str | None = None,
        method: str = "GET",
        url: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error
        self.message: str | None = message
        self.code = code
        self.details = details
        self.body = body
        self.headers: CIMultiDictProxy[str] = (
            headers
            if isinstance(headers, CIMultiDictProxy)
            else CIMultiDictProxy(CIMultiDict(headers or {}))
        )
        self.request_id = request_id if request_id is not None else self.headers.get("x-request-id")
        self.method = method
        self.url = url
        self.retry_after = retry_after

    def __str__(self) -> str:
        said = self.args[0] if self.args and self.args[0] else self.message
        text = f"{self.status_code} {said or 'HTTP error'} ({self.method} {self.url})"
        if self.request_id:
            text += f" [request_id={self.request_id}]"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )


class BadRequestError(APIError):
    """400 or 422: the request was rejected as invalid."""


class AuthenticationError(APIError):
    """401: the secret key is missing, wrong or revoked."""


class PermissionDeniedError(APIError):
    """403: the key may not read this resource."""


class NotFoundError(APIError):
    """404: no such group."""


class ConflictError(APIError):
    """409: the request conflicts with the resource's state."""


class RateLimitError(APIError):
    """429 (or a wait longer than ``max_retry_wait``); ``retry_after`` is in seconds, or None."""


class ServerError(APIError):
    """5xx: the server, or a proxy in front of it, failed."""


_STATUS_CLASSES: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_class_for_status(status: int) -> type[APIError]:
    """The APIError subclass that represents ``status``."""
    if status >= 500:
        return ServerError
    return _STATUS_CLASSES.get(status, APIError)
