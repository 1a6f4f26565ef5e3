"""Retention on the SQL backends: delete what is older than a cutoff in short transactions.

Events wholly before the cutoff go in (ts, seq) chunks, each chunk with the counters of its
sessions; then the sessions and users left with nothing, then the old aggregate pieces. Rows are
locked (``FOR UPDATE``) before a delete looks again, so a batch stored meanwhile is never lost.
Aggregates are not recomputed: they keep old heatmaps after the raw rows are gone.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..aggregates import MONTH_BASE, month_code
from . import sql_rage
from .base import PurgeCounts
from .sql_erase import PiecesChanged, _correct_session
from .sql_ingest import after_key, forget_long_moves
from .sql_schema import events, heat_aggregates, projects, sessions, users

SessionKey = tuple[int, str]


def _old_events(project_id: str, before: int) -> Any:
    """Events whose last item is before ``before`` (a move reaching into the window is kept)."""
    return sa.and_(events.c.project_id == project_id, events.c.ts < before, events.c.ts + events.c.span < before)


def _max_span(conn: Connection, project_id: str) -> int:
    return int(conn.execute(sa.select(projects.c.max_span).where(projects.c.id == project_id)).scalar() or 0)


def _kept(project_id: str, before: int, max_span: int) -> Any:
    """A session (of the outer query) that keeps an event: one whose last item is at or after ``before``."""
    later = sa.select(events.c.event_id).where(
        events.c.project_id == project_id,
        events.c.session_id == sessions.c.id,
        events.c.ts >= before - max_span,
        events.c.ts + events.c.span >= before,
    )
    return sa.exists(later)


def _emptied(project_id: str, before: int, max_span: int) -> Any:
    """Sessions started before ``before`` that keep no event."""
    return sa.and_(
        sessions.c.project_id == project_id, sessions.c.started_at < before, ~_kept(project_id, before, max_span)
    )


def _lonely(project_id: str, before: int) -> Any:
    """Users created before ``before`` with no session."""
    theirs = sa.select(sessions.c.id).where(sessions.c.project_id == project_id, sessions.c.user_id == users.c.id)
    return sa.and_(
        users.c.project_id == project_id,
        users.c.created_at < before,
        users.c.erased_at.is_(None),  # a tombstone lives its own time (tombstones())
        ~sa.exists(theirs),
    )


def tombstones(conn: Connection, project_id: str, before: int, dry_run: bool) -> int:
    """Delete (or count) the tombstones of users erased before ``before``: their batches are stored again."""
    expired = (users.c.project_id == project_id, users.c.erased_at < before)
    if dry_run:
        return int(conn.execute(sa.select(sa.func.count()).where(*expired)).scalar() or 0)
    return int(conn.execute(sa.delete(users).where(*expired)).rowcount)


def delete_events(
    conn: Connection, project_id: str, before: int, after: tuple[int, int] | None, chunk: int
) -> tuple[int, int, tuple[int, int] | None]:
    """Delete the next chunk of old events and correct their sessions: ``(rows, events, last key)``."""
    t = events.c
    stmt = sa.select(t.event_id, t.session_id, t.row_count, t.ts, t.seq, t.span).where(_old_events(project_id, before))
    if after is not None:
        stmt = stmt.where(after_key(after))
    found = conn.execute(stmt.order_by(events.c.ts, events.c.seq).limit(chunk)).all()
    if not found:
        return 0, 0, None
    ids = [str(r.event_id) for r in found]
    done = conn.execute(
        sa.delete(events).where(events.c.project_id == project_id, events.c.event_id.in_(ids), events.c.ts < before)
    )
    if done.rowcount != len(ids):
        raise PiecesChanged()  # another purge took some: this chunk starts again
    forget_long_moves(conn, project_id, found)
    removed: dict[str, int] = {}
    for r in found:
        removed[str(r.session_id)] = removed.get(str(r.session_id), 0) + int(r.row_count)
    locked = conn.execute(
        sa.select(sessions.c.id, sessions.c.last_ts)
        .where(sessions.c.project_id == project_id, sessions.c.id.in_(sorted(removed)))
        .order_by(sessions.c.id)
        .with_for_update()
    ).all()
    plain = []
    for row in locked:
        if row.last_ts is not None and int(row.last_ts) >= before:  # its last event is kept
            plain.append({"b_pid": project_id, "b_sid": str(row.id), "b_n": removed[str(row.id)]})
        else:
            _correct_session(conn, project_id, str(row.id), removed[str(row.id)])
    if plain:
        conn.execute(
            sa.update(sessions)
            .where(sessions.c.project_id == sa.bindparam("b_pid"), sessions.c.id == sa.bindparam("b_sid"))
            .values(event_count=sessions.c.event_count - sa.bindparam("b_n")),
            plain,
        )
    sql_rage.forget(conn, project_id, list(removed))
    last = found[-1]
    return sum(removed.values()), len(found), (int(last.ts), int(last.seq))


def delete_sessions(
    conn: Connection, project_id: str, before: int, after: SessionKey | None, chunk: int
) -> tuple[int, int, SessionKey | None]:
    """Delete the next chunk of emptied sessions: ``(deleted, found, last key)``."""
    emptied = _emptied(project_id, before, _max_span(conn, project_id))
    stmt = sa.select(sessions.c.started_at, sessions.c.id).where(emptied)
    if after is not None:
        stmt = stmt.where(sa.tuple_(sessions.c.started_at, sessions.c.id) > sa.tuple_(*after))
    found = conn.execute(stmt.order_by(sessions.c.started_at, sessions.c.id).limit(chunk).with_for_update()).all()
    if not found:
        return 0, 0, None
    ids = [str(r.id) for r in found]  # locked: a batch of one waits, then finds it gone and starts it anew
    gone = conn.execute(sa.delete(sessions).where(sessions.c.id.in_(ids), emptied)).rowcount
    return int(gone), len(found), (int(found[-1].started_at), str(found[-1].id))


def delete_users(
    conn: Connection, project_id: str, before: int, after: str | None, chunk: int
) -> tuple[int, int, str | None]:
    """Delete the next chunk of users left without sessions: ``(deleted, found, last id)``."""
    lonely = _lonely(project_id, before)
    stmt = sa.select(users.c.id).where(lonely)
    if after is not None:
        stmt = stmt.where(users.c.id > after)
    found = list(conn.execute(stmt.order_by(users.c.id).limit(chunk).with_for_update()).scalars())
    if not found:
        return 0, 0, None
    gone = conn.execute(sa.delete(users).where(users.c.id.in_(found), lonely)).rowcount
    return int(gone), len(found), str(found[-1])


def delete_aggregates(
    conn: Connection, project_id: str, before_day: int, chunk: int, table: sa.Table = heat_aggregates
) -> int | None:
    """Delete about ``chunk`` pieces of the earliest old day (whole path keys) of ``table`` (the heatmap
    aggregates, or the report pieces: both keyed by project, path key and day); ``None`` when none are left."""
    t = table.c
    key = (t.project_id == project_id, t.day < before_day)
    day = conn.execute(sa.select(sa.func.min(t.day)).where(*key)).scalar()
    if day is None:
        return None
    same_day = (t.project_id == project_id, t.day == day)
    keys = conn.execute(sa.select(t.path_key).where(*same_day).order_by(t.path_key).limit(chunk)).all()
    if not keys:
        return 0
    top = int(keys[-1].path_key)
    return int(conn.execute(sa.delete(table).where(*same_day, t.path_key <= top)).rowcount)


def count(conn: Connection, project_id: str, raw_before: int | None, aggregates_before_day: int | None) -> PurgeCounts:
    """What a purge of one project would remove now."""
    found = PurgeCounts()
    if raw_before is not None:
        rows = conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(events.c.row_count), 0)).where(_old_events(project_id, raw_before))
        ).scalar()
        max_span = _max_span(conn, project_id)
        doomed = conn.execute(sa.select(sa.func.count()).where(_emptied(project_id, raw_before, max_span))).scalar()
        surviving = sa.select(sessions.c.id).where(
            sessions.c.project_id == project_id,
            sessions.c.user_id == users.c.id,
            sa.or_(sessions.c.started_at >= raw_before, _kept(project_id, raw_before, max_span)),
        )
        lonely = conn.execute(
            sa.select(sa.func.count()).where(
                users.c.project_id == project_id,
                users.c.created_at < raw_before,
                users.c.erased_at.is_(None),
                ~sa.exists(surviving),
            )
        ).scalar()
        found = PurgeCounts(events=int(rows or 0), sessions=int(doomed or 0), users=int(lonely or 0))
    if aggregates_before_day is not None:
        day = heat_aggregates.c.day  # day pieces before it, month pieces of the months starting before it
        old = sa.or_(day < aggregates_before_day, sa.and_(day >= MONTH_BASE, day < month_code(aggregates_before_day)))
        pieces = conn.execute(
            sa.select(sa.func.count()).where(heat_aggregates.c.project_id == project_id, old)
        ).scalar()
        found = found + PurgeCounts(aggregates=int(pieces or 0))
    return found
