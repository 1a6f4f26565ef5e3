"""Configuration keys, defaults and validation.

Every key is defined once in :data:`KEYS`. Constructor overrides (lower-case
names) beat ``app.config``, which beats the defaults. Values may be given as
their Python type or as the strings an environment variable carries
(comma-separated lists, ``true``/``false``/``1``/``0`` booleans, digits).
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import limits
from flask import Flask

from .errors import ConfigurationError
from .log import log
from .page_groups import InvalidTemplate, parse
from .privacy import DNT_MODES
from .signals import DEFAULT_IGNORE

AUTH_MODES = ("projectKey", "jwt", "both")
QUERY_AUTH_MODES = ("apiKey", "none")
LOG_LEVELS = ("debug", "info", "warn", "error")


def _as_str(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{key} must be a string, got {type(value).__name__}")
    return value


def _as_opt_str(key: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    return _as_str(key, value)


def _as_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes", "on"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", "off"):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ConfigurationError(f"{key} must be a boolean (true/false/1/0), got {value!r}")


def _integer(minimum: int, words: str) -> Callable[[str, Any], int]:
    """A converter of plain digits or an int, at least ``minimum`` (``words`` names the range)."""

    def convert(key: str, value: Any) -> int:
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ConfigurationError(f"{key} must be a {words} integer, got {value!r}")
        return value

    return convert


_as_positive_int = _integer(1, "positive")


def _off_or_at_least(minimum: int) -> Callable[[str, Any], int]:
    """An integer of at least ``minimum``, or 0 (the rule it counts for is off)."""
    at_least = _integer(0, f"0 (off) or ≥ {minimum}")

    def convert(key: str, value: Any) -> int:
        found = at_least(key, value)
        if 0 < found < minimum:
            raise ConfigurationError(f"{key} must be a 0 (off) or ≥ {minimum} integer, got {value!r}")
        return found

    return convert


_as_non_negative_int = _integer(0, "non-negative")


def _as_str_tuple(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return tuple(part.strip() for part in value.split(",") if part.strip())
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) and v for v in value):
        return tuple(value)
    raise ConfigurationError(f"{key} must be a list of non-empty strings, got {value!r}")


def _choice(options: tuple[str, ...]) -> Callable[[str, Any], str]:
    def convert(key: str, value: Any) -> str:
        if value not in options:
            raise ConfigurationError(f"{key} must be one of {', '.join(options)}; got {value!r}")
        return str(value)

    return convert


def _rate_limit(key: str, value: Any) -> str:
    text = _as_str(key, value)
    try:
        limits.parse_many(text)
    except ValueError as exc:
        raise ConfigurationError(f"{key} is not a Flask-Limiter rate limit string: {text!r}") from exc
    return text


def _storage_uri(key: str, value: Any) -> str:
    text = _as_str(key, value)
    if not text.startswith(("memory://", "redis://", "rediss://", "redis+unix://")):
        raise ConfigurationError(f"{key} must be memory:// or a redis:// URI, got {text!r}")
    return text


def _url_prefix(key: str, value: Any) -> str:
    text = _as_str(key, value).rstrip("/")
    if text and not text.startswith("/"):
        raise ConfigurationError(f"{key} must start with '/', got {value!r}")
    return text


# A host name (labels of letters, digits, hyphens), an IPv4 address or a bracketed IPv6 literal.
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_ORIGIN = re.compile(r"(?P<scheme>https?)://(?P<host>\[[0-9A-Fa-f:.]+\]|[^\[\]/:]+)(?::(?P<port>[0-9]{1,5}))?/?")


def _site_url(key: str, value: Any) -> str | None:
    """An ``http(s)://host[:port]`` origin, without its trailing slash: it goes into the viewer's CSP."""
    text = _as_str(key, value).strip()
    if not text:
        return None
    match = _ORIGIN.fullmatch(text)
    host = match["host"] if match else ""
    if host.startswith("["):
        try:
            host_ok = ipaddress.ip_address(host[1:-1]).version == 6
        except ValueError:
            host_ok = False
    else:
        host_ok = _HOST.fullmatch(host) is not None
    if match is None or not host_ok or not 0 < int(match["port"] or 80) < 65536:
        raise ConfigurationError(
            f"{key} must be an origin, http(s)://host[:port] such as https://shop.example.com "
            f"(no path, user, query, fragment, space, ';' or '*'); got {value!r}"
        )
    return text.rstrip("/")


def _algorithms(key: str, value: Any) -> tuple[str, ...]:
    algs = _as_str_tuple(key, value)
    bad = [a for a in algs if a.lower() == "none" or a.upper().startswith("HS")]
    if not algs or bad:
        raise ConfigurationError(f"{key} must list asymmetric algorithms only (no 'none' or HMAC); got {value!r}")
    return algs


def _query_keys(key: str, value: Any) -> tuple[str, ...]:
    entries = _as_str_tuple(key, value)
    for entry in entries:
        head, at, project = entry.rpartition("@")
        if at and (not head or not project):
            raise ConfigurationError(f"{key} entries are 'key' or 'key@projectId'; one has an empty part")
    return entries


def _query_origins(key: str, value: Any) -> tuple[str, ...]:
    origins = _as_str_tuple(key, value)
    bad = [o for o in origins if o == "*" or not o.startswith(("http://", "https://")) or o.endswith("/")]
    if bad:
        raise ConfigurationError(
            f"{key} lists exact origins such as https://dash.example.com (no '*', no path); got {bad[0]!r}"
        )
    return origins


def _page_groups(key: str, value: Any) -> tuple[str, ...]:
    """Route templates (page_groups.py), in order; a repeated one is an error (it would list twice)."""
    templates = _as_str_tuple(key, value)
    for template in templates:
        try:
            parse(template)
        except InvalidTemplate as exc:
            raise ConfigurationError(f"{key}: {exc}") from exc
    repeated = sorted({t for t in templates if templates.count(t) > 1})
    if repeated:
        raise ConfigurationError(f"{key} lists {repeated[0]!r} twice")
    return templates


@dataclass(frozen=True)
class Key:
    """One configuration key: its app-config name, default and converter."""

    name: str
    default: Any
    convert: Callable[[str, Any], Any]

    @property
    def field(self) -> str:
        """The lower-case override name, e.g. ``database_uri``."""
        return self.name.removeprefix("HEAT_").lower()


KEYS: tuple[Key, ...] = (
    Key("HEAT_DATABASE_URI", None, _as_opt_str),
    Key("HEAT_MONGO_DATABASE", None, _as_opt_str),
    Key("HEAT_AUTH_MODE", "projectKey", _choice(AUTH_MODES)),
    Key("HEAT_JWKS_URL", None, _as_opt_str),
    Key("HEAT_JWT_ISSUER", None, _as_opt_str),
    Key("HEAT_JWT_AUDIENCE", None, _as_opt_str),
    Key("HEAT_JWT_ALGORITHMS", ("RS256",), _algorithms),
    Key("HEAT_JWKS_REFETCH_COOLDOWN_SECONDS", 1, _as_non_negative_int),
    Key("HEAT_AUTO_MIGRATE", True, _as_bool),
    Key("HEAT_MAX_BODY_BYTES", 1_000_000, _as_positive_int),
    Key("HEAT_RATE_LIMIT", "120 per 10 seconds", _rate_limit),
    Key("HEAT_RATE_LIMIT_STORAGE_URI", "memory://", _storage_uri),
    Key("HEAT_QUERY_API_KEYS", (), _query_keys),
    Key("HEAT_QUERY_AUTH", "apiKey", _choice(QUERY_AUTH_MODES)),
    Key("HEAT_ALLOWED_ORIGINS", ("*",), _as_str_tuple),
    Key("HEAT_IP_HASH_SECRET", None, _as_opt_str),
    Key("HEAT_LOG_LEVEL", "info", _choice(LOG_LEVELS)),
    Key("HEAT_URL_PREFIX", "", _url_prefix),
    Key("HEAT_MAX_EVENTS_PER_BATCH", 1000, _as_positive_int),
    Key("HEAT_REGISTERED_PROJECTS_ONLY", False, _as_bool),
    Key("HEAT_VIEWER_ENABLED", False, _as_bool),
    Key("HEAT_VIEWER_SITE_URL", None, _site_url),
    Key("HEAT_AGGREGATE_COMPACT_SECONDS", 10, _as_non_negative_int),
    Key("HEAT_AGGREGATE_COMPACT_BATCHES", 32, _as_non_negative_int),
    Key("HEAT_NEW_PROJECTS_PER_IP", "10 per hour", _rate_limit),
    Key("HEAT_TRUSTED_PROXIES", 0, _as_non_negative_int),
    Key("HEAT_QUERY_ALLOWED_ORIGINS", (), _query_origins),
    Key("HEAT_ADMIN_API_KEYS", (), _query_keys),
    Key("HEAT_PROMETHEUS_ENABLED", True, _as_bool),
    Key("HEAT_PROMETHEUS_PUBLIC", False, _as_bool),
    Key("HEAT_RETENTION_DAYS", None, _as_positive_int),
    Key("HEAT_AGGREGATE_RETENTION_DAYS", None, _as_positive_int),
    Key("HEAT_ERASED_USER_TTL_DAYS", 30, _as_positive_int),
    Key("HEAT_HONOR_DNT", "anonymous", _choice(DNT_MODES)),
    Key("HEAT_PATH_QUERY_ALLOWLIST", (), _as_str_tuple),
    Key("HEAT_HASH_ROUTES", False, _as_bool),
    Key("HEAT_RAGE_CLICKS", 3, _integer(2, "≥ 2")),
    Key("HEAT_RAGE_WINDOW_MS", 1000, _as_positive_int),
    Key("HEAT_RAGE_RADIUS_PX", 30, _as_non_negative_int),
    Key("HEAT_DEAD_CLICK_MS", 1500, _as_positive_int),
    Key("HEAT_SIGNAL_IGNORE_SELECTORS", DEFAULT_IGNORE, _as_str_tuple),
    Key("HEAT_ERROR_EVENT_NAMES", ("error",), _as_str_tuple),
    Key("HEAT_SIGNAL_SETTLE_IDLE_MS", 5000, _as_non_negative_int),
    Key("HEAT_QUICK_BACK_MS", 7000, _as_positive_int),
    Key("HEAT_SCROLL_REVERSALS", 6, _as_positive_int),
    Key("HEAT_MIN_SAMPLE_SESSIONS", 30, _as_non_negative_int),
    Key("HEAT_PAGE_GROUPS", (), _page_groups),
    Key("HEAT_BOT_REGULAR_CLICKS", 8, _off_or_at_least(3)),
    Key("HEAT_BOT_REGULAR_JITTER_MS", 10, _as_non_negative_int),
    Key("HEAT_BOT_FAST_CLICKS", 20, _off_or_at_least(2)),
    Key("HEAT_BOT_FAST_WINDOW_MS", 1000, _as_positive_int),
)
KEYS_BY_FIELD = {key.field: key for key in KEYS}


@dataclass(frozen=True)
class Settings:
    """The validated configuration of one app."""

    database_uri: str
    mongo_database: str | None
    auth_mode: str
    jwks_url: str | None
    jwt_issuer: str | None
    jwt_audience: str | None
    jwt_algorithms: tuple[str, ...]
    jwks_refetch_cooldown_seconds: int
    auto_migrate: bool
    max_body_bytes: int
    rate_limit: str
    rate_limit_storage_uri: str
    query_api_keys: tuple[str, ...]
    query_auth: str
    allowed_origins: tuple[str, ...]
    ip_hash_secret: str
    ip_hash_secret_generated: bool
    log_level: str
    url_prefix: str
    max_events_per_batch: int
    registered_projects_only: bool
    viewer_enabled: bool
    viewer_site_url: str | None
    aggregate_compact_seconds: int
    aggregate_compact_batches: int
    new_projects_per_ip: str
    trusted_proxies: int
    query_allowed_origins: tuple[str, ...]
    admin_api_keys: tuple[str, ...]
    prometheus_enabled: bool
    prometheus_public: bool
    retention_days: int | None
    aggregate_retention_days: int | None
    erased_user_ttl_days: int
    honor_dnt: str
    path_query_allowlist: tuple[str, ...]
    hash_routes: bool
    rage_clicks: int
    rage_window_ms: int
    rage_radius_px: int
    dead_click_ms: int
    signal_ignore_selectors: tuple[str, ...]
    error_event_names: tuple[str, ...]
    signal_settle_idle_ms: int
    quick_back_ms: int
    scroll_reversals: int
    min_sample_sessions: int
    page_groups: tuple[str, ...]
    bot_regular_clicks: int
    bot_regular_jitter_ms: int
    bot_fast_clicks: int
    bot_fast_window_ms: int


def default_database_uri(instance_path: str) -> str:
    """The embedded SQLite file in the app's instance folder."""
    os.makedirs(instance_path, exist_ok=True)
    return f"sqlite:///{os.path.join(instance_path, 'heat-collector.db')}"


def load_config(app: Flask, overrides: Mapping[str, Any]) -> Settings:
    """Merge overrides, app config and defaults; raise ConfigurationError naming the bad key."""
    unknown = sorted(set(overrides) - set(KEYS_BY_FIELD))
    if unknown:
        raise ConfigurationError(f"Unknown HeatCollector option(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    for key in KEYS:
        if key.field in overrides:
            raw = overrides[key.field]
        else:
            raw = app.config.get(key.name, key.default)
        values[key.field] = key.default if raw is None else key.convert(key.name, raw)

    if not values["database_uri"]:
        values["database_uri"] = default_database_uri(app.instance_path)
    if values["auth_mode"] in ("jwt", "both"):
        for field in ("jwks_url", "jwt_issuer", "jwt_audience"):
            if not values[field]:
                name = KEYS_BY_FIELD[field].name
                raise ConfigurationError(f"{name} is required when HEAT_AUTH_MODE is {values['auth_mode']!r}")

    def bare(entries: tuple[str, ...]) -> set[str]:
        return {entry.rpartition("@")[0] if "@" in entry else entry for entry in entries}

    if bare(values["admin_api_keys"]) & bare(values["query_api_keys"]):
        raise ConfigurationError("HEAT_ADMIN_API_KEYS and HEAT_QUERY_API_KEYS share a key; admin keys must differ")
    raw_days, aggregate_days = values["retention_days"], values["aggregate_retention_days"]
    if raw_days is not None and aggregate_days is not None and aggregate_days < raw_days:
        raise ConfigurationError(
            f"HEAT_AGGREGATE_RETENTION_DAYS ({aggregate_days}) must be at least HEAT_RETENTION_DAYS ({raw_days})"
        )
    generated = values["ip_hash_secret"] is None
    if generated:
        values["ip_hash_secret"] = secrets.token_hex(32)
    return Settings(ip_hash_secret_generated=generated, **values)


def settings_from_environ(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``HEAT_*`` variables of an environment, as raw app-config values."""
    return {key.name: environ[key.name] for key in KEYS if environ.get(key.name, "") != ""}


# ``HEAT_TEST_*`` names are reserved for the test suite (HEAT_TEST_POSTGRES, ...); HEAT_DIALECT
# belongs to heat-collector-migrate. Neither is an app setting, nor a typo of one.
RESERVED_PREFIX = "HEAT_TEST_"
_NOT_SETTINGS = frozenset({"HEAT_DIALECT"})


def unknown_names(names: Iterable[object]) -> dict[str, str | None]:
    """Each ``HEAT_*`` name that is no configuration key, with the closest key (None if none is close)."""
    valid = [key.name for key in KEYS]
    unknown: dict[str, str | None] = {}
    for name in sorted(n for n in names if isinstance(n, str) and n.startswith("HEAT_")):
        if name in valid or name in _NOT_SETTINGS or name.startswith(RESERVED_PREFIX):
            continue
        close = difflib.get_close_matches(name, valid, n=1)
        unknown[name] = close[0] if close else None
    return unknown


def warn_unknown_names(names: Iterable[object], where: str) -> None:
    """Log one warning per unknown ``HEAT_*`` name in ``where``: a misspelt key is otherwise ignored."""
    for name, close in unknown_names(names).items():
        hint = f"; did you mean {close}?" if close else ""
        log("warn", f"unknown setting {name} in {where} is ignored{hint}", setting=name, suggestion=close)
