"""The same response schema as pydantic v2 models and as plain dataclasses.

Same fields and nesting as :mod:`fanfare_async._models`; date-times are
timezone-aware, enums are plain ``str``, nested collections are tuples.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, TypeAdapter
from pydantic.alias_generators import to_camel

# ----------------------------------------------------------------------------- pydantic v2


class _PModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class ImportRowErrorModel(_PModel):
    row: int | None = None
    issues: tuple[Any, ...] = ()


class AudienceImportModel(_PModel):
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
    errors: tuple[ImportRowErrorModel, ...] = ()


class AudienceRuleModel(_PModel):
    id: str
    field: str
    values: tuple[Union[str, int, float, bool, None], ...] = ()  # noqa: UP007
    audience_id: str | None = None
    organization_id: str | None = None
    group_id: str | None = None
    position: int | None = None


class SyncSourceModel(_PModel):
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
    source_data: dict[str, Any] | None = None
    sync_status: str | None = None


class AudienceModel(_PModel):
    id: str
    name: str
    archived: bool
    created_at: AwareDatetime
    created_by: str
    organization_id: str
    imports: tuple[AudienceImportModel, ...]
    rules: tuple[AudienceRuleModel, ...]
    type: str | None = None
    description: str | None = None
    group_id: str | None = None
    group_name: str | None = None
    group_type: str | None = None
    icon_name: str | None = None
    last_refreshed_at: AwareDatetime | None = None
    metadata: dict[str, Any] | None = None
    primary_external_id: str | None = None
    primary_last_synced_at: AwareDatetime | None = None
    primary_source_vendor: str | None = None
    primary_sync_source: SyncSourceModel | None = None
    primary_sync_source_id: str | None = None
    refresh_interval_seconds: float | None = None
    updated_at: AwareDatetime | None = None
    updated_by: str | None = None


PYDANTIC_GROUP = TypeAdapter(list[AudienceModel])

# ----------------------------------------------------------------------------- dataclasses


def _dt(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class ImportRowErrorDC:
    row: int | None
    issues: tuple[Any, ...]

    @classmethod
    def build(cls, d: dict[str, Any]) -> ImportRowErrorDC:
        return cls(d.get("row"), tuple(d.get("issues") or ()))


@dataclass(frozen=True, slots=True)
class AudienceImportDC:
    id: str
    audience_id: str | None
    organization_id: str | None
    archived: bool
    created_at: datetime | None
    created_by: str | None
    updated_at: datetime | None
    updated_by: str | None
    error_count: int | None
    processed_consumers: int | None
    total_consumers: int | None
    progress: float | None
    s3_key: str | None
    errors: tuple[ImportRowErrorDC, ...]

    @classmethod
    def build(cls, d: dict[str, Any]) -> AudienceImportDC:
        return cls(
            d["id"],
            d.get("audienceId"),
            d.get("organizationId"),
            d.get("archived", False),
            _dt(d.get("createdAt")),
            d.get("createdBy"),
            _dt(d.get("updatedAt")),
            d.get("updatedBy"),
            d.get("errorCount"),
            d.get("processedConsumers"),
            d.get("totalConsumers"),
            d.get("progress"),
            d.get("s3Key"),
            tuple(ImportRowErrorDC.build(e) for e in d.get("errors") or ()),
        )


@dataclass(frozen=True, slots=True)
class AudienceRuleDC:
    id: str
    field: str
    values: tuple[Any, ...]
    audience_id: str | None
    organization_id: str | None
    group_id: str | None
    position: int | None

    @classmethod
    def build(cls, d: dict[str, Any]) -> AudienceRuleDC:
        return cls(
            d["id"],
            d["field"],
            tuple(d.get("values") or ()),
            d.get("audienceId"),
            d.get("organizationId"),
            d.get("groupId"),
            d.get("position"),
        )


@dataclass(frozen=True, slots=True)
class SyncSourceDC:
    id: str
    organization_id: str | None
    archived: bool
    created_at: datetime | None
    created_by: str | None
    updated_at: datetime | None
    updated_by: str | None
    sync_source: str | None
    sync_source_id: str | None
    last_synced_at: datetime | None
    source_data: dict[str, Any] | None
    sync_status: str | None

    @classmethod
    def build(cls, d: dict[str, Any]) -> SyncSourceDC:
        return cls(
            d["id"],
            d.get("organizationId"),
            d.get("archived", False),
            _dt(d.get("createdAt")),
            d.get("createdBy"),
            _dt(d.get("updatedAt")),
            d.get("updatedBy"),
            d.get("syncSource"),
            d.get("syncSourceId"),
            _dt(d.get("lastSyncedAt")),
            d.get("sourceData"),
            d.get("syncStatus"),
        )


@dataclass(frozen=True, slots=True)
class AudienceDC:
    id: str
    name: str
    archived: bool
    created_at: datetime | None
    created_by: str
    organization_id: str
    imports: tuple[AudienceImportDC, ...]
    rules: tuple[AudienceRuleDC, ...]
    type: str | None
    description: str | None
    group_id: str | None
    group_name: str | None
    group_type: str | None
    icon_name: str | None
    last_refreshed_at: datetime | None
    metadata: dict[str, Any] | None
    primary_external_id: str | None
    primary_last_synced_at: datetime | None
    primary_source_vendor: str | None
    primary_sync_source: SyncSourceDC | None
    primary_sync_source_id: str | None
    refresh_interval_seconds: float | None
    updated_at: datetime | None
    updated_by: str | None

    @classmethod
    def build(cls, d: dict[str, Any]) -> AudienceDC:
        sync = d.get("primarySyncSource")
        return cls(
            d["id"],
            d["name"],
            d["archived"],
            _dt(d["createdAt"]),
            d["createdBy"],
            d["organizationId"],
            tuple(AudienceImportDC.build(i) for i in d["imports"]),
            tuple(AudienceRuleDC.build(r) for r in d["rules"]),
            d.get("type"),
            d.get("description"),
            d.get("groupId"),
            d.get("groupName"),
            d.get("groupType"),
            d.get("iconName"),
            _dt(d.get("lastRefreshedAt")),
            d.get("metadata"),
            d.get("primaryExternalId"),
            _dt(d.get("primaryLastSyncedAt")),
            d.get("primarySourceVendor"),
            None if sync is None else SyncSourceDC.build(sync),
            d.get("primarySyncSourceId"),
            d.get("refreshIntervalSeconds"),
            _dt(d.get("updatedAt")),
            d.get("updatedBy"),
        )


def dataclass_group(raw: list[dict[str, Any]]) -> list[AudienceDC]:
    return [AudienceDC.build(a) for a in raw]
