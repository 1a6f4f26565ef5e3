"""Project-key, JWKS/JWT and query-key checks."""

from __future__ import annotations

import hmac
import re
from dataclasses import dataclass
from typing import Any

import jwt
from flask import Request

from .config import Settings
from .errors import ApiError

MAX_PROJECT_KEY = 256
_KEY_CHARS = re.compile(r"^[\x21-\x7e]+$")
JWKS_TIMEOUT_SECONDS = 3.0


def project_key(request: Request) -> str:
    """The ``x-project-key`` header; 401 when missing, 403 when it cannot be a key."""
    values = request.headers.getlist("x-project-key")
    if not values or not values[0].strip():
        raise ApiError(401, "missing_project_key", "Request rejected because header x-project-key is required.")
    key = values[0].strip()
    if len(values) > 1 or len(key) > MAX_PROJECT_KEY or not _KEY_CHARS.match(key):
        raise ApiError(403, "unknown_project_key", "Header x-project-key is not a valid project key.")
    return key


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, if any."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class JwtVerifier:
    """Verifies ingest JWTs against a JWKS URL, caching keys and refetching once on an unknown ``kid``."""

    def __init__(self, settings: Settings) -> None:
        assert settings.jwks_url and settings.jwt_issuer and settings.jwt_audience
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.algorithms = list(settings.jwt_algorithms)
        self.client = jwt.PyJWKClient(
            settings.jwks_url,
            cache_keys=True,
            lifespan=300,
            timeout=JWKS_TIMEOUT_SECONDS,
            cooldown_duration=settings.jwks_refetch_cooldown_seconds,
        )

    def verify(self, token: str) -> dict[str, Any]:
        """The verified claims; ApiError 401 ``invalid_jwt`` or 503 ``jwks_unavailable``."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self.algorithms:
                raise jwt.InvalidAlgorithmError(f"alg {header.get('alg')!r} is not allowed")
            key = self.client.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": ["iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise ApiError(
                503,
                "jwks_unavailable",
                "The JWKS endpoint could not be reached; retry later.",
                headers={"Retry-After": "5"},
            ) from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise ApiError(401, "invalid_jwt", "JWT validation failed.") from exc
        sub = claims.get("sub")
        if sub is not None and (not isinstance(sub, str) or not 0 < len(sub) <= 128):
            raise ApiError(401, "invalid_jwt", "JWT 'sub' must be a string of 1 to 128 characters.")
        return claims


Scope = frozenset[str] | None  # the projects a query key may read; None: every project


def parse_query_keys(entries: tuple[str, ...]) -> tuple[tuple[bytes, Scope], ...]:
    """``HEAT_QUERY_API_KEYS`` entries as (key, projects): ``key@projectId`` scopes, a bare key reads all."""
    scopes: dict[str, set[str] | None] = {}
    for entry in entries:
        key, at, project = entry.rpartition("@") if "@" in entry else (entry, "", "")
        if at and scopes.get(key, set()) is not None:
            scopes.setdefault(key, set()).add(project)  # type: ignore[union-attr]
        elif not at:
            scopes[key] = None
    return tuple((key.encode(), None if projects is None else frozenset(projects)) for key, projects in scopes.items())


@dataclass(frozen=True)
class KeyWords:
    """The 401 messages of one kind of key: none configured, none given, not valid."""

    none_configured: str
    missing: str
    invalid: str


QUERY_KEY_WORDS = KeyWords(
    "No query API key is configured on this server (HEAT_QUERY_API_KEYS is empty), so no key is accepted.",
    "A query API key is required (Authorization: Bearer or x-api-key).",
    "The query API key is not valid.",
)


def match_key(request: Request, keys: tuple[tuple[bytes, Scope], ...], words: KeyWords) -> tuple[bytes, Scope]:
    """The key given as ``Authorization: Bearer`` or ``x-api-key`` and its scope; 401 without a valid one.

    Every configured key is compared in constant time, all of them on every request.
    """
    if not keys:
        raise ApiError(401, "invalid_api_key", words.none_configured)
    supplied = request.headers.get("x-api-key") or bearer_token(request)
    if not supplied:
        raise ApiError(401, "missing_api_key", words.missing)
    given = supplied.encode()
    found: list[Scope] = []
    for key, scope in keys:
        if hmac.compare_digest(given, key):
            found.append(scope)
    if not found:
        raise ApiError(401, "invalid_api_key", words.invalid)
    return given, found[0]


def check_query_key(request: Request, settings: Settings, keys: tuple[tuple[bytes, Scope], ...]) -> Scope:
    """The scope of the query key of ``request`` (every project when ``HEAT_QUERY_AUTH`` is ``none``)."""
    if settings.query_auth == "none":
        return None
    return match_key(request, keys, QUERY_KEY_WORDS)[1]


def require_project(scope: Scope, project_id: str) -> None:
    """403 ``forbidden_project`` when the key may not read ``project_id``."""
    if scope is not None and project_id not in scope:
        raise ApiError(403, "forbidden_project", "This query key may not read this project.")


def require_unscoped(scope: Scope) -> None:
    """403 ``forbidden_project`` for a key scoped to some projects (totals cover every project)."""
    if scope is not None:
        raise ApiError(403, "forbidden_project", "This endpoint covers every project: it needs a key with no @project.")
