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
from .repositories.base import Event, EventFilter, Reader, Repository, StoredEvent

_FIRST_PAGE = 256
_MAX_PAGE = 4096


def stored_events(
    reader: Reader, flt: EventFilter, *, ts_low: int | None, session_id: str | None = None
) -> Iterator[StoredEvent]:
    """Every stored event of ``flt`` from ``ts_low`` on, in ``(ts, seq)`` order, fetched in growing pages."""
    after: tuple[int, int] | None = None
    size = _FIRST_PAGE
    while True:
        page = reader.scan(flt, ts_low=ts_low, after=after, limit=size, session_id=session_id)
        yield from page
        if len(page) < size:
            return
        after = (page[-1].ts, page[-1].seq)
        size = min(size * 2, _MAX_PAGE)


def rows_in_order(
    reader: Reader, flt: EventFilter, *, session_id: str | None = None
) -> Iterator[tuple[StoredEvent, int, int, int | None, int | None]]:
    """``(event, point_index, ts, x, y)`` of every row of ``flt`` ordered by (ts, storage order, point)."""
    ts_low = None if flt.ts_from is None else flt.ts_from - reader.max_span(flt.project_id)
    lo = flt.ts_from
    hi = flt.ts_to
    heap: list[tuple[int, int, int, str, int | None, int | None, StoredEvent]] = []
    for event in stored_events(reader, flt, ts_low=ts_low, session_id=session_id):
        # Rows of earlier events that no later event can precede: (ts, seq) below this event's.
        while heap and (heap[0][0], heap[0][1]) < (event.ts, event.seq):
            ts, _, index, _, x, y, owner = heapq.heappop(heap)
            yield owner, index, ts, x, y
        if event.points is None:
            if (lo is None or event.ts >= lo) and (hi is None or event.ts <= hi):
                heapq.heappush(heap, (event.ts, event.seq, 0, event.event_id, event.x, event.y, event))
            continue
        for index, ts, x, y in items(event):
            if (lo is None or ts >= lo) and (hi is None or ts <= hi):
                heapq.heappush(heap, (ts, event.seq, index, event.event_id, x, y, event))
    while heap:
        ts, _, index, _, x, y, owner = heapq.heappop(heap)
        yield owner, index, ts, x, y


def _event(stored: StoredEvent, index: int, ts: int, x: int | None, y: int | None) -> Event:
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


def page(reader: Reader, flt: EventFilter, limit: int, offset: int, *, session_id: str | None = None) -> list[Event]:
    """Rows ``offset .. offset + limit`` of ``flt`` in ts order."""
    out: list[Event] = []
    position = 0
    for stored, index, ts, x, y in rows_in_order(reader, flt, session_id=session_id):
        if position >= offset:
            out.append(_event(stored, index, ts, x, y))
            if len(out) >= limit:
                break
        position += 1
    return out


def event_page(
    repo: Repository, flt: EventFilter, limit: int, offset: int, *, session_id: str | None = None
) -> list[Event]:
    """:func:`page` in one snapshot of ``repo``."""
    return repo.read(lambda reader: page(reader, flt, limit, offset, session_id=session_id))
