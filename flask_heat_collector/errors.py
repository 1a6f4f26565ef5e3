"""Exceptions raised by the extension and the JSON errors the blueprints send."""

from __future__ import annotations

from typing import Any


class HeatCollectorError(Exception):
    """Base class of every exception this package raises."""


class ConfigurationError(HeatCollectorError, ValueError):
    """A configuration value is missing or invalid; the message names the key."""


class StorageUnavailable(HeatCollectorError):
    """The database cannot be reached; the client should retry later."""


class UnknownProject(HeatCollectorError):
    """The project key is not registered (yet)."""


class RetiredProjectKey(HeatCollectorError):
    """The project key was replaced by ``rotate-key``; it never names a project again."""


class ApiError(HeatCollectorError):
    """An error answered to the client as ``{error, code, message, requestId, details?}``."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    @property
    def error(self) -> str:
        """Short human label derived from the code, e.g. ``invalid payload``."""
        return self.code.replace("_", " ")
