"""The public surface: exactly the contract's names, importable from the package."""

from __future__ import annotations

import fanfare_async

CONTRACT_NAMES = {
    "FanfareClient",
    "RateLimit",
    "RateLimitState",
    "CacheStats",
    "Audience",
    "AudienceImport",
    "ImportRowError",
    "AudienceRule",
    "SyncSource",
    "AudienceType",
    "GroupType",
    "SyncStatus",
    "decode_group_audiences",
    "FanfareError",
    "FanfareConfigError",
    "InvalidGroupIdError",
    "FanfareClientClosedError",
    "TransportError",
    "FanfareTimeoutError",
    "FanfareDecodeError",
    "APIError",
    "BadRequestError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "ConflictError",
    "RateLimitError",
    "ServerError",
}


def test_all_is_the_contract_plus_version() -> None:
    """__all__ is sorted and drifts from the contract only by __version__."""
    assert fanfare_async.__all__ == sorted(fanfare_async.__all__)
    assert set(fanfare_async.__all__) == CONTRACT_NAMES | {"__version__"}


def test_every_exported_name_is_public_and_importable() -> None:
    """Each name resolves, and its module is the package or one of its private modules."""
    for name in fanfare_async.__all__:
        member = getattr(fanfare_async, name)
        module = getattr(member, "__module__", "fanfare_async")
        assert module.startswith("fanfare_async"), name


def test_testing_submodule_is_public() -> None:
    """The test double is importable for users' own tests."""
    from fanfare_async.testing import MockFanfareServer

    assert MockFanfareServer.__module__ == "fanfare_async.testing"
