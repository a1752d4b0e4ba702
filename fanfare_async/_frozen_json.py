"""Read-only views of free-form JSON (``metadata``, ``sourceData``, import issues).

Decoded models are shared through the cache, so nothing reachable from them
may be mutable. These views wrap the decoder's own fresh containers without
copying them at decode time; nested objects and arrays are wrapped on access.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload


def frozen(value: Any) -> Any:
    """``value`` with a JSON object or array wrapped read-only (scalars as they are)."""
    kind = type(value)
    if kind is dict:
        return FrozenObject._wrap(value)
    if kind is list:
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
        """Wrap a dict nobody else holds, without copying it."""
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
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == {k: thaw(v) for k, v in other.items()}
        return NotImplemented

    def __hash__(self) -> int:
        return hash(_hashable(self._data))

    def __repr__(self) -> str:
        return f"FrozenObject({self._data!r})"

    def to_dict(self) -> dict[str, Any]:
        """A mutable deep copy."""
        return copy.deepcopy(self._data)


class FrozenArray(Sequence[Any]):
    """A read-only JSON array; ``to_list()`` gives a mutable deep copy."""

    __slots__ = ("_items",)

    _items: list[Any]

    def __init__(self, items: Sequence[Any] = ()) -> None:
        self._items = copy.deepcopy([thaw(v) for v in items])

    @classmethod
    def _wrap(cls, items: list[Any]) -> FrozenArray:
        """Wrap a list nobody else holds, without copying it."""
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
        if isinstance(other, FrozenArray):
            return self._items == other._items
        if isinstance(other, (list, tuple)):
            return self._items == [thaw(v) for v in other]
        return NotImplemented

    def __hash__(self) -> int:
        return hash(_hashable(self._items))

    def __repr__(self) -> str:
        return f"FrozenArray({self._items!r})"

    def to_list(self) -> list[Any]:
        """A mutable deep copy."""
        return copy.deepcopy(self._items)


def thaw(value: Any) -> Any:
    """Plain JSON containers from frozen views (and tuples), for comparing and encoding."""
    if isinstance(value, FrozenObject):
        return value._data
    if isinstance(value, FrozenArray):
        return value._items
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [thaw(v) for v in value]
    return value


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return frozenset((k, _hashable(v)) for k, v in value.items())
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    return value
