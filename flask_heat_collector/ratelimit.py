"""Per project key + client IP limits on ``/ingest``, in Flask-Limiter notation.

Flask-Limiter's own engine (the ``limits`` package it is built on) does the
counting, so storage URIs (``memory://``, ``redis://``) and rate strings mean
exactly what they mean in Flask-Limiter. The check runs inside the view, after
the project key is known, and adds no hooks to the host app. A Redis that fails or
hangs is skipped for a while (:mod:`.breaker`) and requests go through unlimited.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import limits
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter

from .breaker import breaker_for, redis_options


@dataclass(frozen=True)
class RateStatus:
    allowed: bool
    limit: int
    remaining: int
    reset_time: float

    def headers(self) -> dict[str, str]:
        """``X-RateLimit-*`` headers, plus ``Retry-After`` when refused."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_time)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.reset_time - time.time())))
        return headers


class IngestRateLimiter:
    """A fixed-window limiter whose storage is created lazily in each process.

    ``namespace`` keeps the windows of limiters sharing one storage apart.
    """

    def __init__(self, rate: str, storage_uri: str, namespace: str = "heat-ingest") -> None:
        self.items = limits.parse_many(rate)
        self.storage_uri = storage_uri
        self.namespace = namespace
        self.breaker = breaker_for(storage_uri)
        self._strategy: FixedWindowRateLimiter | None = None
        self._made_after = 0
        self._lock = threading.Lock()

    @property
    def strategy(self) -> FixedWindowRateLimiter:
        with self._lock:
            # After a failure of the server, start again on fresh connections, not the pooled ones.
            if self._strategy is None or self._made_after != self.breaker.failures:
                self._made_after = self.breaker.failures
                options = redis_options(self.storage_uri)
                storage: Storage = storage_from_string(self.storage_uri, **options)  # type: ignore[assignment]
                self._strategy = FixedWindowRateLimiter(storage)
            return self._strategy

    def hit(self, key: str) -> RateStatus | None:
        """Count one request for ``key``; ``None`` when the storage is down (the request goes through)."""
        # A limiter outage must not lose events: fail open, logged once per breaker interval.
        return self.breaker.call(
            lambda: self._hit(key), skipped="rate limit storage unavailable, requests not limited", level="error"
        )

    def _hit(self, key: str) -> RateStatus | None:
        strategy = self.strategy
        status: RateStatus | None = None
        for item in self.items:
            allowed = strategy.hit(item, self.namespace, key)
            stats = strategy.get_window_stats(item, self.namespace, key)
            current = RateStatus(allowed, item.amount, stats.remaining, stats.reset_time)
            if status is None or not allowed or current.remaining < status.remaining:
                status = current
            if not allowed:
                break
        return status
