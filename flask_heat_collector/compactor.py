"""The per-process compactor: merges the pieces ingest writes (heatmap aggregates and report pieces)
after an ingest answer has been sent, by time and by count."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Generic, TypeVar

from .aggregates import ROLL_PASSES, day_of
from .log import log
from .report_pieces import ALL_WIDTHS
from .repositories.base import AggregateKeyDay, EventRow, ReportKeyDay
from .signals import SIGNAL_TYPES

if TYPE_CHECKING:
    from .repositories.base import Repository

# Sessions whose rage clicks a run settles: the run holds up the worker's next request, so it stays
# short (tens of ms); a report settles the rest of its project first.
SETTLE_PER_RUN = 20
# A worker that stored this many batches with signal rows owes as many settled sessions (each such
# batch marks at most one) and pays SETTLE_STEP of them after each answer: settling keeps up with
# ingest, so the first report after a burst does not settle the whole burst (53 s after 400,000
# events on MariaDB), and no answer waits behind a long settle. Settling less often settles a live
# session fewer times (every 100 batches cost PostgreSQL ingest 30 %, every 500 batches 4 %); a step
# of 20, not 50, halved the ingest p99 under wrk at the same events/s.
SETTLE_EVERY = 500
SETTLE_STEP = 20
_FORGET_AFTER = 100_000  # keys counted; past it, keys written once and never again are forgotten
K = TypeVar("K", AggregateKeyDay, ReportKeyDay)


class _Counts(Generic[K]):
    """Pieces written per key since the key was last due; a key is due every ``every`` pieces."""

    def __init__(self, every: int) -> None:
        self.every = every
        self.written: dict[K, int] = {}
        self.due: set[K] = set()

    def add(self, keys: Iterable[K]) -> None:
        if len(self.written) > _FORGET_AFTER:
            self.written.clear()
        for key in keys:
            count = self.written.get(key, 0) + 1
            if count >= self.every:
                self.due.add(key)
                count = 0
            self.written[key] = count

    def take(self) -> list[K]:
        due, self.due = sorted(self.due), set()
        return due


class Compactor:
    """Merges pieces after an ingest answer has been sent (per process): every ``interval_seconds``
    all keys with fresh pieces (rolling finished months too), and at once the keys this process wrote
    ``batches`` pieces to since they were last merged (heatmap aggregate key-days and report key-days
    alike), so a read right after a burst of ingest finds few pieces per key-day.

    Pieces are exact as they are; merging only keeps the number a read takes small. The timed pass
    also settles pending rage clicks, so a report seldom has many to settle first.
    """

    def __init__(self, interval_seconds: int, max_keys: int = 2000, batches: int = 0, settle_idle_ms: int = 0) -> None:
        self.interval = interval_seconds
        self.max_keys = max_keys
        self.batches = batches
        self.settle_idle_ms = settle_idle_ms  # a session is settled here once it sent nothing that long
        self._next = 0.0
        self._passes = 0
        self._aggregates: _Counts[AggregateKeyDay] = _Counts(batches)
        self._reports: _Counts[ReportKeyDay] = _Counts(batches)
        self._marked = 0  # batches stored with rows that mark their session pending
        self._owed = 0  # sessions to settle, SETTLE_STEP after each answer
        self._count_lock = threading.Lock()
        self._lock = threading.Lock()

    def note(self, project_id: str, rows: Iterable[EventRow]) -> None:
        """Count the pieces a stored batch wrote: one per aggregate key-day of its rows, one per
        report key-day (path, day, band) and one per path and day for every band; and whether it
        marked its session's signals pending."""
        if not self.batches:
            return
        aggregates: set[AggregateKeyDay] = set()
        reports: set[ReportKeyDay] = set()
        marked = False
        for row in rows:
            marked = marked or row.type in SIGNAL_TYPES
            for day in range(day_of(row.ts), day_of(row.ts + row.span) + 1):
                aggregates.add((project_id, row.path_key, day, row.type, row.bucket_w, row.bucket_h, row.view_w))
                reports.add((project_id, row.path_key, day, row.bucket_w))
                reports.add((project_id, row.path_key, day, ALL_WIDTHS))
        with self._count_lock:
            self._aggregates.add(aggregates)
            self._reports.add(reports)
            self._marked += marked

    def maybe_run(self, repo: Repository) -> None:
        """Merge the keys due, and everything if the interval has passed, unless another thread of
        this process is at it."""
        now = time.monotonic()
        timed = bool(self.interval) and now >= self._next
        pending = self._aggregates.due or self._reports.due or self._owed or self._marked >= SETTLE_EVERY
        if not (timed or pending) or not self._lock.acquire(blocking=False):
            return
        try:
            with self._count_lock:
                due = self._aggregates.take()
                reports = self._reports.take()
                if self._marked >= SETTLE_EVERY:
                    self._owed, self._marked = self._owed + self._marked, 0
                step = min(self._owed, SETTLE_STEP)
            if due or reports:
                repo.compact(len(due), keys=due, report_keys=reports)
            if step:
                settled = repo.settle_rage(None, step, idle_ms=self.settle_idle_ms)
                with self._count_lock:
                    self._owed = 0 if settled < step else self._owed - step  # none left: the debt is paid
            if timed:
                self._next = now + self.interval
                self._passes += 1
                # Not in full: a key-day's big piece is merged again only once what came since is a
                # quarter of it (a back-fill touches every key-day between passes; merging each in
                # full re-encoded all the data every pass). Rolling re-encodes month pieces, so it
                # runs every ROLL_PASSES passes; the day pieces are exact meanwhile.
                repo.compact(self.max_keys, roll=self._passes % ROLL_PASSES == 1, full=False)
                repo.settle_rage(None, SETTLE_PER_RUN, idle_ms=self.settle_idle_ms)
        except Exception as exc:  # noqa: BLE001 - never fails a request; the next run tries again
            log("warn", "heatmap aggregate compaction failed", error=type(exc).__name__)
        finally:
            self._lock.release()
