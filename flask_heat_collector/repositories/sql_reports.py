"""Report data on the SQL backends (report_pieces.py): session ordinals, compaction of the pieces,
the pieces a report reads, and their correction by erase."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..aggregates import DAY_MS
from ..report_pieces import ALL_WIDTHS, merge, rebuild
from .base import LONG_MOVE_MS, STORED_FIELDS, EventRow, PathSet, ReportPiece, SessionQuery
from .session_sets import SessionSet, page_ids
from .sql_ingest import crossing
from .sql_schema import (
    delete_keyed,
    events,
    heat_report_pieces,
    heat_session_ordinals,
    path_clauses,
    projects,
    select_keyed,
    sessions,
    traffic_clauses,
)

PIECE_FIELDS = ReportPiece._fields
KEY = ("project_id", "path_key", "day", "bucket_w")
STORED_COLUMNS = [events.c[name] for name in STORED_FIELDS]  # scroll rows' JSON holds their heights


def pieces_params(project_id: str, found: list[ReportPiece]) -> list[dict[str, Any]]:
    """Insert parameters of ``heat_report_pieces`` rows."""
    return [{"project_id": project_id, **piece._asdict()} for piece in found]


def insert(conn: Connection, project_id: str, found: list[ReportPiece]) -> None:
    if found:
        conn.execute(sa.insert(heat_report_pieces), pieces_params(project_id, found))


def ordinals(conn: Connection, project_id: str, session_ids: set[str]) -> dict[str, int]:
    """The ordinals of those sessions that have one."""
    t = heat_session_ordinals.c
    found: dict[str, int] = {}
    ids = sorted(session_ids)
    for start in range(0, len(ids), 500):
        stmt = sa.select(t.session_id, t.ordinal).where(
            t.project_id == project_id, t.session_id.in_(ids[start : start + 500])
        )
        found.update((str(sid), int(n)) for sid, n in conn.execute(stmt))
    return found


def ensure_ordinals(conn: Connection, project_id: str, session_ids: set[str]) -> dict[str, int]:
    """The ordinals of these sessions, giving the next ones of the project to those without
    (under the project row's lock, so two compactions never give one ordinal twice)."""
    found = ordinals(conn, project_id, session_ids)
    missing = session_ids - found.keys()
    if not missing:
        return found
    lock = sa.select(projects.c.next_ordinal).where(projects.c.id == project_id)
    if conn.dialect.name != "sqlite":
        lock = lock.with_for_update()
    first = int(conn.execute(lock).scalar() or 0)
    found.update(ordinals(conn, project_id, missing))  # given meanwhile by a compaction we waited for
    still = sorted(session_ids - found.keys())
    if still:
        new = {sid: first + i for i, sid in enumerate(still)}
        conn.execute(sa.update(projects).where(projects.c.id == project_id).values(next_ordinal=first + len(new)))
        conn.execute(
            sa.insert(heat_session_ordinals),
            [{"project_id": project_id, "session_id": sid, "ordinal": n} for sid, n in new.items()],
        )
        found.update(new)
    return found


def forget_ordinals(conn: Connection, project_id: str, session_ids: list[str]) -> None:
    """Drop the ordinals of erased sessions (never given again: ``projects.next_ordinal`` goes on)."""
    t = heat_session_ordinals.c
    for start in range(0, len(session_ids), 500):
        chunk = sorted(session_ids)[start : start + 500]
        conn.execute(sa.delete(heat_session_ordinals).where(t.project_id == project_id, t.session_id.in_(chunk)))


def fresh_keys(conn: Connection, limit: int) -> list[tuple[Any, ...]]:
    """Up to ``limit`` key-days with fresh pieces (every project)."""
    t = heat_report_pieces.c
    keys: dict[tuple[Any, ...], None] = {}
    for project_id in conn.execute(sa.select(projects.c.id)).scalars():
        stmt = sa.select(*[t[name] for name in KEY]).where(t.project_id == project_id, t.part > 0).limit(limit * 4)
        for row in conn.execute(stmt):
            keys[tuple(row)] = None
        if len(keys) >= limit:
            break
    return list(keys)[:limit]


def _match(key: tuple[Any, ...]) -> list[Any]:
    return [heat_report_pieces.c[name] == value for name, value in zip(KEY, key, strict=True)]


def compact_keys(conn: Connection, keys: list[tuple[Any, ...]]) -> None:
    """Merge the pieces of each key-day into one (pieces stored meanwhile are left for later): a few
    statements for all the keys of a project, not a few per key (on SQLite, cached ones per key)."""
    t = heat_report_pieces.c
    for project_id, mine in groupby(sorted(keys), key=lambda key: str(key[0])):
        wanted = sorted({tuple(key[1:]) for key in mine})
        select = sa.select(*[t[name] for name in PIECE_FIELDS]).where(t.project_id == project_id)
        if conn.dialect.name in ("postgresql", "mysql"):
            select = select.with_for_update(skip_locked=True)
        groups: dict[tuple[int, int, int], list[ReportPiece]] = {}
        for row in select_keyed(conn, select, heat_report_pieces, KEY[1:], wanted):
            piece = ReportPiece(*row)
            groups.setdefault((piece.path_key, piece.day, piece.bucket_w), []).append(piece)
        groups = {key: group for key, group in groups.items() if any(piece.part > 0 for piece in group)}
        if not groups:
            continue  # merged meanwhile by another process
        sessions = {p.session_id for group in groups.values() for p in group if p.session_id is not None}
        known = ensure_ordinals(conn, project_id, sessions)
        gone = sorted((*key, piece.part) for key, group in groups.items() for piece in group)
        delete_keyed(conn, heat_report_pieces, project_id, (*KEY[1:], "part"), gone)
        insert(conn, project_id, [m for group in groups.values() if (m := merge(group, known.__getitem__)) is not None])


def read_pieces(
    conn: Connection,
    project_id: str,
    path: PathSet,
    days: tuple[int, int],
    *,
    selectors: bool,
    scroll: bool,
    width: int | None,
) -> list[ReportPiece]:
    """The pieces of the days ``days[0]..days[1]`` (of one path; of one band width when given, the
    per-band pieces when not, the all-band ones for ``ALL_WIDTHS``); ``selectors`` and ``scroll`` read
    that data too."""
    t = heat_report_pieces.c
    skip = {name for name, wanted in (("selectors", selectors), ("scroll", scroll)) if not wanted}
    columns = [sa.null() if name in skip else t[name] for name in PIECE_FIELDS]
    stmt = sa.select(*columns).where(t.project_id == project_id, t.day >= days[0], t.day <= days[1])
    stmt = stmt.where(t.bucket_w == width if width is not None else t.bucket_w != ALL_WIDTHS)
    stmt = stmt.where(*path_clauses(heat_report_pieces, path))
    if path is None and width is not None:
        # Every path of one band (the paths report): MariaDB read every piece of the project through
        # the primary key, the per-band pieces' selector and scroll data too (34 ms against 19 ms by
        # this index at 1,000,000 events, measured during a fill).
        stmt = stmt.with_hint(heat_report_pieces, "FORCE INDEX (ix_heat_report_pieces_band_day)", "mysql")
    return [ReportPiece(*row) for row in conn.execute(stmt)]


def last_item_ts(conn: Connection, project_id: str) -> int | None:
    """The latest ``last_ts`` of the pieces of the project's latest day (two seeks of the day index)."""
    t = heat_report_pieces.c
    day = sa.select(sa.func.max(t.day)).where(t.project_id == project_id).scalar_subquery()
    found = conn.execute(sa.select(sa.func.max(t.last_ts)).where(t.project_id == project_id, t.day == day)).scalar()
    return None if found is None else int(found)


def rebuild_key_days(conn: Connection, project_id: str, max_span: int, keys: set[tuple[int, int, int]]) -> None:
    """Replace the pieces of these ``(path_key, day, bucket_w)`` key-days, and of their all-band
    key-days, that this transaction sees by ones computed from their rows (a piece stored meanwhile by
    a batch it does not see is kept)."""
    keys = keys | {(pkey, day, ALL_WIDTHS) for pkey, day, _ in keys}
    for pkey, day, width in sorted(keys):
        start = day * DAY_MS
        low = start - min(max_span, LONG_MOVE_MS)
        same = [
            events.c.project_id == project_id,
            events.c.path_key == pkey,
            *traffic_clauses(events.c.session_id, project_id, "human"),  # bots add to no piece
        ]
        if width != ALL_WIDTHS:
            same.append(events.c.bucket_w == width)
        stmt = sa.select(*STORED_COLUMNS).where(*same, events.c.ts >= low, events.c.ts < start + DAY_MS)
        rows = [EventRow(*r) for r in conn.execute(stmt)]
        if max_span > LONG_MOVE_MS:  # and the long moves reaching into the day from before
            crossed = sa.select(*STORED_COLUMNS).where(*same, crossing(project_id, low, start))
            rows += [EventRow(*r) for r in conn.execute(crossed)]
        clipped = list(_inside(rows, start, start + DAY_MS - 1))
        key = (project_id, pkey, day, width)
        seen = list(conn.execute(sa.select(heat_report_pieces.c.part).where(*_match(key))).scalars())
        if seen:
            conn.execute(sa.delete(heat_report_pieces).where(*_match(key), heat_report_pieces.c.part.in_(seen)))
        if clipped:
            known = ensure_ordinals(conn, project_id, {r.session_id for r in clipped})
            rebuilt = rebuild(clipped, known.__getitem__)
            insert(conn, project_id, [p for p in rebuilt if (p.day, p.bucket_w) == (day, width)])


def _inside(rows: list[EventRow], lo: int, hi: int) -> Iterator[EventRow]:
    """The rows with an item in ``lo..hi`` (a move's points outside are dropped by ``batch_pieces``'
    day split, since only the key-day ``lo`` starts is kept)."""
    for row in rows:
        if row.ts <= hi and row.ts + row.span >= lo:
            yield row


def rebuild_all(conn: Connection, project_id: str, rows: Iterator[EventRow]) -> None:
    """Replace every report piece of the project by merged ones computed from its events."""
    conn.execute(sa.delete(heat_report_pieces).where(heat_report_pieces.c.project_id == project_id))
    given: dict[str, int] = {}

    def ordinal(session_id: str) -> int:
        if session_id not in given:
            given.update(ensure_ordinals(conn, project_id, {session_id}))
        return given[session_id]

    insert(conn, project_id, rebuild(rows, ordinal))


def page_among(conn: Connection, among: SessionSet, clauses: list[Any], query: SessionQuery) -> list[str]:
    """The ids of the sessions list's page (``clauses``: its other filters) among the sessions of
    ``among``: per chunk of the set, the first ``offset + limit`` sessions it matches (by start, then
    id compared byte-wise, as :func:`session_sets.page_ids` compares them), then the page of their union."""
    t = heat_session_ordinals.c
    s = sessions.c
    sid = s.id.collate("C") if conn.dialect.name == "postgresql" else s.id
    order = (s.started_at.desc(), sid.desc()) if query.descending else (s.started_at, sid)
    keys: list[tuple[int, str]] = []
    for ordinals, ids in among.chunks():
        if ordinals:
            named = sa.select(t.session_id).where(t.project_id == query.project_id, t.ordinal.in_(ordinals))
            chunk = s.id.in_(named)
        else:
            chunk = s.id.in_(ids)
        stmt = sa.select(s.started_at, s.id).where(*clauses, chunk).order_by(*order).limit(query.offset + query.limit)
        keys.extend((int(started), str(found)) for started, found in conn.execute(stmt))
    return page_ids(keys, descending=query.descending, offset=query.offset, limit=query.limit)
