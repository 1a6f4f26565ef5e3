"""Reports by traffic class (``traffic=human|bot|all``, SPEC §10), backend-free.

The aggregates and report pieces hold the human sessions only (ingest writes none for a bot session;
a session that changes class has its key-days computed again: ``Repository.classify_sessions``), and
every raw read (scans, settled signals and rage clicks) keeps the rows of the filter's class. So
``human`` (the default) reads what it read before, and ``bot`` / ``all`` add pieces built here from the
bot sessions' raw rows of the range's whole days: exact, at a cost bounded by the bot rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from .aggregates import DAY_MS, piece_wanted, pieces_of_rows
from .listing import from_edge
from .report_pieces import batch_pieces as report_batch_pieces
from .report_pieces import piece_wanted as report_piece_wanted
from .repositories.base import (
    AggregateRow,
    Blobs,
    EventFilter,
    EventRow,
    PathSet,
    Reader,
    ReportPiece,
    Repository,
    Scan,
    path_in,
)
from .signals import Signal
from .traffic import BOT, HUMAN

T = TypeVar("T")
_SYNTHETIC_PART = -1  # the part of a piece built from bot rows at read time (never stored)


class TrafficReader(Reader):
    """A reader whose pieces are those of one traffic class (the stored ones are the humans')."""

    def __init__(self, inner: Reader, traffic: str, *, sample_only: bool = False) -> None:
        self.inner, self.traffic, self.sample_only = inner, traffic, sample_only
        self._rows: dict[tuple[str, tuple[int, int]], list[EventRow]] = {}

    def _bot_rows(self, project_id: str, days: tuple[int, int]) -> list[EventRow]:
        """The bot sessions' rows with items on the days ``days`` (moves reaching in from before too)."""
        key = (project_id, days)
        if key not in self._rows:
            lo, hi = days[0] * DAY_MS, (days[1] + 1) * DAY_MS - 1
            flt = EventFilter(project_id, ts_from=lo, ts_to=hi, traffic=BOT)
            self._rows[key] = [r for r in from_edge(self.inner, flt) if r.ts + r.span >= lo]
        return self._rows[key]

    def aggregates(
        self, project_id: str, path: PathSet, days: tuple[int, int], *, blobs: Blobs | None = None
    ) -> list[AggregateRow]:
        own = [] if self.traffic == BOT else self.inner.aggregates(project_id, path, days, blobs=blobs)
        if self.traffic == HUMAN:
            return own
        rows = (row for row in self._bot_rows(project_id, days) if path_in(row.path, path))
        return own + [p for p in pieces_of_rows(rows, _SYNTHETIC_PART) if piece_wanted(p, days, blobs)]

    def report_pieces(
        self,
        project_id: str,
        path: PathSet,
        days: tuple[int, int],
        *,
        selectors: bool = False,
        scroll: bool = False,
        width: int | None = None,
    ) -> list[ReportPiece]:
        own = (
            []
            if self.traffic == BOT
            else self.inner.report_pieces(project_id, path, days, selectors=selectors, scroll=scroll, width=width)
        )
        if self.traffic == HUMAN:
            return own
        by_session: dict[str, list[EventRow]] = {}
        for row in self._bot_rows(project_id, days):
            if path_in(row.path, path):
                by_session.setdefault(row.session_id, []).append(row)
        made = [p for sid, rows in by_session.items() for p in report_batch_pieces(rows, sid, _SYNTHETIC_PART)]
        return own + [p for p in made if report_piece_wanted(p, days, width)]

    # Everything else is the inner reader's (its raw reads keep the filter's class).
    def scan(self, what: Scan, after: tuple[int, int] | None, limit: int) -> list[EventRow]:
        return self.inner.scan(what, after, limit)

    def fetch(self, project_id: str, event_ids: list[str]) -> list[EventRow]:
        return self.inner.fetch(project_id, event_ids)

    def path_totals(self, project_id: str, ts_from: int | None, ts_to: int | None) -> Any:
        return self.inner.path_totals(project_id, ts_from, ts_to)

    def session_paths(
        self, project_id: str, ts_from: int | None, ts_to: int | None, session_ids: list[str]
    ) -> set[tuple[str, str]]:
        return self.inner.session_paths(project_id, ts_from, ts_to, session_ids)

    def deepest_scrolls(self, flt: EventFilter, width: int | None) -> list[float]:
        return self.inner.deepest_scrolls(flt, width)

    def session_ordinals(self, project_id: str, session_ids: set[str]) -> dict[str, int]:
        return self.inner.session_ordinals(project_id, session_ids)

    def rage_clicks(self, flt: EventFilter) -> list[EventRow]:
        return self.inner.rage_clicks(flt)

    def signal_maps(
        self, project_id: str, path: PathSet, days: tuple[int, int], kind: str
    ) -> list[AggregateRow] | None:
        return [] if self.traffic == BOT else self.inner.signal_maps(project_id, path, days, kind)

    def signals(self, flt: EventFilter, kind: str) -> list[Signal]:
        return self.inner.signals(flt, kind)

    def signal_path_counts(self, flt: EventFilter) -> dict[tuple[str, str], int]:
        return {} if self.sample_only else self.inner.signal_path_counts(flt)

    def signal_selector_counts(self, flt: EventFilter, width: int | None = None) -> dict[tuple[str, str], int]:
        return {} if self.sample_only else self.inner.signal_selector_counts(flt, width)

    def long_moves(self, what: Scan, before: int, reaching: int) -> list[EventRow]:
        return self.inner.long_moves(what, before, reaching)

    def max_span(self, project_id: str) -> int:
        return self.inner.max_span(project_id)

    def project_found(self, project_id: str) -> bool:
        return self.inner.project_found(project_id)

    def last_item_ts(self, project_id: str) -> int | None:
        return self.inner.last_item_ts(project_id)


class _TrafficRepository:
    """What the report functions use of a repository, reading through a :class:`TrafficReader`."""

    def __init__(self, repo: Repository, traffic: str, sample_only: bool) -> None:
        self.repo, self.traffic, self.sample_only = repo, traffic, sample_only

    def settle_rage(self, project_id: str | None, limit: int | None = None, *, idle_ms: int | None = None) -> int:
        return self.repo.settle_rage(project_id, limit, idle_ms=idle_ms)

    def read(self, fn: Callable[[Reader], T]) -> T:
        return self.repo.read(lambda reader: fn(TrafficReader(reader, self.traffic, sample_only=self.sample_only)))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.repo, name)


def by_traffic(repo: Repository, traffic: str, *, sample_only: bool = False) -> Repository:
    """``repo`` as the reports of class ``traffic`` read it (``human`` reads it as it is). ``sample_only``:
    for a report of which only ``meta.sample`` is used (``meta.excluded``), the per-path and
    per-selector signal counts, which no sample depends on, are not read (they scan the range's
    signals)."""
    return repo if traffic == HUMAN else cast(Repository, _TrafficRepository(repo, traffic, sample_only))
