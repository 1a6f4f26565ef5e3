"""Erasure on the SQL backends: delete events in chunks and correct everything they added up to.

Each chunk is one transaction: the chunk's events are deleted, every aggregate key-day they touched
is computed again from the rows that remain (on PostgreSQL and MySQL in one REPEATABLE READ snapshot,
deleting only the pieces seen in it, so pieces that concurrent batches add are kept), and the
counters of the sessions that keep other events are corrected.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..aggregates import DAY_MS, day_of, is_rolled, merge_pieces, pieces, rollup
from ..ingest import path_key
from .base import AggregateKey, ErasedCounts, Erasure, EventRow
from .sql_compaction import drop_months_before, unroll_month
from .sql_ingest import IngestStatements, after_key, executemany
from .sql_migrate import ROLLUP_FIELDS
from .sql_schema import events, heat_aggregates, projects, sessions, users

CHUNK = 1000
_SCAN = 5000
_PIECE_KEY = ("path_key", "type", "bucket_w", "bucket_h", "day")


class PiecesChanged(Exception):
    """A concurrent compaction replaced pieces this transaction saw: run the chunk again."""


def user_ids(conn: Connection, project_id: str, user: str) -> list[str]:
    """Internal ids of the user known as ``user`` (the SDK/JWT id, or the internal id)."""
    stmt = sa.select(users.c.id).where(
        users.c.project_id == project_id, sa.or_(users.c.id == user, users.c.external_id == user)
    )
    return sorted(str(i) for i in conn.execute(stmt).scalars())


def session_ids(conn: Connection, project_id: str, ids: list[str]) -> list[str]:
    if not ids:
        return []
    stmt = sa.select(sessions.c.id).where(sessions.c.project_id == project_id, sessions.c.user_id.in_(ids))
    return sorted(str(i) for i in conn.execute(stmt).scalars())


def user_rows(conn: Connection, project_id: str, uids: list[str]) -> list[dict[str, Any]]:
    """The users' rows as exported: ``{id, externalId, traits, createdAt}``."""
    if not uids:
        return []
    stmt = sa.select(users).where(users.c.project_id == project_id, users.c.id.in_(uids)).order_by(users.c.id)
    return [
        {
            "id": r.id,
            "externalId": r.external_id,
            "traits": json.loads(r.traits_json) if r.traits_json else None,
            "createdAt": int(r.created_at),
        }
        for r in conn.execute(stmt)
    ]


def key_columns(erasure: Erasure, uids: list[str], sids: list[str]) -> Any:
    """The clause selecting the erased events of ``erasure``."""
    where = [events.c.project_id == erasure.project_id]
    if erasure.before is not None:
        where.append(events.c.ts < erasure.before)
    if erasure.session_id is not None:
        where.append(events.c.session_id == erasure.session_id)
    if erasure.user is not None:
        where.append(sa.or_(events.c.user_id.in_(uids or [""]), events.c.session_id.in_(sids or [""])))
    return sa.and_(*where)


def erased_events(conn: Connection, erasure: Erasure, uids: list[str], sids: list[str]) -> Iterator[list[Any]]:
    """The erased events (without JSON), in (ts, seq) pages of at most :data:`CHUNK`."""
    clause = key_columns(erasure, uids, sids)
    after: tuple[int, int] | None = None
    while True:
        stmt = sa.select(*ROLLUP_FIELDS).where(clause)
        if after is not None:
            stmt = stmt.where(after_key(after))
        page = list(conn.execute(stmt.order_by(events.c.ts, events.c.seq).limit(CHUNK)))
        if page:
            yield page
        if len(page) < CHUNK:
            return
        after = (int(page[-1].ts), int(page[-1].seq))


def touched(rows: list[Any]) -> set[AggregateKey]:
    """The aggregate key-days the rows added to (a move: every day its points fall on)."""
    keys: set[AggregateKey] = set()
    for row in rows:
        for day in range(day_of(int(row.ts)), day_of(int(row.ts) + int(row.span)) + 1):
            keys.add(AggregateKey(path_key(str(row.path)), str(row.type), int(row.bucket_w), int(row.bucket_h), day))
    return keys


def delete_chunk(conn: Connection, st: IngestStatements, project_id: str, rows: list[Any]) -> None:
    """Delete ``rows`` (events of one project), correcting aggregates and session counters."""
    ids = [str(r.event_id) for r in rows]
    done = conn.execute(sa.delete(events).where(events.c.project_id == project_id, events.c.event_id.in_(ids)))
    if done.rowcount != len(ids):
        raise PiecesChanged()  # a concurrent erase took some: start the chunk again
    max_span = int(conn.execute(sa.select(projects.c.max_span).where(projects.c.id == project_id)).scalar() or 0)
    for key in sorted(touched(rows)):
        rebuild_key_day(conn, st, project_id, max_span, key)
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.session_id)] = counts.get(str(row.session_id), 0) + int(row.row_count)
    for session_id, removed in sorted(counts.items()):
        _correct_session(conn, project_id, session_id, removed)


def rebuild_key_day(conn: Connection, st: IngestStatements, project_id: str, max_span: int, key: AggregateKey) -> None:
    """Replace the pieces of one key-day seen by this transaction by one computed from its rows."""
    start = key.day * DAY_MS
    stmt = sa.select(*ROLLUP_FIELDS).where(
        events.c.project_id == project_id,
        events.c.path_key == key.path_key,
        events.c.type == key.type,
        events.c.ts >= start - max_span,
        events.c.ts < start + DAY_MS,
        events.c.bucket_w == key.bucket_w,
        events.c.bucket_h == key.bucket_h,
    )
    rows = [EventRow(*r) for r in conn.execute(stmt)]
    stats = rollup(rows, ts_range=(start, start + DAY_MS - 1)).get((key.day, key.type, key.bucket_w, key.bucket_h))
    match = [heat_aggregates.c.project_id == project_id] + [
        heat_aggregates.c[name] == value for name, value in zip(_PIECE_KEY, key, strict=True)
    ]
    seen = list(conn.execute(sa.select(heat_aggregates.c.part).where(*match)).scalars())
    if seen:
        gone = conn.execute(sa.delete(heat_aggregates).where(*match, heat_aggregates.c.part.in_(seen)))
        if gone.rowcount != len(seen):
            raise PiecesChanged()
        if any(is_rolled(part) for part in seen):  # its month piece counted what was deleted
            unroll_month(conn, project_id, key.day, key.path_key, key.type, key.bucket_w, key.bucket_h)
    if stats is not None and stats.n:
        merged = merge_pieces(pieces(key.path_key, {(key.day, key.type, key.bucket_w, key.bucket_h): stats}, 0))
        executemany(conn, st.pieces_sql, st.pieces_params(project_id, merged))


def _correct_session(conn: Connection, project_id: str, session_id: str, removed: int) -> None:
    """Take ``removed`` rows off a session's count and find its last path again."""
    key = (sessions.c.project_id == project_id, sessions.c.id == session_id)
    remaining = conn.execute(
        sa.select(events.c.path, events.c.ts, events.c.span, events.c.seq).where(
            events.c.project_id == project_id, events.c.session_id == session_id
        )
    ).all()
    last = max(remaining, key=lambda r: (int(r.ts) + int(r.span), int(r.seq)), default=None)
    values: dict[str, Any] = {"event_count": sessions.c.event_count - removed}
    if last is not None:
        values.update(last_path=last.path, last_ts=int(last.ts) + int(last.span))
    else:
        values.update(last_path=sessions.c.first_path, last_ts=None)
    conn.execute(sa.update(sessions).where(*key).values(**values))


def finish(conn: Connection, erasure: Erasure, uids: list[str], sids: list[str]) -> tuple[int, int]:
    """Delete the erased sessions and users once their events are gone: ``(sessions, users)``."""
    pid = erasure.project_id
    doomed: Any = None
    if erasure.user is not None:
        doomed = sessions.c.id.in_(sids or [""])
    elif erasure.session_id is not None:
        doomed = sessions.c.id == erasure.session_id
    elif erasure.before is not None:
        doomed = _emptied_sessions(erasure.before)
    removed = conn.execute(sa.delete(sessions).where(sessions.c.project_id == pid, doomed)).rowcount
    gone_users = 0
    if erasure.user is not None and uids:
        gone_users = conn.execute(sa.delete(users).where(users.c.project_id == pid, users.c.id.in_(uids))).rowcount
    if erasure.before is not None:  # days wholly before: whatever their pieces hold was erased
        drop_months_before(conn, pid, day_of(erasure.before))
        conn.execute(
            sa.delete(heat_aggregates).where(
                heat_aggregates.c.project_id == pid, heat_aggregates.c.day < day_of(erasure.before)
            )
        )
    return int(removed), int(gone_users)


def _emptied_sessions(before: int) -> Any:
    """Sessions started before ``before`` with no event at or after it: nothing of them would remain."""
    later = sa.select(events.c.event_id).where(
        events.c.project_id == sessions.c.project_id,
        events.c.session_id == sessions.c.id,
        events.c.ts >= before,
    )
    return sa.and_(sessions.c.started_at < before, ~sa.exists(later))


def count(conn: Connection, erasure: Erasure, uids: list[str], sids: list[str]) -> ErasedCounts:
    """What ``erasure`` finds: users, sessions and event rows (a move counts its points)."""
    rows = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(events.c.row_count), 0)).where(key_columns(erasure, uids, sids))
    ).scalar()
    if erasure.user is not None:
        found_sessions = len(sids)
    elif erasure.session_id is not None:
        found_sessions = int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    sessions.c.project_id == erasure.project_id, sessions.c.id == erasure.session_id
                )
            ).scalar()
            or 0
        )
    else:
        found_sessions = int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    sessions.c.project_id == erasure.project_id, _emptied_sessions(erasure.before or 0)
                )
            ).scalar()
            or 0
        )
    return ErasedCounts(users=len(uids), sessions=found_sessions, events=int(rows or 0))


def left_over(conn: Connection, erasure: Erasure, uids: list[str], sids: list[str]) -> bool:
    """True when nothing ``erasure`` named is left: the users, their or the named session, the events."""
    pid = erasure.project_id
    events_left = conn.execute(sa.select(events.c.event_id).where(key_columns(erasure, uids, sids)).limit(1)).first()
    doomed = [*sids, *([erasure.session_id] if erasure.session_id is not None else [])]
    sessions_left = (
        doomed
        and conn.execute(
            sa.select(sessions.c.id).where(sessions.c.project_id == pid, sessions.c.id.in_(doomed)).limit(1)
        ).first()
    )
    users_left = (
        uids
        and conn.execute(sa.select(users.c.id).where(users.c.project_id == pid, users.c.id.in_(uids)).limit(1)).first()
    )
    return bool(events_left or sessions_left or users_left)
