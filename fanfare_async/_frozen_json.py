"""Read-only views of free-form JSON (``metadata``, ``sourceData``, import issues).

Decoded models are shared through the cache, so nothing reachable from them
may be mutable. The decoder keeps each free-form value as one level of
containers holding ``msgspec.Raw`` JSON text; a view decodes a value only when
it is read, and wraps nested objects and arrays read-only in turn.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import msgspec

_Raw = msgspec.Raw
_decode_json = msgspec.json.Decoder().decode


def frozen(value: Any) -> Any:
    """``value`` read-only: raw JSON decoded, objects and arrays wrapped, scalars as they are."""
    kind = type(value)
    if kind is _Raw:
        value = _decode_json(value)
        kind = type(value)
    if kind is dict:
        return FrozenObject._wrap(value)
    if kind is list or kind is tuple:
        return FrozenArray._wrap(value)
    return value


class FrozenObject(Mapping[str, Any]):
    """A read-only JSON object; ``to_dict()`` gives a mutable deep copy."""

    __slots__ = ("_data",)

    _data: dict[str, Any]

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data = copy.deepcopy(dict(data or {}))

    @classmethod
    def _wrap(cls, data: dict[str, Any]) -> FrozenObject:
        """Wrap a dict nobody else changes, without copying it."""
        view = object.__new__(cls)
        view._data = data
        return view

    def __getitem__(self, key: str) -> Any:
        return frozen(self._data[key])

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenObject):
            return self._data == other._data or thaw(self) == thaw(other)
        if isinstance(other, Mapping):
            return thaw(self) == thaw(other)  # type: ignore[no-any-return]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(hashable(thaw(self)))

    def __repr__(self) -> str:
        return f"FrozenObject({thaw(self)!r})"

    def to_dict(self) -> dict[str, Any]:
        """A mutable deep copy."""
        return thaw(self)  # type: ignore[no-any-return]


class FrozenArray(Sequence[Any]):
    """A read-only JSON array; ``to_list()`` gives a mutable deep copy."""

    __slots__ = ("_items",)

    _items: list[Any] | tuple[Any, ...]

    def __init__(self, items: Sequence[Any] = ()) -> None:
        self._items = copy.deepcopy([thaw(v) for v in items])

    @classmethod
    def _wrap(cls, items: list[Any] | tuple[Any, ...]) -> FrozenArray:
        """Wrap a list (or tuple) nobody else changes, without copying it."""
        view = object.__new__(cls)
        view._items = items
        return view

    @overload
    def __getitem__(self, index: int) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> FrozenArray: ...
    def __getitem__(self, index: int | slice) -> Any:
        if isinstance(index, slice):
            return FrozenArray._wrap(self._items[index])
        return frozen(self._items[index])

    def __iter__(self) -> Iterator[Any]:
        return map(frozen, self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (FrozenArray, list, tuple)):
            return thaw(self) == thaw(other)  # type: ignore[no-any-return]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(hashable(thaw(self)))

    def __repr__(self) -> str:
        return f"FrozenArray({thaw(self)!r})"

    def to_list(self) -> list[Any]:
        """A mutable deep copy."""
        return thaw(self)  # type: ignore[no-any-return]


def thaw(value: Any) -> Any:
    """A fresh plain-JSON copy (dicts, lists, scalars) of views, raw JSON text, mappings
    and sequences, for comparing, hashing and encoding."""
    kind = type(value)
    if kind is _Raw:
        return _decode_json(value)
    if kind is FrozenObject:
        value = value._data
    elif kind is FrozenArray:
        value = value._items
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def hashable(value: Any) -> Any:
    """A hashable stand-in for plain JSON (objects as frozensets of items, arrays as tuples)."""
    if isinstance(value, dict):
        return frozenset((k, hashable(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(hashable(v) for v in value)
    return value
