"""Short timeouts and a circuit breaker for Redis, shared by the rate limiter and the metrics.

A Redis that stops answering would otherwise cost every request a full socket timeout. After a
failure the server is skipped for :data:`OPEN_SECONDS`; then one call tries it again (half-open)
and, if it answers, it is used again. Each kind of skipped work is logged once per interval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from .log import log

T = TypeVar("T")

OPEN_SECONDS = 5.0
"""How long a failed server is skipped before one trial call."""

REDIS_TIMEOUT_SECONDS = 0.15
"""Connect and read timeout of each Redis call; ``?socket_timeout=…`` in the URI wins."""


def redis_options(uri: str) -> dict[str, float]:
    """Client options (short timeouts) for a Redis URI; none for ``memory://``."""
    if not urlsplit(uri).scheme.startswith(("redis", "valkey")):
        return {}
    return {"socket_timeout": REDIS_TIMEOUT_SECONDS, "socket_connect_timeout": REDIS_TIMEOUT_SECONDS}


def server_name(uri: str) -> str:
    """``scheme://host:port`` (or the socket path) of a storage URI, without credentials or database."""
    parts = urlsplit(uri)
    if parts.hostname:
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}"
    return f"{parts.scheme}://{parts.path}"


class CircuitBreaker:
    """Skips a failing dependency for ``open_seconds``, then lets one call try it again."""

    def __init__(self, name: str, open_seconds: float = OPEN_SECONDS) -> None:
        self.name = name
        self.open_seconds = open_seconds
        self._lock = threading.Lock()
        self._open_until: float | None = None  # None while closed
        self._down_since = 0.0
        self._error = ""
        # Failed calls so far: a client made before the latest failure drops its pooled connections.
        self.failures = 0
        self._logged_at: dict[str, float] = {}
        self._unlogged: dict[str, int] = {}

    def call(self, fn: Callable[[], T], *, skipped: str, level: str = "warn") -> T | None:
        """``fn()``, or ``None`` when the dependency is skipped or ``fn`` fails.

        ``skipped`` names the work done without the dependency; it is logged at ``level`` at most
        once per interval, with how many calls went without it since the previous line.
        """
        if not self._admit():
            self._report(skipped, level)
            return None
        try:
            result = fn()
        except Exception as exc:  # noqa: BLE001 - the caller carries on without the dependency
            self._failed(type(exc).__name__)
            self._report(skipped, level)
            return None
        self._succeeded()
        return result

    def _admit(self) -> bool:
        """True when closed; once per interval when open (the trial call pushes the deadline on)."""
        now = time.monotonic()
        with self._lock:
            if self._open_until is None:
                return True
            if now < self._open_until:
                return False
            self._open_until = now + self.open_seconds
            return True

    def _failed(self, error: str) -> None:
        now = time.monotonic()
        with self._lock:
            if self._open_until is None:
                self._down_since = now
            self._open_until = now + self.open_seconds
            self._error = error
            self.failures += 1

    def _succeeded(self) -> None:
        if self._open_until is None:
            return
        with self._lock:
            if self._open_until is None:
                return
            self._open_until = None
            self._logged_at.clear()  # the next outage is reported at once, its counts from zero
            self._unlogged.clear()
            down = time.monotonic() - self._down_since
        log("info", "dependency available again", dependency=self.name, downSeconds=round(down, 1))

    def _report(self, skipped: str, level: str) -> None:
        now = time.monotonic()
        with self._lock:
            count = self._unlogged.get(skipped, 0) + 1
            last = self._logged_at.get(skipped)
            if last is not None and now - last < self.open_seconds:
                self._unlogged[skipped] = count
                return
            self._logged_at[skipped] = now
            self._unlogged[skipped] = 0
            error = self._error
        log(level, skipped, dependency=self.name, error=error, calls=count, retryInSeconds=self.open_seconds)


_breakers: dict[str, CircuitBreaker] = {}
_breakers_lock = threading.Lock()


def breaker_for(uri: str) -> CircuitBreaker:
    """The process-wide breaker of the server at ``uri``: every limiter and counter using it shares one."""
    name = server_name(uri)
    with _breakers_lock:
        if name not in _breakers:
            _breakers[name] = CircuitBreaker(name)
        return _breakers[name]
