"""Group id validation, canonicalisation and path encoding (pure, no I/O)."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from ._exceptions import InvalidGroupIdError

MAX_GROUP_ID_LENGTH = 256

# C0 controls, DEL and C1 controls.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\Z")
_UUID_SHAPE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)


def canonical_group_id(group_id: object) -> str:
    """Validate ``group_id`` and return its canonical spelling (the cache key).

    ``uuid.UUID`` values and UUID-shaped strings become lower-case hyphenated
    UUIDs; every other string is kept verbatim (ids are opaque).

    Raises:
        TypeError: ``group_id`` is neither ``str`` nor ``uuid.UUID``.
        InvalidGroupIdError: empty, whitespace-only, over 256 characters,
            containing control characters or not encodable as UTF-8.
    """
    if isinstance(group_id, uuid.UUID):
        return str(group_id)
    if type(group_id) is str and len(group_id) == 36:
        # The common case, nothing else to check. An id already canonical is kept
        # as the very same object: the cache's key then is the caller's string,
        # and a later lookup with it matches by identity, without comparing text.
        if _CANONICAL_UUID.match(group_id):
            return group_id
        if _UUID_SHAPE.match(group_id):
            return group_id.lower()
    if not isinstance(group_id, str):
        raise TypeError(f"group_id must be str or uuid.UUID, not {type(group_id).__name__}")
    if not group_id or group_id.isspace():
        raise InvalidGroupIdError("group_id must not be empty or whitespace-only")
    if len(group_id) > MAX_GROUP_ID_LENGTH:
        raise InvalidGroupIdError(
            f"group_id is {len(group_id)} characters long; the limit is {MAX_GROUP_ID_LENGTH}"
        )
    if _CONTROL.search(group_id):
        raise InvalidGroupIdError("group_id must not contain control characters")
    if len(group_id) == 36 and _UUID_SHAPE.match(group_id):
        return group_id.lower()
    try:
        group_id.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidGroupIdError("group_id is not valid Unicode text") from None
    return group_id


def encode_path_segment(canonical_id: str) -> str:
    """Percent-encode a canonical id as exactly one URL path segment.

    Every reserved character (``/ ? # %`` included) is escaped, and the
    dot-segments ``.`` and ``..`` go out as ``%2E`` and ``%2E%2E`` so no URL
    normaliser can collapse them.
    """
    if len(canonical_id) == 36 and _CANONICAL_UUID.match(canonical_id):
        return canonical_id  # nothing in a canonical UUID needs escaping
    segment = quote(canonical_id, safe="")
    if segment in (".", ".."):
        return segment.replace(".", "%2E")
    return segment
