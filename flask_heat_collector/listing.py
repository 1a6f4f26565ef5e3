"""Pages of event rows in ts order, a move answering as one row per point (backend-free).

Stored events come from the database in ``(ts, seq)`` order of their earliest row; their rows
(a move's points) are merged in a heap, so a page costs the rows before it plus the page, never
the whole table. An event's rows may start before ``from``: :func:`from_edge` finds those.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from itertools import chain

from .aggregates import items
from .repositories.base import LONG_MOVE_MS, Event, EventFilter, EventRow, Reader, Repository, Scan

_FIRST_PAGE = 256
_MAX_PAGE = 8192
_SWEEP_PAGE = 64


def stored_events(
    reader: Reader, what: Scan, *, first_page: int = _FIRST_PAGE, next_page: Callable[[int], int] | None = None
) -> Iterator[EventRow]:
    """Every stored event of ``what`` in ``(ts, seq)`` order, fetched in pages growing twofold (or
    of ``next_page(size)`` events after one of ``size``)."""
    after: tuple[int, int] | None = None
    size = max(1, min(first_page, _MAX_PAGE))
    # seq is unique per process, not across processes: events may share (ts, seq). Each next page
    # starts AT the last key, skipping the events of that key already given.
    given: set[str] = set()
    while True:
        page = reader.scan(what, after, size)
        key = after and (after[0], after[1] + 1)
        fresh = [e for e in page if not ((e.ts, e.seq) == key and e.event_id in given)]
        yield from fresh
        if len(page) < size:
            return
        last = (page[-1].ts, page[-1].seq)
        if not fresh and last == key:  # a page of one key, all given: read more at once
            size *= 2
            continue
        given = {e.event_id for e in page if (e.ts, e.seq) == last} | (given if last == key else set())
        after = (last[0], last[1] - 1)
        size = max(1, min(size * 2 if next_page is None else next_page(size), _MAX_PAGE))


Row = tuple[EventRow, int, int]  # (event, point index, ts)


def from_edge(
    reader: Reader,
    flt: EventFilter,
    *,
    session_id: str | None = None,
    light: bool = False,
    text: bool = False,
    points: bool = True,
    first_page: int = _FIRST_PAGE,
    next_page: Callable[[int], int] | None = None,
) -> Iterator[EventRow]:
    """Every stored event of ``flt`` with rows at or after ``flt.ts_from`` (and ``ts`` at most
    ``flt.ts_to``) in ``(ts, seq)`` order; some events ending before ``ts_from`` may come too.

    The scan starts :data:`LONG_MOVE_MS` (or the project's longest move, when shorter) before
    ``ts_from``; the longer moves crossing ``ts_from`` come from the long-move index, so one long
    move costs its own rows, not a wider scan for every range.
    """
    lo = flt.ts_from
    if lo is None:
        what = Scan(flt, None, session_id, light, text, points)
        return stored_events(reader, what, first_page=first_page, next_page=next_page)
    span = reader.max_span(flt.project_id)
    what = Scan(flt, lo - min(span, LONG_MOVE_MS), session_id, light, text, points)
    scan = stored_events(reader, what, first_page=first_page, next_page=next_page)
    if span <= LONG_MOVE_MS:
        return scan
    return chain(reader.long_moves(what, lo - LONG_MOVE_MS, lo), scan)


def merged_rows(events: Iterable[EventRow], lo: int | None, hi: int | None) -> Iterator[Row]:
    """``(event, point_index, ts)`` of the rows in ``lo..hi`` of ``events`` (given in ``(ts, seq)``
    order), ordered by (ts, storage order, point). An event whose rows share one ts is never decoded."""
    heap: list[tuple[int, int, int, str, EventRow]] = []
    for event in events:
        # Rows of earlier events that no later event can precede: (ts, seq) below this event's.
        while heap and (heap[0][0], heap[0][1]) < (event.ts, event.seq):
            ts, _, index, _, owner = heapq.heappop(heap)
            yield owner, index, ts
        if event.span == 0:
            if (lo is None or event.ts >= lo) and (hi is None or event.ts <= hi):
                for index in range(event.row_count):
                    if heap:
                        heapq.heappush(heap, (event.ts, event.seq, index, event.event_id, event))
                    else:  # nothing pending: no later event can come before it
                        yield event, index, event.ts
            continue
        for index, ts, _, _ in items(event):
            if (lo is None or ts >= lo) and (hi is None or ts <= hi):
                heapq.heappush(heap, (ts, event.seq, index, event.event_id, event))
    while heap:
        ts, _, index, _, owner = heapq.heappop(heap)
        yield owner, index, ts


def rows_in_order(
    reader: Reader,
    flt: EventFilter,
    *,
    session_id: str | None = None,
    light: bool = False,
    first_page: int = _FIRST_PAGE,
) -> Iterator[Row]:
    """``(event, point_index, ts)`` of every row of ``flt`` ordered by (ts, storage order, point)."""
    events = from_edge(reader, flt, session_id=session_id, light=light, first_page=first_page)
    return merged_rows(events, flt.ts_from, flt.ts_to)


def _cut(
    reader: Reader, flt: EventFilter, offset: int, limit: int, session_id: str | None
) -> tuple[int | None, int, list[EventRow], int]:
    """``(cut, counted, kept, ahead)``: a time at or after ``flt.ts_from`` with at most ``offset``
    rows of ``flt`` before it, found from the stored row counts without reading any points;
    ``counted`` rows lie wholly before it; ``kept`` are the events before it whose rows must be read
    to know where they fall (those with rows from ``cut`` on, or before ``ts_from``); about
    ``ahead`` events from ``cut`` on hold the page.

    The events are swept in ``(ts, seq)`` order: before the ts of each one lie at most the rows of
    the events seen so far; the last such ts where that bound is still within ``offset`` is the cut.
    """
    lo = flt.ts_from
    seen: list[EventRow] = []
    bound = 0  # the rows of the events seen so far: at least those before the sweep's ts
    cut, before_cut, found = lo, 0, False

    def next_page(size: int) -> int:  # the events still wanted, at the rows per event seen so far
        return size * 2 if not bound else (offset + limit + 1 - bound) * len(seen) // bound + 1

    first = min(offset + limit + 1, _SWEEP_PAGE)
    sweep = from_edge(
        reader, flt, session_id=session_id, light=True, points=False, first_page=first, next_page=next_page
    )
    for event in sweep:
        if lo is not None and event.ts + event.span < lo:
            continue
        if not found and (lo is None or event.ts > lo) and (cut is None or event.ts > cut):
            found = bound > offset
            if not found:
                cut, before_cut = event.ts, len(seen)
        if found and bound > offset + limit:
            break
        seen.append(event)
        bound += event.row_count
    ahead = len(seen) - before_cut + 1
    if cut is None:
        return None, 0, [], ahead
    counted, kept = 0, []
    for event in seen[:before_cut]:
        if (lo is not None and event.ts < lo) or event.ts + event.span >= cut:
            kept.append(event)
        else:
            counted += event.row_count
    return cut, counted, kept, ahead


def _rows_from(
    reader: Reader, flt: EventFilter, offset: int, limit: int, session_id: str | None
) -> tuple[int, Iterator[Row]]:
    """``(skip, rows)``: the rows of ``flt`` from a point at most ``offset`` rows into them, and how
    many of them come before row ``offset``. The points of the rows before that point are not read."""
    lo, hi = flt.ts_from, flt.ts_to
    cut, counted, kept, ahead = _cut(reader, flt, offset, limit, session_id)
    if cut is None or cut == lo:
        return offset, rows_in_order(reader, flt, session_id=session_id, light=True, first_page=ahead)
    ids = [e.event_id for e in kept]
    whole = sorted(reader.fetch(flt.project_id, ids) if ids else [], key=lambda e: (e.ts, e.seq))
    for event in whole:
        counted += sum(1 for _, ts, _, _ in items(event) if (lo is None or ts >= lo) and ts < cut)
    carried = [e for e in whole if e.ts + e.span >= cut]
    later = stored_events(reader, Scan(replace(flt, ts_from=cut), cut, session_id, light=True), first_page=ahead)
    return offset - counted, merged_rows(chain(carried, later), cut, hi)


def _event(stored: EventRow, index: int, ts: int, x: int | None, y: int | None) -> Event:
    return Event(
        id=f"{stored.event_id}:{index}",
        event_id=stored.event_id,
        project_id=stored.project_id,
        session_id=stored.session_id,
        user_id=stored.user_id,
        type=stored.type,
        ts=ts,
        path=stored.path,
        selector=stored.selector,
        x=x,
        y=y,
        scroll_depth=stored.scroll_depth,
        meta_json=stored.meta_json,
        data=json.loads(stored.data_json) if stored.data_json else None,
    )


def expand(stored: EventRow) -> Iterator[Event]:
    """The rows of one stored event as the events API answers them (a move: one per point)."""
    for index, ts, x, y in items(stored):
        yield _event(stored, index, ts, x, y)


def page(reader: Reader, flt: EventFilter, limit: int, offset: int, *, session_id: str | None = None) -> list[Event]:
    """Rows ``offset .. offset + limit`` of ``flt`` in ts order.

    The events before the page are counted by their stored row counts, without their points or
    JSON (:func:`_cut`); the page's events are then read whole.
    """
    wanted: list[Row] = []
    position = 0
    skip, rows = _rows_from(reader, flt, offset, limit, session_id)
    for row in rows:
        if position >= skip:
            wanted.append(row)
            if len(wanted) >= limit:
                break
        position += 1
    if not wanted:
        return []
    whole = {e.event_id: e for e in reader.fetch(flt.project_id, list({row[0].event_id for row in wanted}))}
    points: dict[str, list[tuple[int, int, int | None, int | None]]] = {}
    out = []
    for stored, index, ts in wanted:
        event = whole[stored.event_id]
        if event.points is None:
            out.append(_event(event, index, ts, event.x, event.y))
            continue
        if event.event_id not in points:
            points[event.event_id] = list(items(event))
        _, _, x, y = points[event.event_id][index]
        out.append(_event(event, index, ts, x, y))
    return out


def event_page(
    repo: Repository, flt: EventFilter, limit: int, offset: int, *, session_id: str | None = None
) -> list[Event]:
    """:func:`page` in one snapshot of ``repo``."""
    return repo.read(lambda reader: page(reader, flt, limit, offset, session_id=session_id))
