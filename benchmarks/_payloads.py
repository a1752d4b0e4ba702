"""Deterministic response bodies from the package's seeded generator."""

from __future__ import annotations

import functools

from fanfare_async._fake_data import encode_group, generate_group, group_ids

from ._common import SEED

TYPICAL_AUDIENCES = 8
LARGE_AUDIENCES = 100


@functools.cache
def typical_body() -> bytes:
    """One group of 8 audiences (~23 KB)."""
    gid = group_ids(SEED, 1)[0]
    return encode_group(generate_group(SEED, gid, TYPICAL_AUDIENCES))


@functools.cache
def large_body() -> bytes:
    """One group of 100 audiences (~290 KB)."""
    gid = group_ids(SEED + 1, 1)[0]
    return encode_group(generate_group(SEED + 1, gid, LARGE_AUDIENCES))


def body_pool(count: int, audiences: int = TYPICAL_AUDIENCES, seed: int = SEED) -> list[bytes]:
    """``count`` distinct typical bodies, served in turn for any id by the load servers."""
    return [encode_group(generate_group(seed, gid, audiences)) for gid in group_ids(seed, count)]


def pick(pool: list[bytes], group_id: str) -> bytes:
    """The pool body for ``group_id`` (stable for an id, spread over the pool)."""
    return pool[int(group_id[:8], 16) % len(pool)] if _hex8(group_id) else pool[0]


def _hex8(text: str) -> bool:
    head = text[:8]
    return len(head) == 8 and all(c in "0123456789abcdefABCDEF" for c in head)
