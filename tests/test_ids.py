"""Group id validation, canonicalisation and path encoding."""

from __future__ import annotations

import uuid
from urllib.parse import unquote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fanfare_async import FanfareError, InvalidGroupIdError
from fanfare_async._ids import MAX_GROUP_ID_LENGTH, canonical_group_id, encode_path_segment

UPPER = "3C90C3CC-0D44-4B50-8888-8DD25736052A"
LOWER = UPPER.lower()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        " ",
        "\t\n",
        "\u3000",
        "a\x00b",
        "a\nb",
        "abc\x7f",
        "x\x85y",
        "x\x9fy",
        "a" * (MAX_GROUP_ID_LENGTH + 1),
        "\ud800",
    ],
)
def test_invalid_ids_raise_typed_value_error(bad: str) -> None:
    """Empty, blank, control characters, over-long and unencodable ids are rejected."""
    with pytest.raises(InvalidGroupIdError) as info:
        canonical_group_id(bad)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, FanfareError)


@pytest.mark.parametrize("bad", [None, 5, 1.5, b"abc", ["a"], True])
def test_wrong_types_raise_type_error(bad: object) -> None:
    """Only str and uuid.UUID are accepted."""
    with pytest.raises(TypeError, match=r"group_id must be str or uuid\.UUID"):
        canonical_group_id(bad)


def test_256_characters_is_allowed() -> None:
    """The limit is inclusive."""
    assert canonical_group_id("a" * 256) == "a" * 256


def test_uuid_canonicalisation() -> None:
    """UUID objects and UUID-shaped strings in any case share one key."""
    assert canonical_group_id(UPPER) == LOWER
    assert canonical_group_id(LOWER) == LOWER
    assert canonical_group_id(uuid.UUID(UPPER)) == LOWER


def test_opaque_ids_are_kept_verbatim() -> None:
    """Non-UUID ids keep their case and characters."""
    assert canonical_group_id("aud_01HXYZ123456789") == "aud_01HXYZ123456789"
    assert canonical_group_id(" padded ") == " padded "
    assert canonical_group_id("Grüße") == "Grüße"


@pytest.mark.parametrize(
    ("group_id", "segment"),
    [
        ("../x", "..%2Fx"),
        ("a/b", "a%2Fb"),
        ("?q", "%3Fq"),
        ("#f", "%23f"),
        ("%2e%2e", "%252e%252e"),
        (".", "%2E"),
        ("..", "%2E%2E"),
        ("...", "..."),
        ("a b", "a%20b"),
        ("Grüße", "Gr%C3%BC%C3%9Fe"),
        ("a;b=c&d", "a%3Bb%3Dc%26d"),
    ],
)
def test_path_segment_encoding(group_id: str, segment: str) -> None:
    """Reserved characters and dot-segments can never escape the one path segment."""
    assert encode_path_segment(group_id) == segment


@given(st.one_of(st.text(max_size=300), st.uuids(), st.integers(), st.none(), st.binary()))
def test_any_input_gives_a_safe_segment_or_typed_error(value: object) -> None:
    """Property: any input is a valid single segment that round-trips, or a typed error."""
    try:
        key = canonical_group_id(value)
    except (InvalidGroupIdError, TypeError):
        return
    segment = encode_path_segment(key)
    assert segment not in (".", "..")
    assert all(c not in segment for c in "/?#")
    assert segment.isascii() and segment.isprintable()
    decoded = unquote(segment)
    assert decoded == key


def test_canonical_uuid_string_is_kept_as_the_same_object() -> None:
    """A canonical id is not copied: the cache key is the caller's own string."""
    group_id = "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    assert canonical_group_id(group_id) is group_id
    upper = group_id.upper()
    assert canonical_group_id(upper) == group_id
