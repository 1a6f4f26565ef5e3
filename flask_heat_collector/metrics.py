"""Ingest counters, per process or shared through Redis across gunicorn workers."""

from __future__ import annotations

import threading
from typing import Any

from .log import log

COUNTERS = ("ingestCount", "ingestErrorCount", "rejectedEventCount")


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
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.uri, socket_timeout=1, socket_connect_timeout=1)
        return self._client

    def incr(self, name: str, amount: int = 1) -> None:
        super().incr(name, amount)
        try:
            self.client.hincrby(self.key, name, amount)
        except Exception as exc:  # noqa: BLE001 - metrics must never fail a request
            log("warn", "metrics storage unavailable", error=type(exc).__name__)

    def set_last_ingest_ms(self, ms: int) -> None:
        super().set_last_ingest_ms(ms)
        try:
            self.client.hset(self.key, "lastIngestMs", ms)
        except Exception as exc:  # noqa: BLE001
            log("warn", "metrics storage unavailable", error=type(exc).__name__)

    def snapshot(self) -> dict[str, Any]:
        try:
            raw = self.client.hgetall(self.key)
        except Exception as exc:  # noqa: BLE001
            log("warn", "metrics storage unavailable, reporting this worker only", error=type(exc).__name__)
            return super().snapshot()
        values = {k.decode(): int(v) for k, v in raw.items()}
        result: dict[str, Any] = {name: values.get(name, 0) for name in COUNTERS}
        result["lastIngestMs"] = values.get("lastIngestMs")
        return result
