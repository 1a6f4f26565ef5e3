"""Rage clicks on the SQL backends (rageclicks.py): the pending marks ingest writes, settling a
pending session, and the reads of the reports. The mark also stands for the session's other
signals (signals.py), settled in the same transaction (sql_signals.py)."""

from __future__ import annotations

from itertools import groupby

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..rageclicks import RageRule, new_token, rage_row, rotated, settle
from ..signal_counts import Counted, changes
from ..signals import DEFAULT_RULES, RAGE, SIGNAL_TYPES, SignalRules
from . import sql_signals
from .base import EventFilter, EventRow
from .sql_ingest import executemany, insert_ignore, rage_mark_sql
from .sql_schema import delete_keyed, events, heat_rage_clicks, heat_rage_pending, projects, session_types

SETTLE_CHUNK = 100  # sessions settled in one transaction
_RAGE_FIELDS = (
    "event_id", "seq", "session_id", "ts", "path", "path_key", "selector", "x", "y", "bucket_w", "bucket_h", "view_w"
)  # fmt: skip
_CLICK_COLUMNS = [events.c[name] for name in _RAGE_FIELDS]
_RAGE_COLUMNS = [heat_rage_clicks.c[name] for name in _RAGE_FIELDS]


def mark(conn: Connection, project_id: str, session_ids: list[str]) -> None:
    """Mark these sessions pending (their clicks changed) with a new token."""
    if session_ids:
        params = [(project_id, sid, new_token()) for sid in sorted(set(session_ids))]
        executemany(conn, rage_mark_sql(conn.dialect), params)


def forget(conn: Connection, project_id: str, session_ids: list[str]) -> None:
    """Drop the stored rage clicks and signals of these sessions (some of their events are being
    deleted) and mark them pending, so the next settle decides again from the rows left."""
    ids = sorted(set(session_ids))
    mark(conn, project_id, ids)  # the marks first: a settle locks them before the rage clicks
    bots = sql_signals.bots_among(conn, project_id, ids)
    counted = list(sql_signals.stored_counted(conn, project_id, [sid for sid in ids if sid not in bots]))
    sql_signals.count(conn, project_id, changes([], counted))
    sql_signals.forget(conn, project_id, ids)
    sql_signals.write_maps(conn, project_id, [], sql_signals.gone_maps(counted))
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        conn.execute(
            sa.delete(heat_rage_clicks).where(
                heat_rage_clicks.c.project_id == project_id, heat_rage_clicks.c.session_id.in_(chunk)
            )
        )


def mark_all(conn: Connection, project_id: str | None = None) -> None:
    """Mark every session with a row of signals.SIGNAL_TYPES pending (after a bulk load or when the
    tables are new)."""
    found = sa.select(events.c.project_id, events.c.session_id, sa.literal(1, sa.BigInteger)).where(
        events.c.type.in_(SIGNAL_TYPES)
    )
    if project_id is not None:
        found = found.where(events.c.project_id == project_id)
    stmt = insert_ignore(conn.dialect.name, heat_rage_pending, ["project_id", "session_id"])
    conn.execute(stmt.from_select(["project_id", "session_id", "token"], found.distinct()))


def pending(conn: Connection, project_id: str | None, limit: int) -> list[tuple[str, str]]:
    """Up to ``limit`` pending ``(project, session)`` pairs (of one project when given), in order."""
    t = heat_rage_pending.c
    stmt = sa.select(t.project_id, t.session_id)
    if project_id is not None:
        stmt = stmt.where(t.project_id == project_id)
    found = conn.execute(stmt.order_by(t.project_id, t.session_id).limit(limit))
    return [(str(r[0]), str(r[1])) for r in found]


def settle_idle(conn: Connection, before: int, limit: int, rule: RageRule, signals: SignalRules) -> int:
    """Settle, in this transaction, up to ``limit`` pending sessions whose mark's token is below
    ``before`` (rageclicks.idle_token), the longest idle of each project first, project after project
    from a random one (every key leads with the project: one index range per project); marks another
    settle holds are skipped, not waited for (workers settling at once take different sessions)."""
    t = heat_rage_pending.c
    done = 0
    for pid in rotated(conn.execute(sa.select(projects.c.id).order_by(projects.c.id)).scalars()):
        pick = sa.select(t.session_id).where(t.project_id == pid, t.token < before).order_by(t.token)
        pick = pick.limit(limit - done)
        if conn.dialect.name != "sqlite":  # SQLite's writers take turns already
            pick = pick.with_for_update(skip_locked=True)
        found = sorted(str(sid) for sid in conn.execute(pick).scalars())
        done += settle_sessions(conn, str(pid), found, rule, signals, skip_locked=True) if found else 0
        if done >= limit:
            break
    return done


def settle_sessions(
    conn: Connection,
    project_id: str,
    session_ids: list[str],
    rule: RageRule,
    signals: SignalRules = DEFAULT_RULES,
    skip_locked: bool = False,
) -> int:
    """Settle these pending sessions of one project in this transaction (their rage clicks and their
    other signals); the sessions settled.

    Their marks are locked first (in order), so a concurrent settle waits and then finds them gone
    (``skip_locked``: leaves them to it, as the workers' background settles do), and a batch
    committing meanwhile waits to mark its session again; a mark whose token changed after it was
    read stays for the next settle.
    """
    t = heat_rage_pending.c
    lock = sa.select(t.session_id, t.token).where(t.project_id == project_id, t.session_id.in_(sorted(session_ids)))
    lock = lock.order_by(t.session_id)
    if conn.dialect.name != "sqlite":  # SQLite's writers take turns already
        lock = lock.with_for_update(skip_locked=skip_locked)
    tokens = {str(r[0]): int(r[1]) for r in conn.execute(lock)}
    if not tokens:
        return 0
    ids = sorted(tokens)
    clicks = conn.execute(
        sa.select(*_CLICK_COLUMNS)
        .where(events.c.project_id == project_id, events.c.session_id.in_(ids), session_types("click"))
        .order_by(events.c.session_id, events.c.ts, events.c.seq)
    ).all()
    r = heat_rage_clicks.c
    stored: dict[str, list[str]] = {}
    removed: list[tuple[str, str]] = []  # rows settled before the exact width was kept: written again
    counted: dict[tuple[str, str], Counted] = {}
    for sid, eid, view_w, *rest in conn.execute(
        sa.select(r.session_id, r.event_id, r.view_w, r.path, r.path_key, r.ts, r.bucket_w, r.selector).where(
            r.project_id == project_id, r.session_id.in_(ids)
        )
    ):
        counted[(str(sid), str(eid))] = Counted(RAGE, *rest)
        if view_w is None:
            removed.append((str(sid), str(eid)))
        else:
            stored.setdefault(str(sid), []).append(str(eid))
    added: list[EventRow] = []
    by_session = {sid: [rage_row(*row) for row in rows] for sid, rows in groupby(clicks, key=lambda c: str(c[2]))}
    for sid in ids:
        new, gone = settle(by_session.get(sid, []), stored.get(sid, []), rule)
        added += new
        removed += [(sid, eid) for eid in gone]
    delete_keyed(conn, heat_rage_clicks, project_id, ("session_id", "event_id"), removed)
    if added:
        conn.execute(
            sa.insert(heat_rage_clicks),
            [{"project_id": project_id, **{name: getattr(c, name) for name in _RAGE_FIELDS}} for c in added],
        )
    bots = sql_signals.bots_among(conn, project_id, ids)
    more, fewer = sql_signals.settle_sessions(conn, project_id, ids, signals, bots)
    more += [sql_signals.as_counted(RAGE, c) for c in added if c.session_id not in bots]
    fewer += [counted[key] for key in removed if key[0] not in bots]
    sql_signals.count(conn, project_id, changes(more, fewer))
    delete_keyed(conn, heat_rage_pending, project_id, ("session_id", "token"), sorted(tokens.items()))
    return len(ids)


def read(conn: Connection, flt: EventFilter) -> list[EventRow]:
    """The stored rage clicks of ``flt`` in ``(ts, seq)`` order."""
    r = heat_rage_clicks.c
    stmt = sa.select(*_RAGE_COLUMNS).where(*sql_signals.range_clauses(heat_rage_clicks, flt)).order_by(r.ts, r.seq)
    return [rage_row(*row) for row in conn.execute(stmt)]


def left(conn: Connection, project_id: str, session_ids: list[str]) -> bool:
    """Whether any rage click of these sessions is still stored."""
    if not session_ids:
        return False
    r = heat_rage_clicks.c
    stmt = sa.select(r.event_id).where(r.project_id == project_id, r.session_id.in_(sorted(session_ids))).limit(1)
    return conn.execute(stmt).first() is not None
