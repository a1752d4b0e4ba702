"""Deterministic fake data for the Fanfare ``GET /audiences/groups/{groupId}`` endpoint.

Pure functions, no I/O and no dependence on the current time: the same arguments give the
same objects (and, through :func:`encode_group`, the same bytes) in every process running
the same Python version. Used by :mod:`fanfare_async.testing`.
"""

from __future__ import annotations

import hashlib
import random
import re
from datetime import datetime, timezone
from typing import Any

import msgspec

__all__ = ["encode_group", "generate_group", "group_ids", "is_uuid_shaped"]

_UUID_RE = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)

# 2024-01-01T00:00:00Z and the length of the two years 2024-2025 (2024 is a leap year).
_EPOCH_2024 = 1_704_067_200
_TWO_YEARS = 731 * 86_400

# Mean serialised size of one audience is ~2.9 KB: each audience aims at a size drawn
# from this range, filling the gap with its description.
_TARGET_MIN = 2_600
_TARGET_MAX = 3_200

_TYPES = ("DYNAMIC", "DYNAMIC", "STATIC_LIST", "SYNCED_LIST")
_GROUP_TYPES = ("SEGMENTED_VALUE", "RFM", None)
_INTERVALS: tuple[float, ...] = (300, 600, 900, 1800, 3600, 900.5)
_SYNC_STATUSES = ("PENDING", "PENDING", "PENDING", "COMPLETED", "FAILED")
_VENDORS = ("klaviyo", "shopify", "hubspot", "salesforce", "braze", "mailchimp")
_ICONS = ("users", "star", "crown", "heart", "shopping-cart", "gift", "zap", None)
_GROUP_NAMES = (
    "Customer value tiers",
    "RFM segments",
    "Newsletter cohorts",
    "Loyalty programme",
    "Regional audiences",
    "Campaign targets",
    "Clients fidèles",
    "Stammkunden ☕",
)
_NAMES = (
    "Champions",
    "Loyal customers",
    "Potential loyalists",
    "New customers",
    "Promising",
    "Need attention",
    "About to sleep",
    "At risk",
    "Cannot lose them",
    "Hibernating",
    "Lost",
    "VIP",
    "Early access",
    "Wishlist abandoners",
    "Clientes frecuentes",
    "Abonnés été",
    "優良顧客",
)
_RULE_FIELDS = (
    ("country", ("US", "CA", "GB", "FR", "DE", "ES", "JP", "BR", "AU")),
    ("email_domain", ("gmail.com", "outlook.com", "yahoo.com", "proton.me", "example.org")),
    ("tags", ("vip", "wholesale", "newsletter", "beta", "returning", "gift-card")),
    ("last_order_status", ("fulfilled", "refunded", "cancelled", "pending")),
    ("total_spent", ()),
    ("order_count", ()),
)
_WORDS = (
    "customers",
    "who",
    "purchased",
    "recently",
    "and",
    "frequently",
    "with",
    "high",
    "lifetime",
    "value",
    "engaged",
    "email",
    "campaigns",
    "segment",
    "refreshed",
    "from",
    "order",
    "history",
    "loyalty",
    "points",
    "region",
    "spend",
    "threshold",
    "excluding",
    "test",
    "accounts",
    "last",
    "days",
    "storefront",
    "checkout",
)
_ISSUES = (
    "Missing required column: email",
    "Invalid email address",
    "Duplicate row",
    "Phone number is not E.164",
)
# A fixed text (seeded shuffle of _WORDS) that descriptions are sliced from: one RNG call
# per description instead of one per word keeps a group cheap to generate.
_TEXT = " ".join(random.Random(20240101).choices(_WORDS, k=4_000))
_VARIANT = {c: "89ab"[int(c, 16) & 3] for c in "0123456789abcdef"}


def _rng(*parts: object) -> random.Random:
    """A ``random.Random`` seeded from a stable hash of ``parts`` (never ``hash()``)."""
    digest = hashlib.sha256(":".join(str(p) for p in parts).encode("utf-8")).digest()
    return random.Random(int.from_bytes(digest[:16], "big"))


def is_uuid_shaped(value: str) -> bool:
    """Whether ``value`` looks like a UUID in its canonical 8-4-4-4-12 hex form."""
    return _UUID_RE.fullmatch(value) is not None


def _uuid(rng: random.Random) -> str:
    h = f"{rng.getrandbits(128):032x}"
    return f"{h[0:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[h[16]]}{h[17:20]}-{h[20:32]}"


def group_ids(seed: int, count: int) -> list[str]:
    """``count`` deterministic, distinct, lower-case UUID4-shaped group ids for ``seed``."""
    if count < 0:
        raise ValueError("count must be >= 0")
    rng = _rng("group-ids", seed)
    h = rng.randbytes(16 * count).hex()
    out: list[str] = []
    seen: set[str] = set()
    for i in range(0, 32 * count, 32):
        s = h[i : i + 32]
        gid = f"{s[0:8]}-{s[8:12]}-4{s[13:16]}-{_VARIANT[s[16]]}{s[17:20]}-{s[20:32]}"
        while gid in seen:  # 122 random bits: practically never taken
            gid = _uuid(rng)
        seen.add(gid)
        out.append(gid)
    return out


def _date(ts: float, rng: random.Random) -> str:
    """RFC 3339 UTC date-time; about a third carry milliseconds."""
    dt = datetime.fromtimestamp(int(ts), tz=timezone.utc)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if rng.random() < 0.3:
        text += f".{rng.randrange(1000):03d}"
    return text + "Z"


def _user(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return "system"
    return f"user_{rng.getrandbits(96):024x}"


def _sentence(rng: random.Random, length: int) -> str:
    """A capitalised sentence of about ``length`` characters, cut from a fixed text."""
    length = min(length, len(_TEXT) // 2)
    start = _TEXT.find(" ", rng.randrange(len(_TEXT) - length - 1)) + 1
    end = _TEXT.rfind(" ", start, start + length + 1)
    text = _TEXT[start : end if end > start else start + length]
    return text[:1].upper() + text[1:] + "."


def _import(rng: random.Random, org: str, audience_id: str, created: int) -> dict[str, Any]:
    total = rng.randrange(50, 250_000)
    progress = rng.choice((100, 100, 100, rng.randrange(0, 100)))
    processed = total * progress // 100
    errors: list[dict[str, Any]] = []
    for _ in range(rng.randrange(0, 3)):
        issues: list[Any] = [rng.choice(_ISSUES)]
        if rng.random() < 0.5:
            issues.append({"field": "email", "message": "Invalid email address"})
        errors.append({"issues": issues, "row": rng.randrange(2, total + 2)})
    imp_created = created + rng.randrange(0, 30 * 86_400)
    return {
        "archived": rng.random() < 0.1,
        "audienceId": audience_id,
        "createdAt": _date(imp_created, rng),
        "createdBy": _user(rng),
        "errorCount": len(errors) + (rng.randrange(0, 40) if errors else 0),
        "id": _uuid(rng),
        "organizationId": org,
        "processedConsumers": processed,
        "progress": progress,
        "s3Key": f"imports/{org}/{audience_id}/{rng.getrandbits(64):016x}.csv",
        "errors": errors,
        "totalConsumers": total,
        "updatedAt": _date(imp_created + rng.randrange(60, 86_400), rng),
        "updatedBy": _user(rng),
    }


def _rule(
    rng: random.Random, org: str, audience_id: str, rule_group: str, position: int
) -> dict[str, Any]:
    field, choices = rng.choice(_RULE_FIELDS)
    values: list[Any]
    if choices:
        values = rng.sample(choices, rng.randrange(1, 4))
    else:
        # Numeric rules: mostly strings as the endpoint page shows, sometimes numbers
        # (another Fanfare page shows numbers).
        low = rng.randrange(0, 500)
        nums = [low, low + rng.randrange(1, 1000)]
        values = nums if rng.random() < 0.3 else [str(n) for n in nums]
    return {
        "audienceId": audience_id,
        "field": field,
        "id": _uuid(rng),
        "organizationId": org,
        "values": values,
        "groupId": rule_group,
        "position": position,
    }


def _sync_source(rng: random.Random, org: str, vendor: str, created: int) -> dict[str, Any]:
    source_data: dict[str, Any] = {}
    if rng.random() < 0.6:
        source_data = {
            "listId": f"{rng.getrandbits(40):010x}",
            "listName": _sentence(rng, 12).rstrip("."),
            "memberCount": rng.randrange(0, 100_000),
        }
    return {
        "archived": False,
        "createdAt": _date(created, rng),
        "createdBy": _user(rng),
        "id": _uuid(rng),
        "organizationId": org,
        "syncSource": vendor.upper(),
        "syncSourceId": f"{vendor}_{rng.getrandbits(48):012x}",
        "lastSyncedAt": _date(created + rng.randrange(3_600, 90 * 86_400), rng),
        "sourceData": source_data,
        "syncStatus": rng.choice(_SYNC_STATUSES),
        "updatedAt": _date(created + rng.randrange(60, 90 * 86_400), rng),
        "updatedBy": _user(rng),
    }


def _metadata(rng: random.Random) -> dict[str, Any] | None:
    roll = rng.random()
    if roll < 0.1:
        return None
    if roll < 0.2:
        return {}
    meta: dict[str, Any] = {
        "source": rng.choice(("dashboard", "api", "import", "integration")),
        "color": f"#{rng.getrandbits(24):06x}",
    }
    if rng.random() < 0.6:
        meta["tags"] = rng.sample(("vip", "q4", "retention", "winback", "beta", "eu"), 2)
    if rng.random() < 0.4:
        meta["owner"] = {"team": rng.choice(("crm", "growth", "lifecycle")), "priority": 2}
    return meta


def _audience(
    rng: random.Random,
    org: str,
    uuid_group_id: str | None,
    group_name: str | None,
    group_type: str | None,
    rule_group: str,
) -> dict[str, Any]:
    audience_id = _uuid(rng)
    kind = rng.choice(_TYPES)
    created = _EPOCH_2024 + rng.randrange(0, _TWO_YEARS * 2 // 3)
    updated = created + rng.randrange(0, _EPOCH_2024 + _TWO_YEARS - created)
    synced = kind == "SYNCED_LIST"
    vendor = rng.choice(_VENDORS)
    sync = _sync_source(rng, org, vendor, created) if synced else None
    imports = [_import(rng, org, audience_id, created) for _ in range(rng.randrange(0, 3))]
    rules = [_rule(rng, org, audience_id, rule_group, pos) for pos in range(rng.randrange(1, 4))]
    audience: dict[str, Any] = {
        "archived": rng.random() < 0.05,
        "createdAt": _date(created, rng),
        "createdBy": _user(rng),
        "id": audience_id,
        "imports": imports,
        "name": f"{rng.choice(_NAMES)} {rng.randrange(1, 100)}",
        "organizationId": org,
        "rules": rules,
        "type": kind,
        "description": "",
        "groupId": uuid_group_id,
        "groupName": group_name,
        "groupType": group_type,
        "iconName": rng.choice(_ICONS),
        "lastRefreshedAt": None,
        "metadata": _metadata(rng),
        "primaryExternalId": f"ext_{rng.getrandbits(64):016x}" if synced else None,
        "primaryLastSyncedAt": sync["lastSyncedAt"] if sync else None,
        "primarySourceVendor": vendor if synced else None,
        "primarySyncSource": sync,
        "primarySyncSourceId": sync["id"] if sync else None,
        "refreshIntervalSeconds": None if kind == "STATIC_LIST" else rng.choice(_INTERVALS),
        "updatedAt": _date(updated, rng) if rng.random() < 0.9 else None,
        "updatedBy": _user(rng) if rng.random() < 0.9 else None,
    }
    # Fill the description so the audience lands near its target size.
    target = rng.randrange(_TARGET_MIN, _TARGET_MAX)
    gap = target - len(msgspec.json.encode(audience))
    audience["description"] = _sentence(rng, max(gap - 1, 16))
    return audience


def generate_group(seed: int, group_id: str, audiences: int = 8) -> list[dict[str, Any]]:
    """The JSON-ready audience objects of ``group_id``, deterministic from ``(seed, group_id)``.

    Every field of the endpoint's schema is present with camelCase names; one audience
    serialises to about 2.9 KB. ``groupId`` is ``group_id`` when it is UUID-shaped (else
    null) and ``lastRefreshedAt`` is always null.
    """
    if audiences < 0:
        raise ValueError("audiences must be >= 0")
    org = _uuid(_rng("org", seed))
    rng = _rng("group", seed, group_id)
    uuid_group_id = group_id if is_uuid_shaped(group_id) else None
    group_name = rng.choice(_GROUP_NAMES) if rng.random() < 0.9 else None
    group_type = rng.choice(_GROUP_TYPES)
    rule_group = uuid_group_id or _uuid(rng)
    return [
        _audience(rng, org, uuid_group_id, group_name, group_type, rule_group)
        for _ in range(audiences)
    ]


def encode_group(audiences: list[dict[str, Any]]) -> bytes:
    """Compact JSON bytes of a group's audiences (msgspec)."""
    return msgspec.json.encode(audiences)
