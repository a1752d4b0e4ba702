"""Typed models of the group-audiences response, and their decoder.

Structs are frozen and untracked by the garbage collector (``gc=False``): a
decoded group holds no reference cycles, so a cache of 100,000 groups adds
nothing to the cost of a ``gc.collect()``. Free-form JSON objects
(``metadata``, ``sourceData``, import issues) are deep-frozen into read-only
mappings and tuples, so a value shared through the cache cannot be changed by
one of its readers.
"""

from __future__ import annotations

import enum
import re
from datetime import datetime
from typing import Annotated, Any, Union

import msgspec

from ._exceptions import FanfareDecodeError
from ._frozen_json import FrozenArray, FrozenObject, thaw

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

JSONValue = Any
# Naive date-times fail this constraint and are then read as UTC by the slow path.
AwareDatetime = Annotated[datetime, msgspec.Meta(tz=True)]


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
        member = str.__new__(cls, value)
        member._name_ = value
        member._value_ = value
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
    repr_omit_defaults=True,
):
    pass


class ImportRowError(_Model, frozen=True):
    """One rejected row of an audience import; ``issues`` are free-form JSON values."""

    row: int | None = None
    issues: FrozenArray = msgspec.field(default_factory=FrozenArray)


class AudienceImport(_Model, frozen=True):
    """A file import into a static-list audience."""

    id: str
    audience_id: str | None = None
    organization_id: str | None = None
    archived: bool = False
    created_at: AwareDatetime | None = None
    created_by: str | None = None
    updated_at: AwareDatetime | None = None
    updated_by: str | None = None
    error_count: int | None = None
    processed_consumers: int | None = None
    total_consumers: int | None = None
    progress: float | None = None
    s3_key: str | None = None
    errors: tuple[ImportRowError, ...] = ()


class AudienceRule(_Model, frozen=True):
    """A rule of a dynamic audience: ``field`` matches one of ``values``."""

    id: str
    field: str
    values: tuple[Union[str, int, float, bool, None], ...] = ()  # noqa: UP007
    audience_id: str | None = None
    organization_id: str | None = None
    group_id: str | None = None
    position: int | None = None


class SyncSource(_Model, frozen=True):
    """The external system an audience is synchronised from."""

    id: str
    organization_id: str | None = None
    archived: bool = False
    created_at: AwareDatetime | None = None
    created_by: str | None = None
    updated_at: AwareDatetime | None = None
    updated_by: str | None = None
    sync_source: str | None = None
    sync_source_id: str | None = None
    last_synced_at: AwareDatetime | None = None
    source_data: FrozenObject | None = None
    sync_status: SyncStatus | None = None


class Audience(_Model, frozen=True):
    """One audience of a group, as returned by ``GET /audiences/groups/{groupId}``."""

    id: str
    name: Annotated[str, msgspec.Meta(min_length=1)]
    archived: bool
    created_at: AwareDatetime
    created_by: str
    organization_id: str
    imports: tuple[AudienceImport, ...]
    rules: tuple[AudienceRule, ...]
    # Required by the field list, but absent from the page's own example.
    type: AudienceType | None = None
    description: str | None = None
    group_id: str | None = None
    group_name: str | None = None
    group_type: GroupType | None = None
    icon_name: str | None = None
    last_refreshed_at: AwareDatetime | None = None
    metadata: FrozenObject | None = None
    primary_external_id: str | None = None
    primary_last_synced_at: AwareDatetime | None = None
    primary_source_vendor: str | None = None
    primary_sync_source: SyncSource | None = None
    primary_sync_source_id: str | None = None
    refresh_interval_seconds: float | None = None
    updated_at: AwareDatetime | None = None
    updated_by: str | None = None


_new_view = object.__new__


def _dec_hook(type_: type, obj: Any) -> Any:
    # Called ~18 times per typical group: wraps the decoder's fresh container
    # in place (what FrozenObject._wrap / FrozenArray._wrap do, minus a call).
    kind = type(obj)
    if type_ is FrozenObject and kind is dict:
        view: Any = _new_view(FrozenObject)
        view._data = obj
        return view
    if type_ is FrozenArray and kind is list:
        view = _new_view(FrozenArray)
        view._items = obj
        return view
    expected = "object" if type_ is FrozenObject else "array"
    raise ValueError(f"Expected `{expected}`, got `{kind.__name__}`")


# The page's required/optional split plus the constraints: `name` non-empty and
# date-times timezone-aware (naive ones are handled by the slow path below).
_DECODER = msgspec.json.Decoder(list[Audience], dec_hook=_dec_hook)
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
    return _ENCODER.encode(list(audiences))


def decode_group_audiences(data: bytes | bytearray | memoryview | str) -> list[Audience]:
    """Decode a ``GET /audiences/groups/{groupId}`` response body.

    Unknown fields are ignored and unknown enum values kept as their raw
    string. A date-time without an offset is taken as UTC.

    Raises:
        FanfareDecodeError: the body is not JSON, or not the documented shape;
            the message and ``path`` name the offending location (``$[3].name``).
    """
    try:
        audiences = _DECODER.decode(data)
    except msgspec.ValidationError as exc:
        audiences = _decode_with_naive_datetimes(data, exc)
    except msgspec.DecodeError as exc:
        raise _not_json(exc) from exc
    return audiences


def _not_json(exc: msgspec.DecodeError) -> FanfareDecodeError:
    return FanfareDecodeError(f"response body is not valid JSON: {exc}", path="$")


def _decode_with_naive_datetimes(
    data: bytes | bytearray | memoryview | str, original: msgspec.ValidationError
) -> list[Audience]:
    """Slow path, taken only when the fast decode failed: mark naive date-times as UTC
    and convert again; any remaining problem is reported with its JSON path."""
    try:
        raw = _UNTYPED_DECODER.decode(data)
    except msgspec.DecodeError as exc:
        raise _not_json(exc) from exc
    if not (isinstance(raw, list) and _mark_naive_as_utc(raw)):
        raise _decode_error(original)
    try:
        return msgspec.convert(raw, list[Audience], dec_hook=_dec_hook)
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
