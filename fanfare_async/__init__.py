"""fanfare_async: a fast, typed async client for Fanfare's group audiences.

>>> async with FanfareClient(secret_key="sk_test_...") as client:  # doctest: +SKIP
...     audiences = await client.get_group_audiences(group_id)
"""

from .__about__ import __version__ as __version__
from ._cache import CacheStats as CacheStats
from ._client import FanfareClient as FanfareClient
from ._config import RateLimit as RateLimit
from ._exceptions import APIError as APIError
from ._exceptions import AuthenticationError as AuthenticationError
from ._exceptions import BadRequestError as BadRequestError
from ._exceptions import ConflictError as ConflictError
from ._exceptions import FanfareClientClosedError as FanfareClientClosedError
from ._exceptions import FanfareConfigError as FanfareConfigError
from ._exceptions import FanfareDecodeError as FanfareDecodeError
from ._exceptions import FanfareError as FanfareError
from ._exceptions import FanfareTimeoutError as FanfareTimeoutError
from ._exceptions import InvalidGroupIdError as InvalidGroupIdError
from ._exceptions import NotFoundError as NotFoundError
from ._exceptions import PermissionDeniedError as PermissionDeniedError
from ._exceptions import RateLimitError as RateLimitError
from ._exceptions import ServerError as ServerError
from ._exceptions import TransportError as TransportError
from ._models import Audience as Audience
from ._models import AudienceImport as AudienceImport
from ._models import AudienceRule as AudienceRule
from ._models import AudienceType as AudienceType
from ._models import GroupType as GroupType
from ._models import ImportRowError as ImportRowError
from ._models import SyncSource as SyncSource
from ._models import SyncStatus as SyncStatus
from ._models import decode_group_audiences as decode_group_audiences
from ._ratelimit import RateLimitState as RateLimitState

__all__ = [
    "APIError",
    "Audience",
    "AudienceImport",
    "AudienceRule",
    "AudienceType",
    "AuthenticationError",
    "BadRequestError",
    "CacheStats",
    "ConflictError",
    "FanfareClient",
    "FanfareClientClosedError",
    "FanfareConfigError",
    "FanfareDecodeError",
    "FanfareError",
    "FanfareTimeoutError",
    "GroupType",
    "ImportRowError",
    "InvalidGroupIdError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "RateLimitState",
    "ServerError",
    "SyncSource",
    "SyncStatus",
    "TransportError",
    "__version__",
    "decode_group_audiences",
]
