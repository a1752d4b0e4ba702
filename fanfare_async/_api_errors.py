"""Turning a non-2xx response into the right APIError, with a readable message (pure)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from ._exceptions import APIError, error_class_for_status

#: How much of a non-JSON error body is kept in the message.
SNIPPET_CHARS = 300

_TAG = re.compile(r"<(script|style)\b.*?</\1\s*>|<[^>]*>", re.IGNORECASE | re.DOTALL)
_SPACE = re.compile(r"\s+")


def _text_snippet(text: str) -> str:
    plain = _SPACE.sub(" ", _TAG.sub(" ", text)).strip()
    if len(plain) > SNIPPET_CHARS:
        plain = plain[:SNIPPET_CHARS].rstrip() + "…"
    return plain


def _describe_item(item: Any) -> str:
    if not isinstance(item, Mapping):
        return str(item)
    text = str(item.get("message") or item.get("type") or item.get("kind") or "")
    where = item.get("field")
    if where is None and isinstance(item.get("path"), list):
        where = ".".join(str(p) for p in item["path"])
    return f"{where}: {text}" if where not in (None, "") else text


def _summarise(items: Any) -> str:
    if isinstance(items, list) and items:
        parts = [_describe_item(i) for i in items[:5]]
        more = f" (+{len(items) - 5} more)" if len(items) > 5 else ""
        return "; ".join(p for p in parts if p) + more
    return ""


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
    """The APIError subclass for ``status``, its fields taken from any of Fanfare's
    error body shapes (or the first characters of a non-JSON body)."""
    error: str | None = None
    message: str | None = None
    code: str | None = None
    details: Any = None
    parsed: Any
    try:
        parsed = msgspec.json.decode(body) if body.strip() else None
    except msgspec.DecodeError:
        parsed = body.decode("utf-8", "replace")
    if isinstance(parsed, dict):
        error = _opt_str(parsed.get("error"))
        message = _opt_str(parsed.get("message"))
        code = _opt_str(parsed.get("code"))
        details = parsed.get("details", parsed.get("issues"))
        extra = _summarise(details)
        if message is None:
            message = error
        if extra:
            message = f"{message}: {extra}" if message else extra
        if code and message:
            message = f"{message} [{code}]"
    elif isinstance(parsed, str):
        message = _text_snippet(parsed) or None
    if not message:
        message = f"HTTP {status}" + (f" {reason}" if reason else "")
    return error_class_for_status(status)(
        message,
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


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)
