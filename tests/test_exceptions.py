"""The exception tree and how error responses become readable exceptions."""

from __future__ import annotations

import pytest

from fanfare_async import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    FanfareClientClosedError,
    FanfareConfigError,
    FanfareDecodeError,
    FanfareError,
    FanfareTimeoutError,
    InvalidGroupIdError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServerError,
    TransportError,
)
from fanfare_async._api_errors import SNIPPET_CHARS, build_api_error

from .helpers import STATUS_CLASSES


def test_tree_shape() -> None:
    """Every class sits where the contract draws it."""
    for cls in (
        FanfareConfigError,
        InvalidGroupIdError,
        FanfareClientClosedError,
        TransportError,
        FanfareDecodeError,
        APIError,
    ):
        assert issubclass(cls, FanfareError)
    assert issubclass(InvalidGroupIdError, ValueError)
    assert issubclass(FanfareTimeoutError, TransportError)
    assert issubclass(FanfareTimeoutError, TimeoutError)
    for cls in (
        BadRequestError,
        AuthenticationError,
        PermissionDeniedError,
        NotFoundError,
        ConflictError,
        RateLimitError,
        ServerError,
    ):
        assert issubclass(cls, APIError)


def build(status: int, body: bytes, **headers: str) -> APIError:
    return build_api_error(
        status=status,
        reason="Reason",
        headers=headers,
        body=body,
        method="GET",
        url="https://example.test/api/audiences/groups/g1",
        retry_after=None,
    )


@pytest.mark.parametrize(
    ("status", "cls"),
    STATUS_CLASSES,
)
def test_status_maps_to_class(status: int, cls: type[APIError]) -> None:
    """Each documented status becomes its exception class."""
    err = build(status, b"{}")
    assert type(err) is cls
    assert err.status_code == status


def test_details_list_shape() -> None:
    """{error, message, details:[{field, message}]} reads as message plus field errors."""
    err = build(
        400,
        b'{"error": "bad_request", "message": "Invalid input",'
        b' "details": [{"field": "groupId", "message": "must be a uuid"}]}',
    )
    assert err.error == "bad_request"
    assert err.message == "Invalid input: groupId: must be a uuid"
    assert err.details == [{"field": "groupId", "message": "must be a uuid"}]


def test_code_shape() -> None:
    """{error, message, code, details:{}} keeps the code and shows it."""
    err = build(
        404,
        b'{"error": "not_found", "message": "Group not found", "code": "GROUP_NOT_FOUND",'
        b' "details": {}}',
        **{"x-request-id": "req_42"},
    )
    assert err.code == "GROUP_NOT_FOUND"
    assert err.message == "Group not found [GROUP_NOT_FOUND]"
    assert err.request_id == "req_42"
    assert "req_42" in str(err)
    assert "404" in str(err)


def test_issues_shape() -> None:
    """{error: validation_error, issues:[...]} names each issue's path."""
    err = build(
        422,
        b'{"error": "validation_error", "issues": [{"kind": "schema", "type": "string",'
        b' "message": "Expected uuid", "path": ["groupId"]}]}',
    )
    assert err.error == "validation_error"
    assert err.message == "validation_error: groupId: Expected uuid"
    assert isinstance(err.details, list)


def test_error_only_shape() -> None:
    """{error: "..."} alone is the message."""
    err = build(401, b'{"error": "Authentication required"}')
    assert err.message == "Authentication required"
    assert err.request_id is None


def test_html_body_is_summarised() -> None:
    """A proxy's HTML page becomes its text, cut to a few hundred characters."""
    page = b"<html><head><style>p{}</style></head><body><h1>502 Bad Gateway</h1>" + b"x" * 5000
    err = build(502, page + b"</body></html>")
    assert err.message.startswith("502 Bad Gateway")
    assert len(err.message) <= SNIPPET_CHARS + 1
    assert isinstance(err.body, str)


def test_empty_body_uses_status_line() -> None:
    """No body at all still gives a readable message."""
    err = build(503, b"")
    assert err.message == "HTTP 503 Reason"
    assert err.body is None


@pytest.mark.parametrize(
    ("status", "cls", "body"),
    [
        (429, RateLimitError, b'{"error": "Rate limit exceeded", "retryAfter": 30}'),
        (503, ServerError, b""),
    ],
)
def test_retry_after_is_kept_on_every_status(status: int, cls: type, body: bytes) -> None:
    """The parsed Retry-After wait is on the error for any status, a 429 or a 503."""
    err = build_api_error(
        status=status,
        reason=None,
        headers={"Retry-After": "30", "X-Request-Id": "req_7"},
        body=body,
        method="GET",
        url="u",
        retry_after=30.0,
    )
    assert isinstance(err, cls)
    assert err.retry_after == 30.0
    assert err.headers["retry-after"] == "30"
    assert err.request_id == "req_7"
