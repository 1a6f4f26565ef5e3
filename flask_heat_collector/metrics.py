"""Ingest counters, per process or shared through Redis across gunicorn workers.

Redis calls go through the shared :mod:`.breaker`: a Redis that fails or hangs is skipped for a
while and each worker keeps counting on its own meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from .breaker import REDIS_TIMEOUT_SECONDS, breaker_for

T = TypeVar("T")
COUNTERS = ("ingestCount", "ingestErrorCount", "rejectedEventCount")
_SKIPPED_WRITE = "metrics storage unavailable, counting in this worker only"
_SKIPPED_READ = "metrics storage unavailable, reporting this worker only"


class Metrics:
    """In-process counters (one gunicorn worker sees only its own)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {name: 0 for name in COUNTERS} | {"lastIngestMs": None}

    def incr(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def set_last_ingest_ms(self, ms: int) -> None:
        with self._lock:
            self._values["lastIngestMs"] = ms

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._values)


class RedisMetrics(Metrics):
    """Counters in one Redis hash, so every worker reports the same totals."""

    def __init__(self, uri: str, namespace: str) -> None:
        super().__init__()
        self.uri = uri
        self.key = f"heat_collector:metrics:{namespace}"
        self.breaker = breaker_for(uri)
        self._client: Any = None
        self._made_after = 0

    @property
    def client(self) -> Any:
        # After a failure of the server, start again on fresh connections, not the pooled ones.
        if self._client is None or self._made_after != self.breaker.failures:
            import redis

            if self._client is not None:
                self._client.close()
            self._made_after = self.breaker.failures
            timeout = REDIS_TIMEOUT_SECONDS
            self._client = redis.Redis.from_url(self.uri, socket_timeout=timeout, socket_connect_timeout=timeout)
        return self._client

    def _call(self, command: Callable[[Any], T], skipped: str) -> T | None:
        """``command(client)`` through the breaker; ``None`` when Redis is skipped or fails."""
        return self.breaker.call(lambda: command(self.client), skipped=skipped)

    def incr(self, name: str, amount: int = 1) -> None:
        super().incr(name, amount)
        self._call(lambda client: client.hincrby(self.key, name, amount), _SKIPPED_WRITE)

    def set_last_ingest_ms(self, ms: int) -> None:
        super().set_last_ingest_ms(ms)
        self._call(lambda client: client.hset(self.key, "lastIngestMs", ms), _SKIPPED_WRITE)

    def snapshot(self) -> dict[str, Any]:
        raw = self._call(lambda client: client.hgetall(self.key), _SKIPPED_READ)
        if raw is None:
            return super().snapshot()
        values = {k.decode(): int(v) for k, v in raw.items()}
        result: dict[str, Any] = {name: values.get(name, 0) for name in COUNTERS}
        result["lastIngestMs"] = values.get("lastIngestMs")
        return result
