"""Client configuration: defaults, environment variables and validation (no I/O)."""

from __future__ import annotations

import ipaddress
import math
import os
from dataclasses import dataclass

import aiohttp
from yarl import URL

from ._exceptions import FanfareConfigError

ENV_SECRET_KEY = "FANFARE_SECRET_KEY"  # noqa: S105 - a variable name, not a secret
ENV_BASE_URL = "FANFARE_BASE_URL"
#: Read by ``fanfare_async.redis.RedisTier`` (and the command's ``--redis``).
ENV_REDIS_URL = "FANFARE_REDIS_URL"

DEFAULT_BASE_URL = "https://admin.fanfare.io/api"
DEFAULT_TIMEOUT = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 3
DEFAULT_MAX_RETRY_WAIT = 60.0
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_RESPONSE_BYTES = 32 * 1024 * 1024
DEFAULT_CACHE_MAXSIZE = 10_000
DEFAULT_TTL = 60.0
DEFAULT_MIN_TTL = 1.0
DEFAULT_MAX_TTL = 3600.0
DEFAULT_NEGATIVE_TTL = 0.0
DEFAULT_STALE_IF_ERROR = 0.0
DEFAULT_REFRESH_AHEAD = 0.0
#: At most this many refresh-ahead loads run at once per client.
MAX_REFRESHES_AT_ONCE = 32

#: First backoff step and the largest backoff between two attempts, in seconds.
BACKOFF_BASE = 0.5
BACKOFF_MAX = 8.0


def _is_positive_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


@dataclass(frozen=True)
class RateLimit:
    """A client-side request budget: ``requests`` per ``period`` seconds.

    ``burst`` is how many requests may go out back to back (the bucket's
    size); ``None`` lets the bucket hold ``requests`` tokens.
    """

    requests: int
    period: float = 60.0
    burst: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int):
            raise TypeError("RateLimit.requests must be an int")
        if self.requests < 1:
            raise ValueError("RateLimit.requests must be at least 1")
        if not _is_positive_number(self.period):
            raise ValueError("RateLimit.period must be a positive number of seconds")
        if self.burst is not None and (
            isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1
        ):
            raise ValueError("RateLimit.burst must be a positive int or None")

    @property
    def capacity(self) -> int:
        """Tokens the bucket holds when full."""
        return self.requests if self.burst is None else self.burst

    @property
    def rate(self) -> float:
        """Tokens added per second."""
        return self.requests / self.period


#: Fanfare's documented limit for the Admin API: 1000 requests per minute per organization.
DEFAULT_RATE_LIMIT = RateLimit(1000, 60.0)


def _non_negative(name: str, value: object) -> float:
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value < 0
    ):
        raise FanfareConfigError(f"{name} must be a non-negative number, got {value!r}")
    return float(value)


def _positive_int(name: str, value: object, *, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise FanfareConfigError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def secret_hint(secret: str) -> str:
    """A recognisable but harmless form of a key: ``sk_live_…abcd``."""
    prefix_end = secret.find("_", secret.find("_") + 1)
    prefix = secret[: prefix_end + 1] if 0 < prefix_end < 12 else ""
    tail = secret[-4:] if len(secret) >= 16 else ""
    return f"{prefix}…{tail}"


def resolve_secret_key(secret_key: str | None) -> str:
    """The secret from the argument, else ``FANFARE_SECRET_KEY``; validated."""
    if secret_key is None:
        secret_key = os.environ.get(ENV_SECRET_KEY) or None
    if secret_key is None:
        raise FanfareConfigError(
            f"no secret key: pass secret_key=... or set the {ENV_SECRET_KEY} environment variable"
        )
    if not isinstance(secret_key, str):
        raise TypeError(f"secret_key must be a str, not {type(secret_key).__name__}")
    if not secret_key or secret_key != secret_key.strip() or not secret_key.isprintable():
        raise FanfareConfigError("secret key is empty or contains whitespace or control characters")
    if secret_key.startswith("pk_"):
        raise FanfareConfigError(
            "a publishable key (pk_…) cannot call the Admin API; use a secret key (sk_…)"
        )
    return secret_key


def _is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_base_url(base_url: str | None, *, allow_insecure_http: bool) -> URL:
    """The API root from the argument, else ``FANFARE_BASE_URL``, else the default.

    Plain ``http://`` is refused unless the host is loopback or
    ``allow_insecure_http`` is set, so the key never travels in clear text by
    accident.
    """
    raw = base_url if base_url is not None else os.environ.get(ENV_BASE_URL) or DEFAULT_BASE_URL
    if not isinstance(raw, str):
        raise TypeError(f"base_url must be a str, not {type(raw).__name__}")
    try:
        url = URL(raw.strip())
    except (ValueError, TypeError) as exc:
        raise FanfareConfigError(f"base_url is not a valid URL: {raw!r}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise FanfareConfigError(f"base_url must be an absolute http(s) URL, got {raw!r}")
    if url.user is not None or url.password is not None:
        raise FanfareConfigError("base_url must not contain credentials")
    if url.query_string or url.fragment:
        raise FanfareConfigError("base_url must not contain a query or fragment")
    if url.scheme == "http" and not allow_insecure_http and not _is_loopback(url.host):
        raise FanfareConfigError(
            f"refusing plain http:// to {url.host}: the secret key would travel in clear "
            "text (use https://, or pass allow_insecure_http=True)"
        )
    return url.with_path(url.path.rstrip("/"))


def resolve_timeout(timeout: float | aiohttp.ClientTimeout) -> aiohttp.ClientTimeout:
    """A float is the total per attempt, with connecting capped at 5 s."""
    if isinstance(timeout, aiohttp.ClientTimeout):
        return timeout
    if not _is_positive_number(timeout):
        raise FanfareConfigError(
            f"timeout must be a positive number of seconds or an aiohttp.ClientTimeout, "
            f"got {timeout!r}"
        )
    total = float(timeout)
    return aiohttp.ClientTimeout(total=total, connect=min(total, DEFAULT_CONNECT_TIMEOUT))


@dataclass(frozen=True)
class CacheConfig:
    """Validated cache options."""

    maxsize: int = DEFAULT_CACHE_MAXSIZE
    default_ttl: float = DEFAULT_TTL
    min_ttl: float = DEFAULT_MIN_TTL
    max_ttl: float = DEFAULT_MAX_TTL
    negative_ttl: float = DEFAULT_NEGATIVE_TTL
    stale_if_error: float = DEFAULT_STALE_IF_ERROR
    refresh_ahead: float = DEFAULT_REFRESH_AHEAD

    @classmethod
    def build(
        cls,
        *,
        maxsize: int,
        default_ttl: float,
        min_ttl: float,
        max_ttl: float,
        negative_ttl: float,
        stale_if_error: float,
        refresh_ahead: float = DEFAULT_REFRESH_AHEAD,
    ) -> CacheConfig:
        """Validate and build; raises FanfareConfigError on bad values (ValueError for a
        ``refresh_ahead`` outside ``[0, 1)``)."""
        if (
            not isinstance(refresh_ahead, (int, float))
            or isinstance(refresh_ahead, bool)
            or not 0.0 <= refresh_ahead < 1.0
        ):
            raise ValueError(
                f"refresh_ahead must be a fraction of the TTL in [0, 1), got {refresh_ahead!r}"
            )
        config = cls(
            maxsize=_positive_int("cache_maxsize", maxsize, minimum=0),
            default_ttl=_non_negative("default_ttl", default_ttl),
            min_ttl=_non_negative("min_ttl", min_ttl),
            max_ttl=_non_negative("max_ttl", max_ttl),
            negative_ttl=_non_negative("negative_ttl", negative_ttl),
            stale_if_error=_non_negative("stale_if_error", stale_if_error),
            refresh_ahead=float(refresh_ahead),
        )
        if config.min_ttl > config.max_ttl:
            raise FanfareConfigError(
                f"min_ttl ({config.min_ttl}) must not exceed max_ttl ({config.max_ttl})"
            )
        return config


@dataclass(frozen=True)
class TransportConfig:
    """Validated transport options."""

    base_url: URL
    timeout: aiohttp.ClientTimeout
    max_retries: int
    max_retry_wait: float
    max_connections: int
    max_response_bytes: int

    @classmethod
    def build(
        cls,
        *,
        base_url: URL,
        timeout: float | aiohttp.ClientTimeout,
        max_retries: int,
        max_retry_wait: float,
        max_connections: int,
        max_response_bytes: int,
    ) -> TransportConfig:
        """Validate and build; raises FanfareConfigError on bad values."""
        return cls(
            base_url=base_url,
            timeout=resolve_timeout(timeout),
            max_retries=_positive_int("max_retries", max_retries, minimum=0),
            max_retry_wait=_non_negative("max_retry_wait", max_retry_wait),
            max_connections=_positive_int("max_connections", max_connections),
            max_response_bytes=_positive_int("max_response_bytes", max_response_bytes),
        )
