"""The collector's Prometheus metrics (SPEC 9), added up over gunicorn workers in multiprocess mode.

With ``PROMETHEUS_MULTIPROC_DIR`` set (``gunicorn_conf`` sets it in the master), every process writes
its values to files in that directory and ``/metrics`` and ``/api/metrics`` read them all
(prometheus_client's multiprocess mode). Without it each app keeps its own registry.

prometheus_client picks its mode when first imported, so it is imported at ``init_app``, never when
this package is imported (gunicorn's master imports ``gunicorn_conf`` before setting the variable).
"""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections import Counter as Tally
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .ingest import is_unmasked_input
from .log import log
from .schemas import EVENT_TYPES

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
MIXED = "mixed"
"""The ``type`` of accepted and duplicate rows of a batch that was partly new, partly stored before."""

_PREFIX = "heat_collector_"
_DURATION = f"{_PREFIX}ingest_duration_seconds"
_LAST_DURATION = f"{_PREFIX}last_ingest_duration_seconds"
_BATCHES_REJECTED = f"{_PREFIX}batches_rejected"
_EVENTS_REJECTED = f"{_PREFIX}events_rejected"
_RATE_LIMIT_CODES = {"rate_limited": "ingest", "too_many_new_projects": "new_projects"}


@dataclass(frozen=True)
class EventCounts:
    """The rows of one valid batch by event type (a move counts one per point), and its drops."""

    rows: Tally[str]
    dropped: Tally[tuple[str, str]]  # (type, reason)

    @classmethod
    def of(cls, events: list[dict[str, Any]], *, drop: str | None = None) -> EventCounts:
        """The counts of ``events``; with ``drop``, every event is dropped for that reason."""
        rows: Tally[str] = Tally()
        dropped: Tally[tuple[str, str]] = Tally()
        for event in events:
            kind = event["type"]
            if drop is not None:
                dropped[(kind, drop)] += 1
            elif is_unmasked_input(event):
                dropped[(kind, "unmasked_input")] += 1
            else:
                rows[kind] += len(event["points"]) if kind == "move" else 1
        return cls(rows, dropped)


class _Families:
    """The metric objects, registered in ``registry`` (``None`` in multiprocess mode)."""

    def __init__(self, registry: CollectorRegistry | None) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(f"{_PREFIX}{name}", doc, labels, registry=registry)

        self.received = counter("events_received", "Rows of valid batches by event type.", ("type",))
        self.accepted = counter("events_accepted", "Rows stored by event type.", ("type",))
        self.by_traffic = counter(
            "events_accepted_by_traffic",
            "Rows stored by the traffic class (human or bot) of their session (docs/traffic.md).",
            ("traffic",),
        )
        self.duplicate = counter("events_duplicate", "Rows already stored (same eventId) by event type.", ("type",))
        self.dropped = counter(
            "events_dropped", "Events dropped before storing, by type and reason.", ("type", "reason")
        )
        self.events_rejected = counter("events_rejected", "Events of batches refused as invalid, by code.", ("code",))
        self.batches_rejected = counter(
            "batches_rejected", "Ingest requests answered with an error, by code and status.", ("code", "status")
        )
        self.storage_errors = counter("storage_errors", "Ingest requests that found the database unavailable.")
        self.rate_limited = counter("rate_limited", "Ingest requests refused by a rate limit.", ("limit",))
        self.duration = Histogram(_DURATION, "Time to validate and store a batch.", registry=registry)
        self.last_duration = Gauge(
            _LAST_DURATION, "Duration of the latest stored batch.", registry=registry, multiprocess_mode="mostrecent"
        )
        for kind in EVENT_TYPES:  # series exist from the start, so rate() sees the first event
            for family in (self.received, self.accepted, self.duplicate):
                family.labels(kind)
        self.dropped.labels("input", "unmasked_input")
        for traffic in ("human", "bot"):
            self.by_traffic.labels(traffic)
        for limit in _RATE_LIMIT_CODES.values():
            self.rate_limited.labels(limit)


_process_families: dict[str, _Families] = {}
_process_lock = threading.Lock()


def _shared_families() -> _Families:
    """One set per process in multiprocess mode: two objects of one metric would overwrite each other's file."""
    with _process_lock:
        if "families" not in _process_families:
            _process_families["families"] = _Families(None)
        return _process_families["families"]


def check_private_dir(path: str, *, mode: int = 0o022) -> None:
    """Refuse a metrics directory that someone else could have planted counters in.

    It must be a directory (not a symlink) owned by this process's user, with none of the ``mode``
    bits: by default writable by no one else; ``0o077`` asks for exactly ``0700``.
    """
    try:
        info = os.lstat(path)
    except OSError as exc:
        raise ConfigurationError(f"{MULTIPROC_ENV}={path!r} cannot be read ({exc.strerror})") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigurationError(f"{MULTIPROC_ENV}={path!r} is not a directory (a symlink is refused too)")
    if info.st_uid != os.geteuid():
        raise ConfigurationError(
            f"{MULTIPROC_ENV}={path!r} belongs to uid {info.st_uid}, not to this process's user "
            f"({os.geteuid()}): its files would be reported as this collector's metrics; use a directory of your own"
        )
    if info.st_mode & mode:
        wanted = "0700" if mode == 0o077 else "writable by its owner only"
        raise ConfigurationError(
            f"{MULTIPROC_ENV}={path!r} has mode {stat.S_IMODE(info.st_mode):04o}; it must be {wanted}"
        )


def multiprocess_dir() -> str | None:
    """``PROMETHEUS_MULTIPROC_DIR`` when set; ConfigurationError when prometheus_client cannot use it."""
    from prometheus_client import values

    path = os.environ.get(MULTIPROC_ENV, "")
    imported_multiprocess = bool(getattr(values.ValueClass, "_multiprocess", False))
    if not path:
        if imported_multiprocess:
            raise ConfigurationError(f"{MULTIPROC_ENV} was unset after prometheus_client started in multiprocess mode")
        return None
    if not os.path.isdir(path):
        raise ConfigurationError(f"{MULTIPROC_ENV}={path!r} is not a directory; create it (empty) before starting")
    check_private_dir(path)
    if not imported_multiprocess:
        raise ConfigurationError(
            f"{MULTIPROC_ENV} was set after prometheus_client was imported; set it before the server starts "
            "(flask_heat_collector.gunicorn_conf does)"
        )
    return path


class PrometheusMetrics:
    """The collector's metrics for one app, and the registry that ``/metrics`` exposes."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry

        directory = multiprocess_dir()
        self.multiprocess = directory is not None
        if directory is None:
            self.registry = CollectorRegistry(auto_describe=True)
            self._families = _Families(self.registry)
            if "gunicorn.arbiter" in sys.modules:
                log(
                    "warn",
                    f"{MULTIPROC_ENV} is not set: each gunicorn worker keeps its own metrics "
                    "(start gunicorn with -c python:flask_heat_collector.gunicorn_conf)",
                )
        else:
            from prometheus_client.multiprocess import MultiProcessCollector

            self.registry = CollectorRegistry()
            MultiProcessCollector(self.registry, path=directory)  # type: ignore[no-untyped-call]
            self._families = _shared_families()

    def received(self, counts: EventCounts) -> None:
        """A batch passed validation (and the ``before_insert`` hooks)."""
        families = self._families
        for kind, rows in counts.rows.items():
            families.received.labels(kind).inc(rows)
        for (kind, reason), events in counts.dropped.items():
            families.received.labels(kind).inc(events)
            families.dropped.labels(kind, reason).inc(events)

    def stored(
        self,
        counts: EventCounts,
        accepted: int,
        duplicates: int,
        seconds: float,
        *,
        erased_user: bool = False,
        traffic: str = "human",
    ) -> None:
        """A batch was stored; the database reports counts, so a batch partly new is ``type="mixed"``.
        A batch of an erased user stores nothing: its rows are dropped (reason ``erased_user``)."""
        families = self._families
        total = sum(counts.rows.values())
        if erased_user:
            for kind, rows in counts.rows.items():
                families.dropped.labels(kind, "erased_user").inc(rows)
        elif duplicates == 0 and accepted == total:
            for kind, rows in counts.rows.items():
                families.accepted.labels(kind).inc(rows)
        elif accepted == 0 and duplicates == total:
            for kind, rows in counts.rows.items():
                families.duplicate.labels(kind).inc(rows)
        else:
            families.accepted.labels(MIXED).inc(accepted)
            families.duplicate.labels(MIXED).inc(duplicates)
        if accepted and not erased_user:
            families.by_traffic.labels("bot" if traffic == "bot" else "human").inc(accepted)
        families.duration.observe(seconds)
        families.last_duration.set(seconds)

    def events_rejected(self, code: str, events: int) -> None:
        """The events of a batch refused as invalid (``invalid_payload``, ``invalid_hook_payload``)."""
        self._families.events_rejected.labels(code).inc(events)

    def batch_rejected(self, code: str, status: int) -> None:
        """An ingest request answered with an error."""
        families = self._families
        families.batches_rejected.labels(code, str(status)).inc()
        if code == "storage_unavailable":
            families.storage_errors.inc()
        if code in _RATE_LIMIT_CODES:
            families.rate_limited.labels(_RATE_LIMIT_CODES[code]).inc()

    def exposition(self, accept: str) -> tuple[bytes, str]:
        """The metrics in the format ``accept`` asks for (Prometheus text by default) and its content type."""
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    def totals(self) -> dict[str, Any]:
        """The ``/api/metrics`` counters, read back from the registry (every worker's in multiprocess mode)."""
        count = errors = rejected = 0.0
        last: float | None = None
        for family in self.registry.collect():
            for sample in family.samples:
                if sample.name == f"{_DURATION}_count":
                    count += sample.value
                elif sample.name == f"{_BATCHES_REJECTED}_total" and int(sample.labels["status"]) >= 500:
                    errors += sample.value
                elif sample.name == f"{_EVENTS_REJECTED}_total":
                    rejected += sample.value
                elif sample.name == _LAST_DURATION:
                    last = sample.value
        return {
            "ingestCount": int(count),
            "ingestErrorCount": int(errors),
            "rejectedEventCount": int(rejected),
            "lastIngestMs": round(last * 1000) if count and last is not None else None,
        }
