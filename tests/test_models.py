"""Decoding the group-audiences body into frozen msgspec models."""

from __future__ import annotations

import gc
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fanfare_async import (
    Audience,
    AudienceImport,
    AudienceRule,
    AudienceType,
    FanfareDecodeError,
    GroupType,
    ImportRowError,
    SyncSource,
    SyncStatus,
    decode_group_audiences,
)
from fanfare_async._frozen_json import FrozenObject
from fanfare_async._models import encode_audiences

EXAMPLE = (Path(__file__).parent / "data" / "endpoint_example.json").read_bytes()
UTC = timezone.utc


def example() -> list[dict[str, Any]]:
    """A fresh, mutable copy of the endpoint page's example body."""
    data: list[dict[str, Any]] = json.loads(EXAMPLE)
    return data


def encode(data: Any) -> bytes:
    return json.dumps(data).encode()


def test_page_example_decodes_verbatim() -> None:
    """The page's example body, byte for byte, decodes; its missing `type` is None."""
    [audience] = decode_group_audiences(EXAMPLE)
    assert isinstance(audience, Audience)
    assert audience.type is None
    assert audience.id == "3c90c3cc-0d44-4b50-8888-8dd25736052a"
    assert audience.archived is True
    assert audience.created_at == datetime(2023, 11, 7, 5, 31, 56, tzinfo=UTC)
    assert audience.refresh_interval_seconds == 123.0
    assert audience.last_refreshed_at == datetime(2023, 11, 7, 5, 31, 56, tzinfo=UTC)
    [imp] = audience.imports
    assert isinstance(imp, AudienceImport)
    assert imp.s3_key == "<string>"
    assert imp.error_count == 123
    # Plain JSON values compare equal to the decoded view (typed as the view).
    assert imp.errors == (ImportRowError(row=123, issues=("<unknown>",)),)  # type: ignore[arg-type]
    [rule] = audience.rules
    assert isinstance(rule, AudienceRule)
    assert rule.values == ("<string>",)
    assert rule.position == 0
    source = audience.primary_sync_source
    assert isinstance(source, SyncSource)
    assert source.sync_status is SyncStatus.PENDING
    assert source.source_data == {}
    assert audience.metadata == {}


def _is_subsequence(keys: list[str], order: tuple[str, ...]) -> bool:
    remaining = iter(order)
    return all(key in remaining for key in keys)


def test_fields_are_declared_in_the_order_the_api_sends_them() -> None:
    """msgspec matches a key on its first try when fields come in wire order (the
    decode speed relies on it): the page example's keys are in declaration order."""
    [audience] = example()
    [imp] = audience["imports"]
    cases = [
        (Audience, audience),
        (AudienceImport, imp),
        (ImportRowError, imp["errors"][0]),
        (AudienceRule, audience["rules"][0]),
        (SyncSource, audience["primarySyncSource"]),
    ]
    for model, sent in cases:
        order = model.__struct_encode_fields__
        assert set(sent) <= set(order), (model, set(sent) - set(order))
        assert _is_subsequence(list(sent), order), (model, list(sent), order)


def test_nested_collections_are_tuples_and_models_frozen() -> None:
    """Nothing reachable from an Audience can be mutated in place."""
    data = example()
    data[0]["metadata"] = {"tags": ["a", {"deep": 1}], "n": {"x": 1}}
    [audience] = decode_group_audiences(encode(data))
    assert isinstance(audience.imports, tuple)
    assert isinstance(audience.rules, tuple)
    with pytest.raises(AttributeError):
        audience.name = "changed"  # type: ignore[misc]
    assert audience.metadata is not None
    with pytest.raises(TypeError):
        audience.metadata["n"] = 2  # type: ignore[index]
    tags = audience.metadata["tags"]
    assert tags == ("a", {"deep": 1})
    with pytest.raises(TypeError):
        tags[1]["deep"] = 2
    assert audience.metadata.to_dict() == {"tags": ["a", {"deep": 1}], "n": {"x": 1}}


def test_known_enum_values_are_members() -> None:
    """Documented enum values decode to the enum members and compare with strings."""
    data = example()
    data[0]["type"] = "DYNAMIC"
    data[0]["groupType"] = "RFM"
    [audience] = decode_group_audiences(encode(data))
    assert audience.type is AudienceType.DYNAMIC
    assert audience.type == "DYNAMIC"
    assert audience.group_type is GroupType.RFM


def test_unknown_enum_values_and_fields_are_kept_not_fatal() -> None:
    """The API may grow: new enum values keep their raw string, new fields are ignored."""
    data = example()
    data[0]["type"] = "SMART_LIST"
    data[0]["groupType"] = "COHORT"
    data[0]["primarySyncSource"]["syncStatus"] = "SYNCING"
    data[0]["version"] = 7
    data[0]["imports"][0]["brandNew"] = {"x": [1]}
    [audience] = decode_group_audiences(encode(data))
    assert audience.type == "SMART_LIST"
    assert isinstance(audience.type, AudienceType)
    assert audience.type.value == "SMART_LIST"
    assert audience.group_type == "COHORT"
    assert audience.primary_sync_source is not None
    assert audience.primary_sync_source.sync_status == "SYNCING"


def test_date_without_offset_is_utc() -> None:
    """A naive date-time is read as UTC, everywhere date-times appear."""
    text = EXAMPLE.replace(b'"2023-11-07T05:31:56Z"', b'"2023-11-07T05:31:56"')
    [audience] = decode_group_audiences(text)
    expected = datetime(2023, 11, 7, 5, 31, 56, tzinfo=UTC)
    assert audience.created_at == expected
    assert audience.created_at.tzinfo is not None
    assert audience.imports[0].updated_at == expected
    assert audience.primary_sync_source is not None
    assert audience.primary_sync_source.last_synced_at == expected
    assert audience.metadata == {}


def test_offsets_are_kept() -> None:
    """An explicit offset is preserved."""
    data = example()
    data[0]["createdAt"] = "2023-11-07T07:31:56+02:00"
    [audience] = decode_group_audiences(encode(data))
    assert audience.created_at == datetime(2023, 11, 7, 5, 31, 56, tzinfo=UTC)
    assert audience.created_at.utcoffset() is not None


def test_numbers_in_rule_values_and_float_intervals() -> None:
    """Rule values may be numbers; refreshIntervalSeconds may be fractional."""
    data = example()
    data[0]["rules"][0]["values"] = ["a", 1, 2.5]
    data[0]["refreshIntervalSeconds"] = 90.5
    [audience] = decode_group_audiences(encode(data))
    assert audience.rules[0].values == ("a", 1, 2.5)
    assert audience.refresh_interval_seconds == 90.5


def test_empty_list_and_nulls() -> None:
    """An empty array is no audiences; nullable fields accept null."""
    assert decode_group_audiences(b"[]") == []
    data = example()
    for field in ("description", "groupId", "metadata", "primarySyncSource", "updatedAt"):
        data[0][field] = None
    [audience] = decode_group_audiences(encode(data))
    assert audience.metadata is None
    assert audience.primary_sync_source is None


def _mutated(path: str, mutate: Any) -> bytes:
    data = example()
    data.append(example()[0])
    mutate(data)
    return encode(data)


@pytest.mark.parametrize(
    ("body", "path"),
    [
        (_mutated("name", lambda d: d[1].pop("name")), "$[1].name"),
        (_mutated("name", lambda d: d[1].update(name="")), "$[1].name"),
        (_mutated("name", lambda d: d[1].update(name=5)), "$[1].name"),
        (_mutated("archived", lambda d: d[0].update(archived="yes")), "$[0].archived"),
        (_mutated("imports", lambda d: d[0].update(imports=None)), "$[0].imports"),
        (_mutated("createdAt", lambda d: d[1].update(createdAt="yesterday")), "$[1].createdAt"),
        (
            _mutated("errorCount", lambda d: d[0]["imports"][0].update(errorCount="x")),
            "$[0].imports[0].errorCount",
        ),
        (_mutated("metadata", lambda d: d[0].update(metadata=[1])), "$[0].metadata"),
        (
            _mutated("sourceData", lambda d: d[1]["primarySyncSource"].update(sourceData="x")),
            "$[1].primarySyncSource.sourceData",
        ),
        (
            _mutated("issues", lambda d: d[0]["imports"][0]["errors"][0].update(issues={})),
            "$[0].imports[0].errors[0].issues",
        ),
        (b'{"not": "an array"}', "$"),
        (b"[1, 2]", "$[0]"),
    ],
)
def test_wrong_shapes_name_the_json_path(body: bytes, path: str) -> None:
    """Missing required fields and wrong types raise FanfareDecodeError with the path."""
    with pytest.raises(FanfareDecodeError) as info:
        decode_group_audiences(body)
    assert info.value.path == path
    assert path in str(info.value)


def test_naive_dates_do_not_hide_other_errors() -> None:
    """A body with a naive date and a real error still reports the real error."""
    data = example()
    data[0]["createdAt"] = "2023-11-07T05:31:56"
    data[0]["name"] = 7
    with pytest.raises(FanfareDecodeError) as info:
        decode_group_audiences(encode(data))
    assert info.value.path == "$[0].name"


@pytest.mark.parametrize("body", [b"", b"nope", b"[", b'[{"id": ', EXAMPLE[:-40], b"\xff\xfe"])
def test_malformed_json_is_a_decode_error(body: bytes) -> None:
    """Not JSON at all, or truncated JSON, is a FanfareDecodeError."""
    with pytest.raises(FanfareDecodeError, match="not valid JSON"):
        decode_group_audiences(body)


def test_decoded_models_are_not_tracked_by_gc() -> None:
    """gc=False structs: a large cache adds nothing to a collection's work."""
    [audience] = decode_group_audiences(EXAMPLE)
    assert not gc.is_tracked(audience)
    assert not gc.is_tracked(audience.imports[0])


def test_models_round_trip_to_the_wire_names() -> None:
    """Attributes are snake_case, the wire names camelCase; encoding gives the body back."""
    [audience] = decode_group_audiences(EXAMPLE)
    [wire] = msgspec.json.decode(encode_audiences([audience]))
    assert "refreshIntervalSeconds" in wire
    assert "organizationId" in wire
    assert wire["primarySyncSource"]["syncStatus"] == "PENDING"
    assert decode_group_audiences(encode_audiences([audience])) == [audience]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def _variant(base: dict[str, Any], key: str, value: Any) -> bytes:
    item = dict(base)
    item[key] = value
    return encode([item])


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(list(example()[0])), _json)
def test_any_field_value_decodes_or_raises_the_typed_error(key: str, value: Any) -> None:
    """Property: replacing any field with any JSON value never raises anything untyped."""
    try:
        result = decode_group_audiences(_variant(example()[0], key, value))
    except FanfareDecodeError as exc:
        assert exc.path is not None and exc.path.startswith("$")
    else:
        assert len(result) == 1


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | _json.map(lambda v: json.dumps(v).encode()))
def test_any_bytes_decode_or_raise_the_typed_error(body: bytes) -> None:
    """Property: arbitrary bytes give audiences or FanfareDecodeError, never another exception."""
    try:
        result = decode_group_audiences(body)
    except FanfareDecodeError:
        return
    assert isinstance(result, list)


def test_frozen_views_compare_hash_and_copy() -> None:
    """Free-form JSON reads like dicts and lists, hashes, and thaws into mutable copies."""
    data = example()
    data[0]["metadata"] = {"tags": ["a", {"deep": [1, 2]}], "n": None}
    [audience] = decode_group_audiences(encode(data))
    [again] = decode_group_audiences(encode(data))
    assert audience == again
    assert hash(audience) == hash(again)
    metadata = audience.metadata
    assert metadata is not None
    assert metadata == {"tags": ["a", {"deep": [1, 2]}], "n": None}
    assert "tags" in metadata
    assert list(metadata) == ["tags", "n"]
    tags = metadata["tags"]
    assert tags[1]["deep"][::-1] == [2, 1]
    assert [type(t).__name__ for t in tags] == ["str", "FrozenObject"]
    thawed = metadata.to_dict()
    thawed["tags"][1]["deep"].append(3)
    assert metadata["tags"][1]["deep"] == (1, 2)
    with pytest.raises(TypeError):
        tags[0] = "b"


def test_free_form_json_is_read_on_access_and_compares_with_hand_built_models() -> None:
    """Raw free-form JSON reads as views; a model built by hand with plain values is equal."""
    data = example()
    data[0]["metadata"] = {"owner": {"team": "crm"}, "tags": ["q4"]}
    [audience] = decode_group_audiences(encode(data))
    metadata = audience.metadata
    assert isinstance(metadata, FrozenObject)
    assert metadata["owner"]["team"] == "crm"
    assert audience.metadata == metadata  # each read decodes afresh, to an equal view
    by_hand = msgspec.structs.replace(audience, metadata={"tags": ["q4"], "owner": {"team": "crm"}})
    assert by_hand == audience
    assert (by_hand != audience) is False
    assert hash(by_hand) == hash(audience)
    other = msgspec.structs.replace(audience, metadata={"tags": []})
    assert other != audience
    assert msgspec.structs.replace(audience, name="other") != audience
    source = audience.primary_sync_source
    assert source is not None
    assert source == SyncSource(
        **{f: getattr(source, f) for f in source.__struct_fields__ if f != "source_data"},
        source_data=FrozenObject({}),
    )


def test_repr_shows_json_values_and_omits_defaults() -> None:
    """repr shows free-form JSON as views (never raw buffers) and only non-default fields."""
    data = example()
    data[0]["metadata"] = {"k": [1]}
    data[0]["description"] = None
    [audience] = decode_group_audiences(encode(data))
    text = repr(audience)
    assert "metadata=FrozenObject({'k': [1]})" in text
    assert "Raw" not in text
    assert "description=" not in text
    assert repr(ImportRowError(row=1)) == "ImportRowError(row=1)"
    assert repr(audience.imports[0].errors[0]) == (
        "ImportRowError(issues=FrozenArray(['<unknown>']), row=123)"
    )


def test_free_form_json_adds_no_tracked_objects() -> None:
    """A free-form object is kept as one raw JSON text, which the collector neither
    tracks nor counts (a dict would be a container it counts as it is made); after one
    collection the group holds nothing tracked."""
    data = example()
    data[0]["metadata"] = {"owner": {"team": "crm"}, "tags": ["q4", {"x": 1}]}
    [audience] = decode_group_audiences(encode(data))
    stored = msgspec.structs.astuple(audience)
    metadata = stored[audience.__struct_fields__.index("metadata")]
    assert type(metadata) is msgspec.Raw and not gc.is_tracked(metadata)
    [error] = audience.imports[0].errors
    issues = msgspec.structs.astuple(error)[error.__struct_fields__.index("issues")]
    assert audience.metadata == data[0]["metadata"]
    assert error.issues == data[0]["imports"][0]["errors"][0]["issues"]
    gc.collect()
    assert not gc.is_tracked(issues)
    assert not gc.is_tracked(audience.imports)


_FREE_FORM_WRONG_KINDS = [
    (field, value, got)
    for field in ("metadata", "sourceData")
    for value, got in (([1], "array"), ("x", "str"), (5, "int"), (-1.5, "float"), (True, "bool"))
] + [("issues", value, got) for value, got in (({"an": "object"}, "object"), (5, "int"))]


@pytest.mark.parametrize(("field", "value", "got"), _FREE_FORM_WRONG_KINDS)
def test_free_form_values_of_the_wrong_kind_are_named(field: str, value: Any, got: str) -> None:
    """metadata and sourceData must be objects or null, issues an array: any other kind
    raises FanfareDecodeError naming its path and the kind it found."""
    data = example()
    data.append(example()[0])
    target = data[1]
    path = f"$[1].{field}"
    if field == "sourceData":
        target = target["primarySyncSource"]
        path = "$[1].primarySyncSource.sourceData"
    elif field == "issues":
        target = target["imports"][0]["errors"][0]
        path = "$[1].imports[0].errors[0].issues"
    target[field] = value
    with pytest.raises(FanfareDecodeError) as info:
        decode_group_audiences(encode(data))
    assert info.value.path == path
    assert f"got `{got}`" in str(info.value)


def test_free_form_null_and_whitespace() -> None:
    """An explicit null is None, like an absent value; whitespace around a value does not
    change its kind; issues may not be null."""
    data = example()
    data[0]["metadata"] = None
    data[0]["primarySyncSource"]["sourceData"] = None
    [audience] = decode_group_audiences(encode(data))
    assert audience.metadata is None
    assert audience.primary_sync_source is not None
    assert audience.primary_sync_source.source_data is None
    spaced = encode(example()).replace(b'"metadata":', b'"metadata":  \n\t ')
    assert spaced != encode(example())
    [audience] = decode_group_audiences(spaced)
    assert audience.metadata == example()[0]["metadata"]
    data = example()
    data[0]["imports"][0]["errors"][0]["issues"] = None
    with pytest.raises(FanfareDecodeError) as info:
        decode_group_audiences(encode(data))
    assert info.value.path == "$[0].imports[0].errors[0].issues"
    assert "got `null`" in str(info.value)


def test_unknown_enum_values_are_remembered_up_to_a_bound() -> None:
    """A repeated unknown value decodes to the same pseudo-member; hostile variety stays bounded."""
    data = example()
    data[0]["groupType"] = "COHORT_V2"
    [first] = decode_group_audiences(encode(data))
    [second] = decode_group_audiences(encode(data))
    assert first.group_type is second.group_type
    assert list(GroupType) == [GroupType.SEGMENTED_VALUE, GroupType.RFM]
    for n in range(500):
        data[0]["groupType"] = f"HOSTILE_{n}"
        [audience] = decode_group_audiences(encode(data))
        assert audience.group_type == f"HOSTILE_{n}"
    assert len(GroupType._value2member_map_) <= 64 + len(GroupType.__members__)
