"""Traffic classes on the SQL backends (traffic.py): decide a session's class again and, when it
changes, move what its rows added (the aggregates and report pieces of every key-day they touch are
computed again from the human sessions' rows, as erase computes them; its signals are settled again)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..aggregates import items
from ..traffic import BOT, TrafficRules, Verdict, verdict
from . import sql_rage, sql_reports
from .base import STORED_FIELDS, EventRow
from .sql_erase import rebuild_key_day, touched
from .sql_ingest import IngestStatements
from .sql_schema import ROLLUP_FIELDS, events, projects, session_types, sessions

CHUNK = 500
_STORED = [events.c[name] for name in STORED_FIELDS]


def candidates(
    conn: Connection, project_id: str | None, after: tuple[str, str] | None, since: int | None, ids: list[str] | None
) -> list[tuple[str, str]]:
    """The next :data:`CHUNK` ``(project, session)`` keys to decide, in key order."""
    s = sessions.c
    stmt = sa.select(s.project_id, s.id)
    if project_id is not None:
        stmt = stmt.where(s.project_id == project_id)
    if ids is not None:
        stmt = stmt.where(s.id.in_(ids or [""]))
    if since is not None:
        stmt = stmt.where(s.last_seen_at >= since)
    if after is not None:
        stmt = stmt.where(sa.or_(s.project_id > after[0], sa.and_(s.project_id == after[0], s.id > after[1])))
    return [(str(p), str(i)) for p, i in conn.execute(stmt.order_by(s.project_id, s.id).limit(CHUNK))]


def decide(conn: Connection, project_id: str, session_id: str, rules: TrafficRules) -> tuple[Verdict, Verdict] | None:
    """``(stored, decided)`` classes of the session (``None`` when it is gone)."""
    s = sessions.c
    row = conn.execute(
        sa.select(s.user_agent, s.device_json, s.traffic, s.traffic_reason).where(
            s.project_id == project_id, s.id == session_id
        )
    ).first()
    if row is None:
        return None
    stored = Verdict(str(row.traffic), row.traffic_reason)
    mine = (events.c.project_id == project_id, events.c.session_id == session_id)
    clicks = [int(ts) for ts in conn.execute(sa.select(events.c.ts).where(*mine, session_types("click"))).scalars()]

    def moves() -> list[int]:
        stmt = sa.select(*_STORED).where(*mine, session_types("move"))
        return [ts for r in conn.execute(stmt) for _, ts, _, _ in items(EventRow(*r))]

    return stored, verdict(row.user_agent, row.device_json, clicks, moves, rules, stored=stored)


def apply(conn: Connection, st: IngestStatements, project_id: str, session_id: str, rules: TrafficRules) -> str | None:
    """Decide one session in this transaction; the new class when it changed (what it added moved)."""
    found = decide(conn, project_id, session_id, rules)
    if found is None:
        return None
    stored, decided = found
    if decided == stored:
        return None
    if (stored.traffic == BOT) != (decided.traffic == BOT):
        # Its signals leave the counts while it still has its old class; the next settle decides
        # them again and counts them if it is human.
        sql_rage.forget(conn, project_id, [session_id])
    key = (sessions.c.project_id == project_id, sessions.c.id == session_id)
    conn.execute(sa.update(sessions).where(*key).values(traffic=decided.traffic, traffic_reason=decided.reason))
    if (stored.traffic == BOT) == (decided.traffic == BOT):
        return None  # only the reason changed
    move(conn, st, project_id, session_id)
    return decided.traffic


def move(conn: Connection, st: IngestStatements, project_id: str, session_id: str) -> None:
    """Compute again every key-day the session's rows touch, now that its class changed."""
    rows: list[Any] = list(
        conn.execute(
            sa.select(*ROLLUP_FIELDS).where(events.c.project_id == project_id, events.c.session_id == session_id)
        )
    )
    if not rows:
        return
    max_span = int(conn.execute(sa.select(projects.c.max_span).where(projects.c.id == project_id)).scalar() or 0)
    keys = touched(rows)
    for key in sorted(keys):
        rebuild_key_day(conn, st, project_id, max_span, key)
    sql_reports.rebuild_key_days(conn, project_id, max_span, {(k.path_key, k.day, k.bucket_w) for k in keys})
