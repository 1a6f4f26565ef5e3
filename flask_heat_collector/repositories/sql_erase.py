"""Erasure on the SQL backends: delete events in chunks and correct everything they added up to.

Each chunk is one transaction: the chunk's events are deleted, every aggregate key-day they touched
is computed again from the rows that remain (on PostgreSQL and MySQL in one REPEATABLE READ snapshot,
deleting only the pieces seen in it, so pieces that concurrent batches add are kept), and the
counters of the sessions that keep other events are corrected.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..aggregates import DAY_MS, day_of, is_rolled, merge_pieces, pieces, rollup
from ..ingest import path_key
from . import sql_rage, sql_reports
from .base import LONG_MOVE_MS, AggregateKey, ErasedCounts, Erasure, EventRow
from .sql_compaction import drop_months_before, unroll_month
from .sql_ingest import IngestStatements, after_key, crossing, executemany, forget_long_moves, upsert
from .sql_schema import (
    ROLLUP_FIELDS,
    events,
    heat_aggregates,
    heat_report_pieces,
    projects,
    sessions,
    traffic_clauses,
    users,
)

CHUNK = 1000
_SCAN = 5000
_PIECE_KEY = ("path_key", "type", "bucket_w", "bucket_h", "view_w", "day")
_EXTERNAL_ID_LENGTH = cast(sa.String, users.c.external_id.type).length or 0


class PiecesChanged(Exception):
    """A concurrent compaction replaced pieces this transaction saw: run the chunk again."""


def user_ids(conn: Connection, project_id: str, user: str, *, live: bool = False) -> list[str]:
    """Internal ids of the user known as ``user`` (the SDK/JWT id, or the internal id); with ``live``
    only those not erased (a tombstone is no user)."""
    stmt = sa.select(users.c.id).where(
        users.c.project_id == project_id, sa.or_(users.c.id == user, users.c.external_id == user)
    )
    if live:
        stmt = stmt.where(users.c.erased_at.is_(None))
    return sorted(str(i) for i in conn.execute(stmt).scalars())


def claim(conn: Connection, project_id: str, user: str, now: int) -> int:
    """Mark the user erased (the tombstone: ids kept, traits gone) before anything is deleted; how many
    users were live.

    ``user`` is marked as an SDK/JWT id (a row is made when none has it) and as an internal id. The
    upsert and the update wait for every batch of the user whose transaction holds the row, and each
    later batch reads the mark in the transaction that would store it (sql_ingest): from the commit
    of this transaction on, nothing of the user is stored.
    """
    new_id = str(uuid.uuid4())
    if len(user) <= _EXTERNAL_ID_LENGTH:  # longer, no batch can name it: only an internal id to mark
        tombstone = upsert(
            conn.dialect.name,
            users,
            ["project_id", "external_id"],
            lambda new: {
                "erased_at": sa.case((users.c.erased_at.is_(None), new.erased_at), else_=users.c.erased_at),
                "traits_json": None,
            },
        )
        conn.execute(
            tombstone,
            {"id": new_id, "project_id": project_id, "external_id": user, "created_at": now, "erased_at": now},
        )
    named = (users.c.project_id == project_id, sa.or_(users.c.id == user, users.c.external_id == user))
    conn.execute(sa.update(users).where(*named, users.c.erased_at.is_(None)).values(erased_at=now, traits_json=None))
    marked = sa.select(sa.func.count()).where(*named, users.c.erased_at == now, users.c.id != new_id)
    return int(conn.execute(marked).scalar() or 0)


def session_ids(conn: Connection, project_id: str, ids: list[str]) -> tuple[list[str], list[str]]:
    """``(owned, touched)`` of the users ``ids``: the sessions whose user is one of them (their events
    sent without a user are theirs too), and every session they sent an event in or whose row their
    batch made (a browser session may change hands)."""
    if not ids:
        return [], []
    sent = sa.select(events.c.session_id).where(events.c.project_id == project_id, events.c.user_id.in_(ids))
    stmt = sa.select(sessions.c.id, sessions.c.user_id).where(
        sessions.c.project_id == project_id,
        sa.or_(sessions.c.user_id.in_(ids), sessions.c.first_user_id.in_(ids), sessions.c.id.in_(sent)),
    )
    found = conn.execute(stmt).all()
    return sorted(str(r.id) for r in found if r.user_id in ids), sorted(str(r.id) for r in found)


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
    """The clause selecting the erased events of ``erasure`` (``sids``: the sessions the users own)."""
    where = [events.c.project_id == erasure.project_id]
    if erasure.before is not None:
        where.append(events.c.ts < erasure.before)
    if erasure.session_id is not None:
        where.append(events.c.session_id == erasure.session_id)
    if erasure.user is not None:  # the user's batches, and those without a user in their sessions
        anonymous = sa.and_(events.c.user_id.is_(None), events.c.session_id.in_(sids or [""]))
        where.append(sa.or_(events.c.user_id.in_(uids or [""]), anonymous))
    return sa.and_(*where)


def after_event(after: tuple[int, int, str]) -> Any:
    """Events after ``(ts, seq, event_id)`` in that order: a unique key, so events of two processes that
    tie on (ts, seq) are each read once (paging on (ts, seq) alone skipped the second)."""
    ts, seq, event_id = after
    return sa.and_(
        events.c.ts >= ts,
        sa.or_(events.c.ts > ts, events.c.seq > seq, sa.and_(events.c.seq == seq, events.c.event_id > event_id)),
    )


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
            kind, bw, bh, vw = str(row.type), int(row.bucket_w), int(row.bucket_h), int(row.view_w)
            keys.add(AggregateKey(path_key(str(row.path)), kind, bw, bh, vw, day))
    return keys


def delete_chunk(conn: Connection, st: IngestStatements, project_id: str, rows: list[Any]) -> None:
    """Delete ``rows`` (events of one project), correcting aggregates and session counters."""
    ids = [str(r.event_id) for r in rows]
    done = conn.execute(sa.delete(events).where(events.c.project_id == project_id, events.c.event_id.in_(ids)))
    if done.rowcount != len(ids):
        raise PiecesChanged()  # a concurrent erase took some: start the chunk again
    forget_long_moves(conn, project_id, rows)
    max_span = int(conn.execute(sa.select(projects.c.max_span).where(projects.c.id == project_id)).scalar() or 0)
    for key in sorted(touched(rows)):
        rebuild_key_day(conn, st, project_id, max_span, key)
    sql_reports.rebuild_key_days(conn, project_id, max_span, {(k.path_key, k.day, k.bucket_w) for k in touched(rows)})
    counts: dict[str, int] = {}
    for row in rows:
        counts[str(row.session_id)] = counts.get(str(row.session_id), 0) + int(row.row_count)
    for session_id, removed in sorted(counts.items()):
        _correct_session(conn, project_id, session_id, removed)
    sql_rage.forget(conn, project_id, list(counts))


def rebuild_key_day(conn: Connection, st: IngestStatements, project_id: str, max_span: int, key: AggregateKey) -> None:
    """Replace the pieces of one key-day seen by this transaction by one computed from its rows."""
    start = key.day * DAY_MS
    low = start - min(max_span, LONG_MOVE_MS)
    same = (
        events.c.project_id == project_id,
        events.c.path_key == key.path_key,
        events.c.type == key.type,
        events.c.bucket_w == key.bucket_w,
        events.c.bucket_h == key.bucket_h,
        events.c.view_w == key.view_w,
        *traffic_clauses(events.c.session_id, project_id, "human"),  # bots add to no aggregate
    )
    stmt = sa.select(*ROLLUP_FIELDS).where(*same, events.c.ts >= low, events.c.ts < start + DAY_MS)
    rows = [EventRow(*r) for r in conn.execute(stmt)]
    if max_span > LONG_MOVE_MS:  # and the long moves reaching into the day from before
        stmt = sa.select(*ROLLUP_FIELDS).where(*same, crossing(project_id, low, start))
        rows += [EventRow(*r) for r in conn.execute(stmt)]
    piece_key = (key.day, key.type, key.bucket_w, key.bucket_h, key.view_w)
    stats = rollup(rows, ts_range=(start, start + DAY_MS - 1)).get(piece_key)
    match = [heat_aggregates.c.project_id == project_id] + [
        heat_aggregates.c[name] == value for name, value in zip(_PIECE_KEY, key, strict=True)
    ]
    seen = list(conn.execute(sa.select(heat_aggregates.c.part).where(*match)).scalars())
    if seen:
        gone = conn.execute(sa.delete(heat_aggregates).where(*match, heat_aggregates.c.part.in_(seen)))
        if gone.rowcount != len(seen):
            raise PiecesChanged()
        if any(is_rolled(part) for part in seen):  # its month piece counted what was deleted
            unroll_month(conn, project_id, key.day, key.path_key, key.type, key.bucket_w, key.bucket_h, key.view_w)
    if stats is not None and stats.n:
        merged = merge_pieces(pieces(key.path_key, {piece_key: stats}, 0))
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


def finish(conn: Connection, erasure: Erasure, uids: list[str], sids: list[str]) -> int:
    """Delete the erased sessions once their events are gone; how many (for a user: ``sids``, the
    sessions they touched, deleted or, holding another user's events, handed over to that user).
    The users stay as tombstones."""
    pid = erasure.project_id
    if erasure.user is not None:
        return _finish_user_sessions(conn, pid, uids, sids, hand_over=erasure.whole_user)
    doomed: Any = None
    if erasure.session_id is not None:
        doomed = sessions.c.id == erasure.session_id
    elif erasure.before is not None:
        doomed = _emptied_sessions(erasure.before)
    gone = list(conn.execute(sa.select(sessions.c.id).where(sessions.c.project_id == pid, doomed)).scalars())
    removed = conn.execute(sa.delete(sessions).where(sessions.c.project_id == pid, doomed)).rowcount
    sql_reports.forget_ordinals(conn, pid, [str(sid) for sid in gone])
    if erasure.before is not None:  # days wholly before: whatever their pieces hold was erased
        drop_months_before(conn, pid, day_of(erasure.before))
        conn.execute(
            sa.delete(heat_aggregates).where(
                heat_aggregates.c.project_id == pid, heat_aggregates.c.day < day_of(erasure.before)
            )
        )
        conn.execute(
            sa.delete(heat_report_pieces).where(
                heat_report_pieces.c.project_id == pid, heat_report_pieces.c.day < day_of(erasure.before)
            )
        )
    return int(removed)


def _finish_user_sessions(
    conn: Connection, project_id: str, uids: list[str], touched: list[str], *, hand_over: bool
) -> int:
    """Delete the sessions of ``touched`` left without events; with ``hand_over`` (the whole user is
    erased), take out of the others (another user's events remain) what the users' batches put in
    the row."""
    if not touched:
        return 0
    any_event = sa.select(events.c.event_id).where(
        events.c.project_id == sessions.c.project_id, events.c.session_id == sessions.c.id
    )
    where = (sessions.c.project_id == project_id, sessions.c.id.in_(touched))
    gone = list(conn.execute(sa.select(sessions.c.id).where(*where, ~sa.exists(any_event))).scalars())
    removed = int(conn.execute(sa.delete(sessions).where(*where, ~sa.exists(any_event))).rowcount)
    sql_reports.forget_ordinals(conn, project_id, [str(sid) for sid in gone])
    if not hand_over:
        return removed
    kept = conn.execute(sa.select(sessions.c.id, sessions.c.user_id, sessions.c.first_user_id).where(*where)).all()
    for row in kept:
        in_session = (events.c.project_id == project_id, events.c.session_id == row.id)
        values: dict[str, Any] = {}
        if row.user_id in uids:  # the last user of the events left
            latest = sa.select(events.c.user_id).where(*in_session, events.c.user_id.is_not(None))
            values["user_id"] = conn.execute(latest.order_by(events.c.seq.desc()).limit(1)).scalar()
        if (row.first_user_id or row.user_id) in uids:  # the row was made by their batch
            first = sa.select(events.c.path).where(*in_session).order_by(events.c.ts, events.c.seq).limit(1)
            values.update(
                first_user_id=None,
                user_agent=None,
                device_json=None,
                ip_hash=None,
                first_path=conn.execute(first).scalar(),
            )
        if values:
            conn.execute(
                sa.update(sessions).where(sessions.c.project_id == project_id, sessions.c.id == row.id).values(**values)
            )
    return removed + len(kept)


def _emptied_sessions(before: int) -> Any:
    """Sessions started before ``before`` with no event at or after it: nothing of them would remain."""
    later = sa.select(events.c.event_id).where(
        events.c.project_id == sessions.c.project_id,
        events.c.session_id == sessions.c.id,
        events.c.ts >= before,
    )
    return sa.and_(sessions.c.started_at < before, ~sa.exists(later))


def count(conn: Connection, erasure: Erasure, uids: list[str], sids: list[str], touched: list[str]) -> ErasedCounts:
    """What ``erasure`` finds: users, sessions (of a user: those they touched) and event rows (a move
    counts its points)."""
    rows = conn.execute(
        sa.select(sa.func.coalesce(sa.func.sum(events.c.row_count), 0)).where(key_columns(erasure, uids, sids))
    ).scalar()
    if erasure.user is not None:
        found_sessions = len(touched)
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
    live = 0
    if uids:
        live = int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    users.c.project_id == erasure.project_id, users.c.id.in_(uids), users.c.erased_at.is_(None)
                )
            ).scalar()
            or 0
        )
    return ErasedCounts(users=live, sessions=found_sessions, events=int(rows or 0))


def left_over(conn: Connection, erasure: Erasure, uids: list[str], sids: list[str]) -> bool:
    """True when something ``erasure`` named is left: a live user, a session of theirs or the named
    one, an event of theirs (``sids``: the sessions they own) or of the named session."""
    pid = erasure.project_id
    events_left = conn.execute(sa.select(events.c.event_id).where(key_columns(erasure, uids, sids)).limit(1)).first()
    sessions_left = (
        erasure.session_id is not None
        and conn.execute(
            sa.select(sessions.c.id).where(sessions.c.project_id == pid, sessions.c.id == erasure.session_id)
        ).first()
    )
    # The user's: a session of theirs (one opened by a batch that raced the erase too) or whose row
    # their batch made, or a user not marked erased (or holding traits again).
    theirs = sa.or_(sessions.c.user_id.in_(uids), sessions.c.first_user_id.in_(uids))
    whole = bool(uids) and erasure.whole_user  # else the user and their later data stay, by design
    users_sessions = (
        whole and conn.execute(sa.select(sessions.c.id).where(sessions.c.project_id == pid, theirs).limit(1)).first()
    )
    users_left = (
        whole
        and conn.execute(
            sa.select(users.c.id)
            .where(
                users.c.project_id == pid,
                users.c.id.in_(uids),
                sa.or_(users.c.erased_at.is_(None), users.c.traits_json.is_not(None)),
            )
            .limit(1)
        ).first()
    )
    return bool(events_left or sessions_left or users_sessions or users_left)
