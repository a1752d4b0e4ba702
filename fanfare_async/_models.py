"""Typed models of the group-audiences response, and their decoder.

Structs are frozen and untracked by the garbage collector (``gc=False``): a
decoded group holds no reference cycles, so a cache of 100,000 groups adds
almost nothing to the cost of a ``gc.collect()``. Free-form JSON
is kept as raw JSON text (``msgspec.Raw``, which refers to the response body):
``metadata`` and ``sourceData`` as one text each, its kind checked right after
decoding, an import error's ``issues`` as a tuple of them; the attributes read
it through read-only views that decode on access, so a value shared through the
cache cannot be changed by one of its readers and a lookup never pays for
free-form JSON nobody reads. No dict per object: with one, a bulk run (which
hands groups to its consumer a burst at a time) made 198 young collections per
20,000 ids where it now makes 11-13, and one full collection of 11-19 ms.
"""

from __future__ import annotations

import enum
import functools
import re
import sys
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Union

import msgspec

from ._exceptions import FanfareDecodeError
from ._frozen_json import FrozenArray, FrozenObject, frozen, hashable, thaw

__all__ = [
    "Audience",
    "AudienceImport",
    "AudienceRule",
    "AudienceType",
    "GroupType",
    "ImportRowError",
    "SyncSource",
    "SyncStatus",
    "decode_group_audiences",
]

# Naive date-times fail this constraint and are then read as UTC by the slow path.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


_MAX_REMEMBERED_VALUES = 64


class _OpenStrEnum(str, enum.Enum):
    """A string enum that also accepts values it does not know.

    An unknown value becomes a pseudo-member carrying the raw string, so
    ``audience.type == "NEW_KIND"`` holds and decoding never fails on a value
    the API adds later.
    """

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, str):
            return None
        known = cls._value2member_map_
        member = known.get(value)
        if member is not None:  # msgspec asks _missing_ directly, not the map
            return member
        member = str.__new__(cls, value)
        member._name_ = value
        member._value_ = value
        # Remember a bounded number of them, so repeats are the same object.
        if len(known) < _MAX_REMEMBERED_VALUES + len(cls.__members__):
            known[value] = member
        return member

    def __str__(self) -> str:
        return str(self.value)


class AudienceType(_OpenStrEnum):
    """``Audience.type``; ``STATIC`` appears on some of Fanfare's pages."""

    DYNAMIC = "DYNAMIC"
    STATIC_LIST = "STATIC_LIST"
    SYNCED_LIST = "SYNCED_LIST"
    STATIC = "STATIC"


class GroupType(_OpenStrEnum):
    """``Audience.group_type``."""

    SEGMENTED_VALUE = "SEGMENTED_VALUE"
    RFM = "RFM"


class SyncStatus(_OpenStrEnum):
    """``SyncSource.sync_status``; only ``PENDING`` is documented."""

    PENDING = "PENDING"


class _Model(
    msgspec.Struct,
    frozen=True,
    kw_only=True,
    rename="camel",
    gc=False,
    omit_defaults=False,
):
    # Equality, hashing and repr see free-form fields as JSON values, whether a
    # field holds raw JSON text (decoded) or a view or dict (built by hand).

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        mine, theirs = _astuple(self), _astuple(other)
        if mine == theirs:
            return True
        for a, b in zip(mine, theirs, strict=True):
            if a != b and not (_is_json(a, b) and thaw(a) == thaw(b)):
                return False
        return True

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash(tuple(hashable(thaw(v)) if _is_json(v) else v for v in _astuple(self)))

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={value!r}" for name, value in self.__rich_repr__())
        return f"{type(self).__name__}({fields})"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        """Fields that differ from their defaults, free-form JSON as views."""
        return [
            (name, getattr(self, name))
            for (name, default), value in zip(_defaults(type(self)), _astuple(self), strict=True)
            if default is _REQUIRED or value != default
        ]


_astuple = msgspec.structs.astuple
_REQUIRED = object()
_JSON_KINDS = (dict, list, tuple, msgspec.Raw, FrozenObject, FrozenArray)


def _is_json(*values: Any) -> bool:
    return any(isinstance(v, _JSON_KINDS) for v in values)


@functools.cache
def _defaults(cls: type[_Model]) -> tuple[tuple[str, Any], ...]:
    """``(name, default)`` per field, ``_REQUIRED`` for none."""
    pairs: list[tuple[str, Any]] = []
    for info in msgspec.structs.fields(cls):
        if info.default is not msgspec.NODEFAULT:
            pairs.append((info.name, info.default))
        elif info.default_factory is not msgspec.NODEFAULT:
            pairs.append((info.name, info.default_factory()))
        else:
            pairs.append((info.name, _REQUIRED))
    return tuple(pairs)


#: A free-form object as it arrived: one raw JSON text, its kind checked by
#: _check_free_form (msgspec takes no Raw in a union: a default of None stands for an
#: absent value).
_RawObject = msgspec.Raw


class ImportRowError(_Model, frozen=True, kw_only=True):
    """One rejected row of an audience import; ``issues`` are free-form JSON values."""

    if TYPE_CHECKING:
        issues: FrozenArray = FrozenArray()
    else:
        issues: tuple[msgspec.Raw, ...] = ()
    row: int | None = None


class AudienceImport(_Model, frozen=True, kw_only=True):
    """A file import into a static-list audience."""

    archived: bool = False
    audience_id: str | None = None
    created_at: AwareDatetime | None = None
    created_by: str | None = None
    error_count: int | None = None
    id: str
    organization_id: str | None = None
    processed_consumers: int | None = None
    progress: float | None = None
    s3_key: str | None = None
    errors: tuple[ImportRowError, ...] = ()
    total_consumers: int | None = None
    updated_at: AwareDatetime | None = None
    updated_by: str | None = None


class AudienceRule(_Model, frozen=True, kw_only=True):
    """A rule of a dynamic audience: ``field`` matches one of ``values``."""

    audience_id: str | None = None
    field: str
    id: str
    organization_id: str | None = None
    values: tuple[Union[str, int, float, bool, None], ...] = ()  # noqa: UP007
    group_id: str | None = None
    position: int | None = None


class SyncSource(_Model, frozen=True, kw_only=True):
    """The external system an audience is synchronised from."""

    archived: bool = False
    created_at: AwareDatetime | None = None
    created_by: str | None = None
    id: str
    organization_id: str | None = None
    sync_source: str | None = None
    sync_source_id: str | None = None
    last_synced_at: AwareDatetime | None = None
    if TYPE_CHECKING:
        source_data: FrozenObject | None = None
    else:
        source_data: _RawObject = None
    sync_status: SyncStatus | None = None
    updated_at: AwareDatetime | None = None
    updated_by: str | None = None


class Audience(_Model, frozen=True, kw_only=True):
    """One audience of a group, as returned by ``GET /audiences/groups/{groupId}``."""

    archived: bool
    created_at: AwareDatetime
    created_by: str
    id: str
    imports: tuple[AudienceImport, ...]
    name: Annotated[str, msgspec.Meta(min_length=1)]
    organization_id: str
    rules: tuple[AudienceRule, ...]
    # Required by the field list, but absent from the page's own example.
    type: AudienceType | None = None
    description: str | None = None
    group_id: str | None = None
    group_name: str | None = None
    group_type: GroupType | None = None
    icon_name: str | None = None
    last_refreshed_at: AwareDatetime | None = None
    if TYPE_CHECKING:
        metadata: FrozenObject | None = None
    else:
        metadata: _RawObject = None
    primary_external_id: str | None = None
    primary_last_synced_at: AwareDatetime | None = None
    primary_source_vendor: str | None = None
    primary_sync_source: SyncSource | None = None
    primary_sync_source_id: str | None = None
    refresh_interval_seconds: float | None = None
    updated_at: AwareDatetime | None = None
    updated_by: str | None = None


#: Reads and writes the stored value of a free-form field, under its property.
_SlotAccess = tuple[Callable[[Any], Any], Callable[[Any, Any], None]]


def _read_through(cls: type[_Model], name: str) -> _SlotAccess:
    """Make ``cls.name`` a read-only property giving the stored value as a read-only
    view (:func:`frozen`: raw JSON decoded, objects and arrays wrapped, views and None
    as they are); the decoder still fills the field's slot, and encoding writes it out
    as it is.
    Returns the slot's own get and set, bound once (looking ``__get__`` up on the
    slot makes a new method wrapper each time), to read and, right after decoding,
    replace the stored value."""
    slot: Any = cls.__dict__[name]
    get: Callable[[Any], Any] = slot.__get__

    def read(self: Any) -> Any:
        return frozen(get(self))

    read.__doc__ = f"``{name}``: free-form JSON, read-only, decoded when read."
    setattr(cls, name, property(read))
    return get, slot.__set__


_ISSUES = _read_through(ImportRowError, "issues")
_SOURCE_DATA = _read_through(SyncSource, "source_data")
_METADATA = _read_through(Audience, "metadata")


def prepare_to_keep(audiences: tuple[Audience, ...]) -> None:
    """Make freshly decoded audiences cheap to keep (in the cache), in place; only for
    audiences nobody else holds yet.

    Their free-form JSON is copied out of the response body (a raw view of it would
    keep the whole body alive), and the strings that recur (organization, group,
    audience and user ids, rule fields and values) are replaced by their interned
    copies (``sys.intern``), so that a value repeated within a group or across the
    groups kept is held once. Interned strings are freed with their last holder.
    """
    intern = sys.intern
    for audience in audiences:
        _intern_fields(audience, _AUDIENCE_STRINGS, intern)
        _detach(_METADATA, audience)
        source = audience.primary_sync_source
        if source is not None:
            _intern_fields(source, _SYNC_SOURCE_STRINGS, intern)
            _detach(_SOURCE_DATA, source)
        for item in audience.imports:
            _intern_fields(item, _IMPORT_STRINGS, intern)
            for error in item.errors:
                _detach(_ISSUES, error)
        for rule in audience.rules:
            _intern_fields(rule, _RULE_STRINGS, intern)
            values = rule.values
            if any(type(value) is str for value in values):
                shared = tuple(intern(v) if type(v) is str else v for v in values)
                _force_setattr(rule, "values", shared)


_force_setattr = msgspec.structs.force_setattr


def _intern_fields(owner: _Model, names: tuple[str, ...], intern: Callable[[str], str]) -> None:
    for name in names:
        value = getattr(owner, name)
        if type(value) is str:
            shared = intern(value)
            if shared is not value:
                _force_setattr(owner, name, shared)


#: The string fields whose values recur within a group or across an organization's
#: groups (its id, the group's, the users', an audience's id in its rules and imports);
#: names, descriptions and the other ids are unique to their record, and interning them
#: would only cost time.
_AUDIENCE_STRINGS = (
    "id", "organization_id", "group_id", "group_name", "created_by", "updated_by",
    "primary_source_vendor",
)  # fmt: skip
_SYNC_SOURCE_STRINGS = ("organization_id", "sync_source", "created_by", "updated_by")
_IMPORT_STRINGS = ("audience_id", "organization_id", "created_by", "updated_by")
_RULE_STRINGS = ("audience_id", "organization_id", "group_id", "field")


def _detach(slot: _SlotAccess, owner: _Model) -> None:
    """Replace a stored value that refers to the body (raw JSON text, or a tuple of
    them) with raw JSON text of its own."""
    get, put = slot
    value = get(owner)
    if type(value) is msgspec.Raw:
        put(owner, value.copy())
    elif value:
        put(owner, msgspec.Raw(_ENCODER.encode(value)))


# The page's required/optional split plus the constraints: `name` non-empty and
# date-times timezone-aware (naive ones are handled by the slow path below).
_DECODER = msgspec.json.Decoder(list[Audience])
_TUPLE_DECODER = msgspec.json.Decoder(tuple[Audience, ...])
_UNTYPED_DECODER = msgspec.json.Decoder()

_NAIVE_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?\Z")
_AUDIENCE_DATETIMES = ("createdAt", "updatedAt", "lastRefreshedAt", "primaryLastSyncedAt")
_IMPORT_DATETIMES = ("createdAt", "updatedAt")
_SYNC_DATETIMES = ("createdAt", "updatedAt", "lastSyncedAt")


def _enc_hook(obj: Any) -> Any:
    if isinstance(obj, (FrozenObject, FrozenArray)):
        return thaw(obj)
    raise NotImplementedError(f"cannot encode {type(obj).__name__}")


_ENCODER = msgspec.json.Encoder(enc_hook=_enc_hook)


def encode_audiences(audiences: list[Audience] | tuple[Audience, ...]) -> bytes:
    """Audiences back to the API's JSON (camelCase names), e.g. for NDJSON output."""
    return _ENCODER.encode(audiences)


def decode_group_audiences(data: bytes | bytearray | memoryview | str) -> list[Audience]:
    """Decode a ``GET /audiences/groups/{groupId}`` response body.

    Unknown fields are ignored and unknown enum values kept as their raw
    string. A date-time without an offset is taken as UTC.

    Raises:
        FanfareDecodeError: the body is not JSON, or not the documented shape;
            the message and ``path`` name the offending location (``$[3].name``).
    """
    return _decode(_DECODER, data)  # type: ignore[no-any-return]


def decode_audience_tuple(data: bytes | bytearray | memoryview | str) -> tuple[Audience, ...]:
    """:func:`decode_group_audiences` into the tuple the cache keeps."""
    return _decode(_TUPLE_DECODER, data)  # type: ignore[no-any-return]


def _decode(decoder: msgspec.json.Decoder[Any], data: bytes | bytearray | memoryview | str) -> Any:
    try:
        audiences = decoder.decode(data)
    except msgspec.ValidationError as exc:
        audiences = _decode_with_naive_datetimes(decoder, data, exc)
    except msgspec.DecodeError as exc:
        raise _not_json(exc) from exc
    _check_free_form(audiences)
    return audiences


#: First bytes of an object or null (msgspec strips the whitespace around a raw value).
_OBJECT_OR_NULL = b"{n"
#: How the decoder names the kind of a JSON value, by the Python type it decodes to.
_KIND_NAMES = {list: "array", str: "str", int: "int", float: "float", bool: "bool"}


def _check_free_form(audiences: list[Audience] | tuple[Audience, ...]) -> None:
    """Check the kind of each ``metadata`` and ``sourceData`` just decoded: an object, or
    null (kept as raw ``null``, read as None). (The decoder itself checks that ``issues``
    is an array: it stays a tuple of raw values, which measured no different.)

    Raises:
        FanfareDecodeError: a value of another kind, naming its JSON path.
    """
    get_metadata = _METADATA[0]
    get_source_data = _SOURCE_DATA[0]
    for index, audience in enumerate(audiences):
        value = get_metadata(audience)
        if value is not None and memoryview(value)[0] not in _OBJECT_OR_NULL:
            raise _wrong_kind("object | null", value, f"$[{index}].metadata")
        source = audience.primary_sync_source
        if source is not None:
            value = get_source_data(source)
            if value is not None and memoryview(value)[0] not in _OBJECT_OR_NULL:
                path = f"$[{index}].primarySyncSource.sourceData"
                raise _wrong_kind("object | null", value, path)


def _wrong_kind(expected: str, value: msgspec.Raw, path: str) -> FanfareDecodeError:
    got = _KIND_NAMES.get(type(_UNTYPED_DECODER.decode(value)), "JSON")
    return FanfareDecodeError(
        f"response body is not the documented shape: Expected `{expected}`, got `{got}`"
        f" - at `{path}`",
        path=path,
    )


def _not_json(exc: msgspec.DecodeError) -> FanfareDecodeError:
    return FanfareDecodeError(f"response body is not valid JSON: {exc}", path="$")


def _decode_with_naive_datetimes(
    decoder: msgspec.json.Decoder[Any],
    data: bytes | bytearray | memoryview | str,
    original: msgspec.ValidationError,
) -> Any:
    """Slow path, taken only when the fast decode failed: mark naive date-times as UTC
    and decode again; any remaining problem is reported with its JSON path."""
    try:
        raw = _UNTYPED_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise _not_json(exc) from exc
    if not (isinstance(raw, list) and _mark_naive_as_utc(raw)):
        raise _decode_error(original)
    try:
        return decoder.decode(_ENCODER.encode(raw))
    except msgspec.ValidationError as exc:
        raise _decode_error(exc) from exc


def _mark_naive_as_utc(audiences: list[Any]) -> bool:
    changed = False
    for audience in audiences:
        if not isinstance(audience, dict):
            continue
        changed |= _fix_fields(audience, _AUDIENCE_DATETIMES)
        imports = audience.get("imports")
        for item in imports if isinstance(imports, list) else ():
            changed |= _fix_fields(item, _IMPORT_DATETIMES)
        changed |= _fix_fields(audience.get("primarySyncSource"), _SYNC_DATETIMES)
    return changed


def _fix_fields(obj: Any, keys: tuple[str, ...]) -> bool:
    if not isinstance(obj, dict):
        return False
    changed = False
    for key in keys:
        value = obj.get(key)
        if isinstance(value, str) and _NAIVE_DATETIME.match(value):
            obj[key] = value + "+00:00"
            changed = True
    return changed


_PATH_IN_MESSAGE = re.compile(r" - at `(\$[^`]*)`\Z")
_MISSING_FIELD = re.compile(r"missing required field `([^`]+)`")


def _decode_error(exc: msgspec.ValidationError) -> FanfareDecodeError:
    text = str(exc)
    match = _PATH_IN_MESSAGE.search(text)
    path = match.group(1) if match else "$"
    if match:
        text = text[: match.start()]
    missing = _MISSING_FIELD.search(text)
    if missing:
        path = f"{path}.{missing.group(1)}"
    err = FanfareDecodeError(
        f"response body is not the documented shape: {text} - at `{path}`", path=path
    )
    err.__cause__ = exc
    return err
