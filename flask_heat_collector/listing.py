"""Pages of event rows in ts order, a move answering as one row per point (backend-free).

Stored events come from the database in ``(ts, seq)`` order of their earliest row; their rows
(a move's points) are merged in a heap, so a page costs the rows before it plus the page, never
the whole table. An event's rows may start up to the project's longest move before ``from``.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator

from .aggregates import items
from .repositories.base import Event, EventFilter, EventRow, Reader, Repository, Scan

_FIRST_PAGE = 256
_MAX_PAGE = 8192


def stored_events(reader: Reader, what: Scan, *, first_page: int = _FIRST_PAGE) -> Iterator[EventRow]:
    """Every stored event of ``what`` in ``(ts, seq)`` order, fetched in growing pages."""
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
        size = min(size * 2, _MAX_PAGE)


Row = tuple[EventRow, int, int]  # (event, point index, ts)


def rows_in_order(
    reader: Reader,
    flt: EventFilter,
    *,
    session_id: str | None = None,
    light: bool = False,
    first_page: int = _FIRST_PAGE,
) -> Iterator[Row]:
    """``(event, point_index, ts)`` of every row of ``flt`` ordered by (ts, storage order, point).

    An event whose rows share one ts (all but moves that last) is never decoded here.
    """
    ts_low = None if flt.ts_from is None else flt.ts_from - reader.max_span(flt.project_id)
    lo = flt.ts_from
    hi = flt.ts_to
    heap: list[tuple[int, int, int, str, EventRow]] = []
    events = stored_events(reader, Scan(flt, ts_low, session_id, light), first_page=first_page)
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

    The rows before the page are walked without their JSON; the page's events are then read whole.
    """
    wanted: list[Row] = []
    position = 0
    rows = rows_in_order(reader, flt, session_id=session_id, light=True, first_page=offset + limit + 1)
    for row in rows:
        if position >= offset:
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
