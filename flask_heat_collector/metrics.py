"""Ingest counters: Prometheus metrics of this host, and optionally a Redis hash shared by every host.

The ``/api/metrics`` totals are read back from the Prometheus metrics (:mod:`.prometheus`): in
multiprocess mode every gunicorn worker of the host answers the same. With Redis they come from one
hash that every host adds to. Redis calls go through the shared :mod:`.breaker`: a Redis that fails
or hangs is skipped for a while and the host's own totals are reported meanwhile.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .breaker import REDIS_TIMEOUT_SECONDS, breaker_for
from .prometheus import EventCounts, PrometheusMetrics
from .repositories.base import IngestResult

T = TypeVar("T")
COUNTERS = ("ingestCount", "ingestErrorCount", "rejectedEventCount")
_SKIPPED_WRITE = "metrics storage unavailable, counting in this worker only"
_SKIPPED_READ = "metrics storage unavailable, reporting this worker only"


class Metrics:
    """The ingest counters of one app, kept as Prometheus metrics; ``snapshot()`` reads their totals."""

    def __init__(self, prometheus: PrometheusMetrics | None = None) -> None:
        self.prometheus = PrometheusMetrics() if prometheus is None else prometheus

    def batch_received(self, counts: EventCounts) -> None:
        self.prometheus.received(counts)

    def batch_stored(self, counts: EventCounts, result: IngestResult, seconds: float) -> None:
        self.prometheus.stored(
            counts,
            result.accepted,
            result.duplicates,
            seconds,
            erased_user=result.erased_user,
            traffic=result.traffic,
        )
        self._add("ingestCount", 1)
        self._set_last_ingest_ms(round(seconds * 1000))

    def events_rejected(self, code: str, events: int) -> None:
        self.prometheus.events_rejected(code, events)
        self._add("rejectedEventCount", events)

    def batch_rejected(self, code: str, status: int) -> None:
        self.prometheus.batch_rejected(code, status)
        if status >= 500:
            self._add("ingestErrorCount", 1)

    def snapshot(self) -> dict[str, Any]:
        """``{ingestCount, ingestErrorCount, rejectedEventCount, lastIngestMs}``."""
        return self.prometheus.totals()

    def _add(self, name: str, amount: int) -> None:
        """Also add to counter ``name`` where other hosts see it (nothing here; Redis in the subclass)."""

    def _set_last_ingest_ms(self, ms: int) -> None:
        """Also record the latest ingest duration where other hosts see it."""


class RedisMetrics(Metrics):
    """Counters also kept in one Redis hash, so every host reports the same totals."""

    def __init__(self, uri: str, namespace: str, prometheus: PrometheusMetrics | None = None) -> None:
        super().__init__(prometheus)
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

    def _add(self, name: str, amount: int) -> None:
        self._call(lambda client: client.hincrby(self.key, name, amount), _SKIPPED_WRITE)

    def _set_last_ingest_ms(self, ms: int) -> None:
        self._call(lambda client: client.hset(self.key, "lastIngestMs", ms), _SKIPPED_WRITE)

    def snapshot(self) -> dict[str, Any]:
        raw = self._call(lambda client: client.hgetall(self.key), _SKIPPED_READ)
        if raw is None:
            return super().snapshot()
        values = {k.decode(): int(v) for k, v in raw.items()}
        result: dict[str, Any] = {name: values.get(name, 0) for name in COUNTERS}
        result["lastIngestMs"] = values.get("lastIngestMs")
        return result
