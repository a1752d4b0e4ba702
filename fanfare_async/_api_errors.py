"""Turning a non-2xx response into the right APIError (pure).

The error's ``error``, ``message``, ``code`` and ``details`` are the body's own
fields, verbatim (None when absent; a field that is JSON but not a string is
kept as its JSON text). What reads well is composed separately, as the error's
first argument (``exc.args[0]``, see :func:`api_error_text`), without the
status, method and url that ``str(exc)`` puts around it:

- a JSON body: its ``message`` (else its ``error``), then a summary of its
  ``details`` (else ``issues``), then `` [code]``;
- an HTML page (a proxy's): its ``<title>``, else its first heading, else its
  visible text with repeated lines dropped, once, without a leading status code
  (``str(exc)`` shows that already), so nginx's 502 page reads ``Bad Gateway``;
- any other text: its first :data:`SNIPPET_CHARS` characters;
- nothing readable (no body, ``{}``): the reason phrase.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import msgspec

from ._exceptions import APIError, error_class_for_status

#: How much of a non-JSON error body is kept in the error's text.
SNIPPET_CHARS = 300

#: How many entries of ``details`` (or ``issues``) the text names.
DETAILS_SHOWN = 5

# Every pattern below is linear in the body's length: a tag stops at the next "<",
# and an unclosed comment, script or element runs to the end once.
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_HIDDEN = re.compile(
    r"<(script|style|template|noscript)\b[^<>]*>.*?(?:</\1\s*>|\Z)", re.IGNORECASE | re.DOTALL
)
_TITLE = re.compile(r"<title\b[^<>]*>(.{0,1000}?)</title\s*>", re.IGNORECASE | re.DOTALL)
_HEADING = re.compile(r"<h([1-6])\b[^<>]*>(.{0,1000}?)</h\1\s*>", re.IGNORECASE | re.DOTALL)
_BLOCK_TAG = re.compile(
    r"</?(?:address|article|aside|blockquote|body|br|center|dd|div|dl|dt|footer|form|h[1-6]"
    r"|head|header|hr|html|li|main|nav|ol|p|pre|section|table|td|th|title|tr|ul)\b[^<>]*>",
    re.IGNORECASE,
)
_TAG = re.compile(r"<[!/?]?[a-zA-Z][^<>]*>")
_LOOKS_HTML = re.compile(
    r"<(?:!doctype\s+html|html|head|body|title|h[1-6]|p|div|center|br)\b", re.IGNORECASE
)
_SPACE = re.compile(r"\s+")


def build_api_error(
    *,
    status: int,
    reason: str | None,
    headers: Mapping[str, str],
    body: bytes,
    method: str,
    url: str,
    retry_after: float | None,
) -> APIError:
    """The APIError subclass for ``status``: the body's fields verbatim, its first
    argument a readable text (from any of Fanfare's error body shapes, an HTML page,
    the first characters of other text, or the reason phrase)."""
    error: str | None = None
    message: str | None = None
    code: str | None = None
    details: Any = None
    text: str | None = None
    parsed: Any
    try:
        parsed = msgspec.json.decode(body) if body.strip() else None
    except msgspec.DecodeError:
        parsed = body.decode("utf-8", "replace")
    if isinstance(parsed, dict):
        error = _field_text(parsed.get("error"))
        message = _field_text(parsed.get("message"))
        code = _field_text(parsed.get("code"))
        details = parsed.get("details")
        text = _json_text(parsed, error, message, code)
    elif isinstance(parsed, str):
        text = _page_text(parsed, headers.get("Content-Type", ""), status)
    elif parsed is not None:  # JSON, but not an object: a number, a list
        text = _cut(_collapse(body.decode("utf-8", "replace")))
    text = _without_status(text or "", status) or _reason_phrase(status, reason)
    exc = error_class_for_status(status)(
        text,
        status_code=status,
        error=error,
        code=code,
        details=details,
        body=parsed,
        headers=headers,
        method=method,
        url=url,
        retry_after=retry_after,
    )
    # APIError.__init__ takes the text it shows as its message; the attribute is the
    # body's own field. (Its annotation says str: see api_error_text.)
    exc.message = message
    return exc


def api_error_text(exc: APIError) -> str:
    """What ``exc`` says, without its status, method and url: the text
    :func:`build_api_error` composed (the first argument), else its message."""
    text = exc.args[0] if exc.args else None
    if isinstance(text, str) and text:
        return text
    return exc.message or _reason_phrase(exc.status_code, None)


def _field_text(value: Any) -> str | None:
    """A body field as the attribute keeps it: a string as is, other JSON as its text."""
    return None if value is None else _json_value_text(value)


def _json_value_text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


def _json_text(
    parsed: dict[str, Any], error: str | None, message: str | None, code: str | None
) -> str:
    """Message (else error), the details or issues summarised, and the code."""
    text = _collapse(message or error or "")
    extra = _summarise(parsed.get("details")) or _summarise(parsed.get("issues"))
    if extra:
        text = f"{text}: {extra}" if text else extra
    if code and code not in text:
        text = f"{text} [{code}]" if text else code
    if not text and parsed:  # an object, but none of Fanfare's fields: show it
        text = _cut(_collapse(_json_value_text(parsed)))
    return text


def _summarise(items: Any) -> str:
    """The first entries of a details list (``field: message``) or mapping (``key: value``)."""
    if isinstance(items, Mapping):
        items = [f"{key}: {_json_value_text(value)}" for key, value in items.items()]
    if not isinstance(items, list) or not items:
        return ""
    parts = [p for p in (_describe_item(i) for i in items[:DETAILS_SHOWN]) if p]
    more = f" (+{len(items) - DETAILS_SHOWN} more)" if len(items) > DETAILS_SHOWN else ""
    return "; ".join(parts) + more if parts else ""


def _describe_item(item: Any) -> str:
    if not isinstance(item, Mapping):
        return _json_value_text(item)
    text = _json_value_text(item.get("message") or item.get("type") or item.get("kind") or "")
    where = item.get("field")
    if where is None and isinstance(item.get("path"), list):
        where = ".".join(str(p) for p in item["path"])
    return f"{where}: {text}" if where not in (None, "") else text


def _page_text(text: str, content_type: str, status: int) -> str:
    """A text body: an HTML page's title, first heading or visible text; other text as is."""
    if "html" not in content_type.lower() and not _LOOKS_HTML.search(text):
        return _cut(_collapse(text))
    page = _HIDDEN.sub(" ", _COMMENT.sub(" ", text))
    title = _TITLE.search(page)
    heading = _HEADING.search(page)
    for inner in (title and title.group(1), heading and heading.group(2)):
        line = _visible(inner) if inner else ""
        if line:
            return _cut(line)
    return _cut(" ".join(_lines_once(page, status)))


def _lines_once(page: str, status: int) -> list[str]:
    """The page's visible lines (split at block tags), each kept the first time it appears,
    none starting with the status code."""
    seen: set[str] = set()
    lines: list[str] = []
    for block in _BLOCK_TAG.split(page):
        line = _without_status(_visible(block), status)
        if line and line.casefold() not in seen:
            seen.add(line.casefold())
            lines.append(line)
    return lines


def _visible(fragment: str) -> str:
    """An HTML fragment's text: tags out, entities decoded, whitespace collapsed."""
    return _collapse(html.unescape(_TAG.sub(" ", fragment)))


def _without_status(text: str, status: int) -> str:
    """``text`` without a leading status code (``502 Bad Gateway`` -> ``Bad Gateway``)."""
    head = str(status)
    if text.startswith(head) and not text[len(head) : len(head) + 1].isalnum():
        return text[len(head) :].lstrip(" :.-\u2013\u2014")
    return text


def _reason_phrase(status: int, reason: str | None) -> str:
    if reason:
        return reason
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def _collapse(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def _cut(text: str) -> str:
    if len(text) > SNIPPET_CHARS:
        return text[:SNIPPET_CHARS].rstrip() + "…"
    return text
