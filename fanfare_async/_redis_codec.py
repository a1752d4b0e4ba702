"""What the Redis tier writes, and how it names things: pure, no I/O, no redis-py.

Layout of one namespace (``{ns}`` is a Redis Cluster hash tag, so every key a
script touches lives in one slot)::

    <prefix>:{<ns>}:v:<key>     the value: a MessagePack envelope, expiring (PX) at ttl + grace
    <prefix>:{<ns>}:l:<key>     the lease: a random token, or "=" for a second after a fill
    <prefix>:{<ns>}:events      the pub/sub channel (not a key): wake-ups and invalidations

The value envelope is the array ``[FORMAT_VERSION, not_found, grace_ms, body]``
(msgspec, tagged by the version): anything else under a value key decodes to
None, a miss. Never pickle: whoever can write to Redis must not be able to run
code in the client.
"""

from __future__ import annotations

import hashlib
import re
from typing import Annotated, Final

import msgspec

from ._shared import SharedValue

#: The envelope's format version (its msgspec tag): bump it when the envelope changes,
#: and values written by another version become misses instead of errors.
FORMAT_VERSION: Final = 1

# Domain separation for the namespace hash; changing it moves every default namespace.
_NAMESPACE_TAG: Final = b"fanfare_async shared tier namespace v1\n"
_NAMESPACE_HEX: Final = 32  # 128 bits of sha256

# Printable ASCII without braces (they delimit the hash tag), glob characters (they
# would need escaping in SCAN MATCH) and whitespace.
_NAME = re.compile(r"[!-~]+")
_FORBIDDEN = frozenset("{}*?[]\\")


class _Entry(msgspec.Struct, array_like=True, tag=FORMAT_VERSION, frozen=True, gc=False):
    not_found: bool
    grace_ms: Annotated[int, msgspec.Meta(ge=0)]
    body: bytes


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(_Entry).decode


def milliseconds(seconds: float) -> int:
    """Whole milliseconds of a duration, 0 for anything not positive (NaN included)."""
    if not seconds > 0:
        return 0
    return int(min(seconds, 1e9) * 1000)


def encode_value(body: bytes, *, not_found: bool, grace_ms: int) -> bytes:
    """The envelope stored under a value key."""
    return _encode(_Entry(not_found, grace_ms, body))


def decode_value(reply: object) -> SharedValue | None:
    """The GET script's reply, ``b"<pttl_ms>:<envelope>"``, as a value, or None.

    The remaining lifetime is PTTL's, on Redis's clock, read in the same script:
    a value without an expiry (-1), or one that expires now, is a miss like an
    undecodable one.
    """
    if type(reply) is not bytes:
        return None
    colon = reply.find(b":", 0, 24)
    try:
        pttl = int(reply[:colon])
        entry = _decode(memoryview(reply)[colon + 1 :])
    except (ValueError, msgspec.DecodeError):  # DecodeError is a ValueError; both named
        return None
    if pttl <= 0:
        return None
    grace = entry.grace_ms
    return SharedValue(
        entry.body,
        entry.not_found,
        (pttl - grace) / 1000,
        (grace if grace < pttl else pttl) / 1000,
    )


def derive_namespace(base_url: str, secret_key: str) -> str:
    """A one-way hash of base URL and secret key (truncated sha256 hex).

    Clients with different keys never share a namespace, and nothing in Redis
    reveals the key.
    """
    digest = hashlib.sha256(
        _NAMESPACE_TAG
        + base_url.rstrip("/").encode("utf-8", "surrogatepass")
        + b"\n"
        + secret_key.encode("utf-8", "surrogatepass")
    )
    return digest.hexdigest()[:_NAMESPACE_HEX]


def check_name(what: str, value: object, *, max_length: int) -> str:
    """A prefix or namespace: printable ASCII, no spaces, braces or glob characters."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, not {type(value).__name__}")
    if not (
        0 < len(value) <= max_length and _NAME.fullmatch(value) and _FORBIDDEN.isdisjoint(value)
    ):
        raise ValueError(
            f"{what} must be 1 to {max_length} printable ASCII characters without spaces, "
            f"braces or any of * ? [ ] \\, got {value!r}"
        )
    return value


class Names:
    """The byte strings of one namespace: key prefixes, channel, SCAN pattern."""

    __slots__ = ("channel", "lease_prefix", "pattern", "value_prefix")

    def __init__(self, prefix: str, namespace: str) -> None:
        base = f"{prefix}:{{{namespace}}}:".encode()
        self.value_prefix: Final = base + b"v:"
        self.lease_prefix: Final = base + b"l:"
        self.channel: Final = base + b"events"
        # check_name keeps glob characters out of prefix and namespace: no escaping needed.
        self.pattern: Final = base + b"*"


# Messages on a namespace's channel: one kind byte, the publishing tier's origin id
# (ORIGIN_BYTES), then the key in UTF-8 (empty for CLEAR).
WAKE: Final = b"w"
INVALIDATE: Final = b"i"
CLEAR: Final = b"c"
ORIGIN_BYTES: Final = 8


def message(kind: bytes, origin: bytes, key: bytes = b"") -> bytes:
    """One pub/sub message."""
    return kind + origin + key


def parse_message(data: object) -> tuple[bytes, bytes, str] | None:
    """``(kind, origin, key)`` of a message, or None for anything else."""
    if not isinstance(data, bytes) or len(data) < 1 + ORIGIN_BYTES:
        return None
    try:
        key = data[1 + ORIGIN_BYTES :].decode()
    except UnicodeDecodeError:
        return None
    return data[:1], data[1 : 1 + ORIGIN_BYTES], key


def pack(*parts: bytes) -> bytes:
    """One command in the Redis protocol (a request is an array of bulk strings in RESP2 and 3)."""
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)
