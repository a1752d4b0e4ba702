"""The exception tree and how error responses become readable exceptions."""

from __future__ import annotations

import copy
from typing import Any

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
from fanfare_async._api_errors import api_error_text, build_api_error

from .helpers import STATUS_CLASSES


def fields(err: APIError) -> tuple[str | None, str | None, str | None, Any]:
    """The body's own fields on ``err``: error, message, code, details (``message`` typed
    ``str | None`` here: APIError still annotates it ``str``)."""
    return err.error, err.message, err.code, err.details


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
    """{error, message, details:[{field, message}]}: fields verbatim, text adds the field errors."""
    err = build(
        400,
        b'{"error": "bad_request", "message": "Invalid input",'
        b' "details": [{"field": "groupId", "message": "must be a uuid"}]}',
    )
    assert fields(err)[:3] == ("bad_request", "Invalid input", None)
    assert err.details == [{"field": "groupId", "message": "must be a uuid"}]
    assert api_error_text(err) == "Invalid input: groupId: must be a uuid"


def test_code_shape() -> None:
    """{error, message, code, details:{}}: fields verbatim, the text shows the code."""
    err = build(
        404,
        b'{"error": "not_found", "message": "Group not found", "code": "GROUP_NOT_FOUND",'
        b' "details": {}}',
        **{"x-request-id": "req_42"},
    )
    assert fields(err)[:3] == ("not_found", "Group not found", "GROUP_NOT_FOUND")
    assert err.details == {}
    assert api_error_text(err) == "Group not found [GROUP_NOT_FOUND]"
    assert err.request_id == "req_42"
    assert "req_42" in str(err)
    assert "404" in str(err)


def test_issues_shape() -> None:
    """{error: validation_error, issues:[...]}: no message or details fields, so None; the
    issues stay in body and the text names each issue's path."""
    err = build(
        422,
        b'{"error": "validation_error", "issues": [{"kind": "schema", "type": "string",'
        b' "message": "Expected uuid", "path": ["groupId"]}]}',
    )
    assert err.error == "validation_error"
    assert fields(err)[1:] == (None, None, None)
    assert err.body["issues"][0]["path"] == ["groupId"]
    assert api_error_text(err) == "validation_error: groupId: Expected uuid"


def test_error_only_shape() -> None:
    """{error: "..."} alone: message None, the error is the text."""
    err = build(401, b'{"error": "Authentication required"}')
    assert err.error == "Authentication required"
    assert fields(err)[1] is None
    assert api_error_text(err) == "Authentication required"
    assert err.request_id is None


def test_rate_limit_shape() -> None:
    """{error, retryAfter}: the error is the text; retryAfter stays in body only."""
    err = build(429, b'{"error": "Rate limit exceeded", "retryAfter": 30}')
    assert fields(err) == ("Rate limit exceeded", None, None, None)
    assert err.body == {"error": "Rate limit exceeded", "retryAfter": 30}
    assert api_error_text(err) == "Rate limit exceeded"


def test_fields_are_not_rewritten() -> None:
    """The message is kept exactly; the one-line text collapses it and adds details and code."""
    body = (
        b'{"error": "conflict", "message": " Group is\\nbeing modified ", "code": "LOCKED",'
        b' "details": [{"field": "groupId", "message": "busy"}, "retry later"]}'
    )
    err = build(409, body)
    assert err.message == " Group is\nbeing modified "
    assert err.details == [{"field": "groupId", "message": "busy"}, "retry later"]
    assert api_error_text(err) == "Group is being modified: groupId: busy; retry later [LOCKED]"


def test_non_string_fields_keep_their_json_text() -> None:
    """A field that is JSON but not a string (a number code, an object) is its JSON text."""
    err = build(400, b'{"error": {"type": "bad"}, "message": "Bad id", "code": 1015}')
    assert err.error == '{"type":"bad"}'
    assert err.code == "1015"
    assert api_error_text(err) == "Bad id [1015]"


def test_details_mapping_is_summarised() -> None:
    """details as an object reads as key: value pairs; the attribute is the object."""
    err = build(400, b'{"error": "bad_request", "details": {"groupId": "not a uuid", "n": 0}}')
    assert err.details == {"groupId": "not a uuid", "n": 0}
    assert api_error_text(err) == "bad_request: groupId: not a uuid; n: 0"


def test_many_details_are_counted_not_listed() -> None:
    """Past the first few entries of details the text only counts the rest."""
    items = ",".join(f'{{"field": "f{i}", "message": "bad"}}' for i in range(8))
    err = build(400, f'{{"message": "Invalid", "details": [{items}]}}'.encode())
    assert len(err.details) == 8
    assert api_error_text(err).endswith("f4: bad (+3 more)")
    assert "f5" not in api_error_text(err)


def test_unknown_object_shape_shows_the_object() -> None:
    """A JSON object with none of Fanfare's fields reads as its own JSON text."""
    err = build(404, b'{"detail": "Not Found"}')
    assert fields(err) == (None, None, None, None)
    assert api_error_text(err) == '{"detail":"Not Found"}'


def test_html_body_is_summarised() -> None:
    """A proxy's HTML page becomes its heading once; the attributes stay None."""
    page = b"<html><head><style>p{}</style></head><body><h1>502 Bad Gateway</h1>" + b"x" * 5000
    err = build(502, page + b"</body></html>")
    assert api_error_text(err) == "Bad Gateway"
    assert fields(err) == (None, None, None, None)
    assert isinstance(err.body, str)
    assert err.body.startswith("<html>")


def test_empty_body_uses_reason_phrase() -> None:
    """No body at all still reads as the reason phrase (str adds the status)."""
    err = build(503, b"")
    assert api_error_text(err) == "Reason"
    assert fields(err)[1] is None
    assert err.body is None


def test_copy_keeps_the_fields_and_text() -> None:
    """copy.copy (how the cache keeps a 404) keeps the verbatim fields and the text."""
    err = build(404, b'{"error": "not_found", "code": "GROUP_NOT_FOUND"}')
    clone = copy.copy(err)
    assert type(clone) is NotFoundError
    assert fields(clone)[:3] == ("not_found", None, "GROUP_NOT_FOUND")
    assert api_error_text(clone) == "not_found [GROUP_NOT_FOUND]"


def test_errors_the_client_makes_keep_their_text() -> None:
    """An APIError built directly (as the rate limiter does) reads as the text it was given."""
    err = RateLimitError("held for 90.0s", status_code=429, retry_after=90.0)
    assert err.message == "held for 90.0s"
    assert api_error_text(err) == "held for 90.0s"
    assert str(err).startswith("429 held for 90.0s")


READABLE_BODIES = [
    (400, b'{"error": "validation_error", "issues": [{"message": "Expected uuid"}]}'),
    (401, b'{"error": "Secret key required"}'),
    (404, b'{"error": "not_found", "message": "Group not found", "code": "GROUP_NOT_FOUND"}'),
    (429, b'{"error": "Rate limit exceeded", "retryAfter": 30}'),
    (502, b"<html><head><title>502 Bad Gateway</title></head><body></body></html>"),
    (503, b""),
]


def test_str_shows_status_text_method_and_url() -> None:
    """str(exc) is "{status} {text} (GET url)" for every body shape, never "None"."""
    for status, body in READABLE_BODIES:
        err = build(status, body)
        assert str(err) == f"{status} {api_error_text(err)} (GET {err.url})"
        assert "None" not in str(err)


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
