"""Frustration signals on the SQL backends (signals.py): settling a pending session's signals (with
its rage clicks, under the same lock: sql_rage.settle_sessions), and the reads of the reports."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import signal_maps
from ..aggregates import DAY_MS
from ..report_pieces import ALL_WIDTHS
from ..signal_counts import Change, Counted, changes, in_range
from ..signal_maps import MAP_KINDS, MapKey, Mapped, map_key
from ..signals import KINDS, RAGE, SIGNAL_FIELDS, SIGNAL_TYPES, SessionRow, Signal, SignalRules, settle
from .base import AggregateRow, EventFilter, PathSet
from .sql_ingest import insert_ignore, upsert
from .sql_schema import (
    delete_keyed,
    events,
    heat_rage_clicks,
    heat_signal_cells,
    heat_signal_counts,
    heat_signals,
    path_clauses,
    select_keyed,
    session_types,
    sessions,
    traffic_clauses,
    unindexed,
)

_ROW_COLUMNS = [events.c[name] for name in ("session_id", *SessionRow._fields)]
_SIGNAL_COLUMNS = [heat_signals.c[name] for name in SIGNAL_FIELDS]
_COUNTED_COLUMNS = [heat_signals.c[name] for name in Counted._fields]
_COUNT_KEY = ["project_id", "path_key", "day", "bucket_w", "kind", "selector_key"]
_MAP_KEY = ["project_id", "path_key", "day", "kind", "bucket_w", "bucket_h", "view_w"]
_MAP_COLUMNS = ["path_key", "day", "kind", "bucket_w", "bucket_h", "view_w", "n", "first_seq", "max_y", "cells"]


def settle_sessions(
    conn: Connection, project_id: str, ids: list[str], rules: SignalRules, bots: set[str]
) -> tuple[list[Counted], list[Counted]]:
    """Decide the signals of these sessions (their pending marks locked by the caller) and store the
    difference; the signal rows of the sessions not in ``bots`` stored and deleted (for the counts)."""
    rows = conn.execute(
        sa.select(*_ROW_COLUMNS)
        .where(events.c.project_id == project_id, events.c.session_id.in_(ids), session_types(*SIGNAL_TYPES))
        .order_by(events.c.session_id, events.c.ts, events.c.seq)
    ).all()
    s = heat_signals.c
    stored: dict[str, list[tuple[str, str]]] = defaultdict(list)
    removed: list[tuple[str, str, str]] = []  # rows settled before the exact width was kept: written again
    counted: dict[tuple[str, str, str], Counted] = {}
    for sid, kind, eid, view_w, *rest in conn.execute(
        sa.select(s.session_id, s.kind, s.event_id, s.view_w, *_COUNTED_COLUMNS[1:]).where(
            s.project_id == project_id, s.session_id.in_(ids)
        )
    ):
        counted[(str(sid), str(kind), str(eid))] = Counted(str(kind), *rest)
        if view_w is None:
            removed.append((str(sid), str(kind), str(eid)))
        else:
            stored[str(sid)].append((str(kind), str(eid)))
    by_session = {sid: [SessionRow(*row[1:]) for row in found] for sid, found in groupby(rows, key=lambda r: str(r[0]))}
    added: list[Signal] = []
    for sid in ids:
        new, gone = settle(sid, by_session.get(sid, []), stored.get(sid, []), rules)
        added += new
        removed += [(sid, kind, eid) for kind, eid in gone]
    delete_keyed(conn, heat_signals, project_id, ("session_id", "kind", "event_id"), removed)
    if added:
        conn.execute(sa.insert(heat_signals), [{"project_id": project_id, **sig._asdict()} for sig in added])
    more = [sig for sig in added if sig.session_id not in bots]
    fewer = [counted[key] for key in removed if key[0] not in bots]
    mapped = [
        Mapped(
            sig.kind,
            sig.path_key,
            sig.ts,
            sig.seq,
            sig.x,
            sig.y,
            sig.bucket_w,
            sig.bucket_h,
            sig.view_w or sig.bucket_w,
        )
        for sig in more
    ]
    write_maps(conn, project_id, mapped, gone_maps(fewer))
    return [as_counted(sig.kind, sig) for sig in more], fewer


def gone_maps(removed: Iterable[Counted]) -> set[MapKey]:
    """The path-day-kinds of maps that lose these signals."""
    return {map_key(r.kind, r.path_key, r.ts) for r in removed if r.kind in MAP_KINDS}


def as_counted(kind: str, row: Any) -> Counted:
    """A stored signal or rage click (any row with its columns) as the counts keep it."""
    return Counted(kind, row.path, row.path_key, row.ts, row.bucket_w, row.selector)


def bots_among(conn: Connection, project_id: str, ids: list[str]) -> set[str]:
    """The sessions of ``ids`` whose class is ``bot`` (their signals are in no count)."""
    t = sessions.c
    stmt = sa.select(t.id).where(t.project_id == project_id, t.id.in_(ids), t.traffic == "bot")
    return {str(sid) for sid in conn.execute(stmt).scalars()}


def stored_counted(conn: Connection, project_id: str, session_ids: list[str] | None) -> Iterator[Counted]:
    """The stored signal rows and rage clicks of these sessions (``None``: of every human session), as
    the counts keep them."""
    for table, kind in ((heat_signals, heat_signals.c.kind), (heat_rage_clicks, sa.literal(RAGE))):
        t = table.c
        columns = [kind, t.path, t.path_key, t.ts, t.bucket_w, t.selector]
        mine = t.project_id == project_id
        chunks = (
            [traffic_clauses(t.session_id, project_id, "human")]
            if session_ids is None
            else [[t.session_id.in_(session_ids[i : i + 500])] for i in range(0, len(session_ids), 500)]
        )
        for clauses in chunks:
            for k, path, pkey, ts, bw, sel in conn.execute(sa.select(*columns).where(mine, *clauses)):
                yield Counted(str(k), str(path), int(pkey), int(ts), int(bw), sel)


def count(conn: Connection, project_id: str, found: list[Change]) -> None:
    """Add these changes to the stored counts (a count that reaches 0 is deleted: nothing erased is
    named)."""
    if not found:
        return
    c = heat_signal_counts.c
    stmt = upsert(conn.dialect.name, heat_signal_counts, _COUNT_KEY, lambda new: {"n": c.n + new.n})
    rows = [
        {"project_id": project_id, **ch.key._asdict(), "path": ch.path, "selector": ch.selector, "n": ch.n}
        for ch in found
    ]
    conn.execute(stmt, rows)
    fallen = [tuple(ch.key) for ch in found if ch.n < 0]
    delete_keyed(conn, heat_signal_counts, project_id, _COUNT_KEY[1:], fallen, c.n <= 0)


def rebuild_counts(conn: Connection, project_id: str) -> None:
    """Replace the project's counts and map pieces by those of its stored signals and rage clicks
    (human sessions)."""
    conn.execute(sa.delete(heat_signal_counts).where(heat_signal_counts.c.project_id == project_id))
    count(conn, project_id, changes(stored_counted(conn, project_id, None), []))
    conn.execute(sa.delete(heat_signal_cells).where(heat_signal_cells.c.project_id == project_id))
    _insert_maps(conn, project_id, signal_maps.pieces(_mapped(conn, project_id, [])))


def _mapped(conn: Connection, project_id: str, where: list[Any]) -> Iterator[Mapped]:
    """The stored signals of the human sessions of signal_maps.MAP_KINDS matching ``where``, each with
    its event's width when it was settled before the width was kept."""
    s, e = heat_signals.c, events.c
    width = sa.func.coalesce(s.view_w, e.view_w, s.bucket_w)
    joined = heat_signals.outerjoin(events, sa.and_(e.project_id == s.project_id, e.event_id == s.event_id))
    stmt = (
        sa.select(s.kind, s.path_key, s.ts, s.seq, s.x, s.y, s.bucket_w, s.bucket_h, width)
        .select_from(joined)
        .where(s.project_id == project_id, *traffic_clauses(s.session_id, project_id, "human"), *where)
    )
    if not where:
        stmt = stmt.where(s.kind.in_(MAP_KINDS))
    for row in conn.execute(stmt):
        yield Mapped(str(row[0]), *(int(v) if v is not None else None for v in row[1:]))  # type: ignore[arg-type]


def _insert_maps(conn: Connection, project_id: str, found: list[AggregateRow]) -> None:
    if found:
        conn.execute(sa.insert(heat_signal_cells), [{"project_id": project_id, **_map_values(p)} for p in found])


def _map_values(piece: AggregateRow) -> dict[str, Any]:
    return {name: getattr(piece, "type" if name == "kind" else name) for name in _MAP_COLUMNS}


def write_maps(conn: Connection, project_id: str, added: list[Mapped], gone: set[MapKey]) -> None:
    """Bring the map pieces up to date after signals were stored (``added``, of human sessions) or
    deleted (their path-day-kinds ``gone``, computed again from the signals now stored)."""
    t, s = heat_signal_cells.c, heat_signals.c
    for pkey, day, kind in sorted(gone):
        mine = (t.project_id == project_id, t.path_key == pkey, t.day == day, t.kind == kind)
        conn.execute(sa.delete(heat_signal_cells).where(*mine))
        where = [s.path_key == pkey, unindexed(s.kind) == kind, s.ts.between(day * DAY_MS, (day + 1) * DAY_MS - 1)]
        _insert_maps(conn, project_id, signal_maps.pieces(_mapped(conn, project_id, where)))
    fresh = {
        _piece_key(p): p for p in signal_maps.pieces(r for r in added if map_key(r.kind, r.path_key, r.ts) not in gone)
    }
    if not fresh:
        return
    # An empty piece for each new key first, so that concurrent settles lock the same rows.
    empty = insert_ignore(conn.dialect.name, heat_signal_cells, _MAP_KEY)
    conn.execute(empty, [{**dict(zip(_MAP_KEY, (project_id, *key), strict=True)), "n": 0} for key in sorted(fresh)])
    keys = sorted(fresh)
    stmt = sa.select(*(t[name] for name in _MAP_COLUMNS)).where(t.project_id == project_id)
    if conn.dialect.name != "sqlite":
        stmt = stmt.with_for_update()
    found = (_map_piece(row) for row in select_keyed(conn, stmt, heat_signal_cells, _MAP_KEY[1:], keys))
    stored = {_piece_key(piece): piece for piece in found}
    update = (
        sa.update(heat_signal_cells)
        .where(t.project_id == project_id, *(t[name] == sa.bindparam("k_" + name) for name in _MAP_KEY[1:]))
        .values(**{name: sa.bindparam("v_" + name) for name in ("n", "first_seq", "max_y", "cells")})
    )
    params = []
    for key in keys:
        values = _map_values(signal_maps.combined(stored.get(key), fresh[key]))
        params.append({("k_" if name in _MAP_KEY else "v_") + name: value for name, value in values.items()})
    conn.execute(update, params)


def _piece_key(piece: AggregateRow) -> tuple[Any, ...]:
    return (piece.path_key, piece.day, piece.type, piece.bucket_w, piece.bucket_h, piece.view_w)


def _map_piece(row: Any) -> AggregateRow:
    return signal_maps.stored_piece(*row)


def read_maps(
    conn: Connection, project_id: str, paths: PathSet, days: tuple[int, int], kind: str
) -> list[AggregateRow]:
    """The map pieces of one kind of these paths and whole days."""
    t = heat_signal_cells.c
    stmt = sa.select(*(t[name] for name in _MAP_COLUMNS)).where(
        t.project_id == project_id, t.day.between(*days), *path_clauses(heat_signal_cells, paths, exact=False)
    )
    stmt = stmt.where((unindexed(t.kind) if paths is not None else t.kind) == kind, t.n > 0)
    return [_map_piece(row) for row in conn.execute(stmt)]


def forget(conn: Connection, project_id: str, session_ids: list[str]) -> None:
    """Drop the stored signals of these sessions (the caller marks them pending)."""
    for start in range(0, len(session_ids), 500):
        chunk = session_ids[start : start + 500]
        conn.execute(
            sa.delete(heat_signals).where(heat_signals.c.project_id == project_id, heat_signals.c.session_id.in_(chunk))
        )


def range_clauses(table: sa.Table, flt: EventFilter) -> list[Any]:
    """The clauses of ``flt``'s project, path and time range on a table of stored signals (or rage clicks)."""
    t = table.c
    clauses: list[Any] = [t.project_id == flt.project_id]
    clauses += path_clauses(table, flt.path_set)
    clauses += traffic_clauses(t.session_id, flt.project_id, flt.traffic)
    if flt.ts_from is not None:
        clauses.append(t.ts >= flt.ts_from)
    if flt.ts_to is not None:
        clauses.append(t.ts <= flt.ts_to)
    return clauses


def read(conn: Connection, flt: EventFilter, kind: str) -> list[Signal]:
    """The stored signals of one kind in ``flt`` in ``(ts, seq)`` order."""
    s = heat_signals.c
    # With a path, its index (a kind's index read every path's signals of the kind: 251 -> 41 ms).
    kind_of = s.kind if flt.path_set is None else unindexed(s.kind)
    stmt = sa.select(*_SIGNAL_COLUMNS).where(*range_clauses(heat_signals, flt), kind_of == kind).order_by(s.ts, s.seq)
    return [Signal(*row) for row in conn.execute(stmt)]


def path_counts(conn: Connection, flt: EventFilter) -> dict[tuple[str, str], int]:
    """``{(path, kind): signals}`` of ``flt``'s range, rage clicks as kind ``rage``: the counts of its
    whole days and the signal rows of the rest (signal_counts.in_range)."""
    c = heat_signal_counts.c

    def stored(days: tuple[int, int]) -> dict[tuple[str, str], int]:
        stmt = (
            sa.select(c.path, c.kind, sa.func.sum(c.n))
            .where(c.project_id == flt.project_id, c.bucket_w == ALL_WIDTHS, c.day.between(*days))
            .where(*path_clauses(heat_signal_counts, flt.path_set))
            .group_by(c.path_key, c.path, c.kind)
        )
        return {(str(path), str(kind)): int(n) for path, kind, n in conn.execute(stmt)}

    return in_range(flt, stored, lambda part: _raw_path_counts(conn, part))


def _raw_path_counts(conn: Connection, flt: EventFilter) -> dict[tuple[str, str], int]:
    s, r = heat_signals.c, heat_rage_clicks.c
    found: dict[tuple[str, str], int] = {}
    # Every kind named: without a path, the range is read by (project, kind, ts), not every signal
    # of the project through the path index.
    stmt = (
        sa.select(s.path, s.kind, sa.func.count())
        .where(*range_clauses(heat_signals, flt), s.kind.in_(KINDS))
        .group_by(s.path, s.kind)
    )
    for path, kind, n in conn.execute(stmt):
        found[(str(path), str(kind))] = int(n)
    rage = sa.select(r.path, sa.func.count()).where(*range_clauses(heat_rage_clicks, flt)).group_by(r.path_key, r.path)
    for path, n in conn.execute(rage):
        found[(str(path), RAGE)] = int(n)
    return found


def selector_counts(conn: Connection, flt: EventFilter, width: int | None = None) -> dict[tuple[str, str], int]:
    """``{(selector, kind): n}`` of the signals and rage clicks (kind ``rage``) with a selector in
    ``flt`` (of bucket width ``width`` when given): the counts of its whole days and the signal rows of
    the rest (signal_counts.in_range)."""
    c = heat_signal_counts.c

    def stored(days: tuple[int, int]) -> dict[tuple[str, str], int]:
        # The path's key (the band's index would read every path's counts of the band).
        band = c.bucket_w + 0 != ALL_WIDTHS if width is None else c.bucket_w + 0 == width
        stmt = (
            sa.select(c.selector, c.kind, sa.func.sum(c.n))
            .where(c.project_id == flt.project_id, band, c.day.between(*days))
            .where(*path_clauses(heat_signal_counts, flt.path_set))
            .group_by(c.selector_key, c.selector, c.kind)
        )
        return {(str(sel), str(kind)): int(n) for sel, kind, n in conn.execute(stmt)}

    return in_range(flt, stored, lambda part: _raw_selector_counts(conn, part, width))


def _raw_selector_counts(conn: Connection, flt: EventFilter, width: int | None) -> dict[tuple[str, str], int]:
    found: dict[tuple[str, str], int] = {}
    for table in (heat_signals, heat_rage_clicks):
        t = table.c
        clauses = [*range_clauses(table, flt), t.selector.is_not(None), t.selector != ""]
        if width is not None:
            clauses.append(t.bucket_w == width)
        kind = [t.kind] if table is heat_signals else []
        stmt = sa.select(t.selector, *kind, sa.func.count()).where(*clauses).group_by(t.selector, *kind)
        for sel, *named, n in conn.execute(stmt):
            found[(str(sel), str(named[0]) if named else RAGE)] = int(n)
    return found


def having(project_id: str, kind: str, session_column: Any) -> Any:
    """A clause: the session of ``session_column`` has at least one signal of ``kind`` (``rage`` too)."""
    if kind == RAGE:
        r = heat_rage_clicks.c
        return sa.exists().where(r.project_id == project_id, r.session_id == session_column)
    s = heat_signals.c
    return sa.exists().where(s.project_id == project_id, s.session_id == session_column, s.kind == kind)


def session_counts(conn: Connection, project_id: str, session_ids: list[str]) -> dict[str, dict[str, int]]:
    """``{session: {kind: signals}}`` of these sessions (rage clicks as ``rage``), in one query."""
    if not session_ids:
        return {}
    s, r = heat_signals.c, heat_rage_clicks.c
    ids = sorted(set(session_ids))
    signals = sa.select(s.session_id, s.kind, sa.func.count()).where(s.project_id == project_id, s.session_id.in_(ids))
    rage = sa.select(r.session_id, sa.literal(RAGE, sa.String(16)), sa.func.count()).where(
        r.project_id == project_id, r.session_id.in_(ids)
    )
    stmt = sa.union_all(signals.group_by(s.session_id, s.kind), rage.group_by(r.session_id))
    found: dict[str, dict[str, int]] = defaultdict(dict)
    for sid, kind, n in conn.execute(stmt):
        found[str(sid)][str(kind)] = int(n)
    return dict(found)
