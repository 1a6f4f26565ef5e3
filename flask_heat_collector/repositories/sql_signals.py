"""Frustration signals on the SQL backends (signals.py): settling a pending session's signals (with
its rage clicks, under the same lock: sql_rage.settle_sessions), and the reads of the reports."""

from __future__ import annotations

from collections import defaultdict
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..signals import RAGE, SIGNAL_FIELDS, SIGNAL_TYPES, SessionRow, Signal, SignalRules, settle
from .base import EventFilter
from .sql_schema import (
    delete_keyed,
    events,
    heat_rage_clicks,
    heat_signals,
    path_clauses,
    session_types,
    traffic_clauses,
    unindexed,
)

_ROW_COLUMNS = [events.c[name] for name in ("session_id", *SessionRow._fields)]
_SIGNAL_COLUMNS = [heat_signals.c[name] for name in SIGNAL_FIELDS]


def settle_sessions(conn: Connection, project_id: str, ids: list[str], rules: SignalRules) -> None:
    """Decide the signals of these sessions (their pending marks locked by the caller) and store the
    difference."""
    rows = conn.execute(
        sa.select(*_ROW_COLUMNS)
        .where(events.c.project_id == project_id, events.c.session_id.in_(ids), session_types(*SIGNAL_TYPES))
        .order_by(events.c.session_id, events.c.ts, events.c.seq)
    ).all()
    s = heat_signals.c
    stored: dict[str, list[tuple[str, str]]] = defaultdict(list)
    removed: list[tuple[str, str, str]] = []  # rows settled before the exact width was kept: written again
    for sid, kind, eid, view_w in conn.execute(
        sa.select(s.session_id, s.kind, s.event_id, s.view_w).where(s.project_id == project_id, s.session_id.in_(ids))
    ):
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
    """``{(path, kind): signals}`` of ``flt``'s range, rage clicks as kind ``rage``, grouped by the database."""
    s, r = heat_signals.c, heat_rage_clicks.c
    found: dict[tuple[str, str], int] = {}
    stmt = (
        sa.select(s.path, s.kind, sa.func.count())
        .where(*range_clauses(heat_signals, flt))
        .group_by(s.path_key, s.path, s.kind)
    )
    for path, kind, n in conn.execute(stmt):
        found[(str(path), str(kind))] = int(n)
    rage = sa.select(r.path, sa.func.count()).where(*range_clauses(heat_rage_clicks, flt)).group_by(r.path_key, r.path)
    for path, n in conn.execute(rage):
        found[(str(path), RAGE)] = int(n)
    return found


def selector_counts(conn: Connection, flt: EventFilter, width: int | None = None) -> dict[tuple[str, str], int]:
    """``{(selector, kind): n}`` of the signals with a selector in ``flt`` (of bucket width ``width``
    when given), grouped by the database."""
    s = heat_signals.c
    clauses = [*range_clauses(heat_signals, flt), s.selector.is_not(None), s.selector != ""]
    if width is not None:
        clauses.append(s.bucket_w == width)
    stmt = sa.select(s.selector, s.kind, sa.func.count()).where(*clauses).group_by(s.selector, s.kind)
    return {(str(sel), str(kind)): int(n) for sel, kind, n in conn.execute(stmt)}


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
