"""The statements that store one ingest batch, built once per dialect.

Every statement text is fixed per dialect (no text per batch size, so no cache grows with the
sizes seen): the rows go through ``executemany`` (PyMySQL folds them into multi-row INSERTs of at
most ~1 MB, so a batch is chunked by bytes; SQLite steps one prepared statement) or, on PostgreSQL,
as one JSON parameter of a single statement.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Dialect

from ..rageclicks import new_token
from ..signals import SIGNAL_TYPES
from .base import (
    LOCATION_FIELDS,
    LONG_MOVE_MS,
    ROW_FIELDS,
    AggregateRow,
    Batch,
    EventRow,
    ReportPiece,
    SessionRow,
    long_move_days,
)
from .sql_schema import (
    events,
    heat_aggregates,
    heat_rage_pending,
    heat_report_pieces,
    long_moves,
    projects,
    session_types,
    sessions,
    users,
)

# Rows are sent as tuples of their record's fields; every statement names its columns in that order,
# so the records need not follow the tables' column order, only name their columns.
_ROW_LENGTH = len(ROW_FIELDS)
AGGREGATE_FIELDS = AggregateRow._fields
for _table, _fields in ((events, ROW_FIELDS), (heat_aggregates, AGGREGATE_FIELDS)):
    if not set(_fields) <= set(_table.c.keys()):
        raise RuntimeError(f"{_table.name} lacks columns {sorted(set(_fields) - set(_table.c.keys()))}")
_ROWS_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def insert_ignore(dialect: str, table: sa.Table, index_elements: list[str]) -> Any:
    """An INSERT that skips rows clashing with a unique key (and counts only new rows)."""
    if dialect == "mysql":
        return sa.insert(table).prefix_with("IGNORE")
    module = postgresql if dialect == "postgresql" else sqlite
    return module.insert(table).on_conflict_do_nothing(index_elements=index_elements)


def upsert(dialect: str, table: sa.Table, keys: list[str], update: Callable[[Any], dict[str, Any]]) -> Any:
    """An atomic INSERT ... ON CONFLICT/DUPLICATE KEY UPDATE taking its row as parameters.

    ``update`` maps the proposed row to the SET values.
    """
    stmt: Any
    if dialect == "mysql":
        stmt = mysql.insert(table)
        return stmt.on_duplicate_key_update(update(stmt.inserted))
    module = postgresql if dialect == "postgresql" else sqlite
    stmt = module.insert(table)
    return stmt.on_conflict_do_update(index_elements=keys, set_=update(stmt.excluded))


_SESSION_COLUMNS = tuple(c.name for c in sessions.columns)


def executemany(conn: Connection, sql: str, params: list[tuple[Any, ...]]) -> int:
    """``sql`` once per parameter tuple through the driver's own cursor (PyMySQL folds the rows into
    INSERTs of at most ~1 MB, SQLite steps one prepared statement); the rows changed."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(sql, params)
        return int(cursor.rowcount)
    finally:
        cursor.close()


def after_key(after: tuple[int, int], ts_column: Any = None) -> Any:
    """Rows after ``(ts, seq)`` in (ts, seq) order, spelled so every database starts an index range
    at ``ts`` (SQLite does not for ``ts > a OR (ts = a AND seq > b)`` alone: each page rescanned the
    rows before it)."""
    ts, seq = after
    at = events.c.ts if ts_column is None else ts_column
    return sa.and_(at >= ts, sa.or_(at > ts, events.c.seq > seq))


def crossing(project_id: str, before: int, reaching: int) -> Any:
    """The events in the long-move index starting before ``before`` with rows at or after ``reaching``."""
    t = long_moves.c
    found = sa.select(t.event_id).where(
        t.project_id == project_id, t.day == reaching // 86_400_000, t.ts < before, t.end_ts >= reaching
    )
    return sa.and_(events.c.project_id == project_id, events.c.event_id.in_(found), events.c.ts < before)


def long_move_params(project_id: str, rows: Sequence[Any]) -> list[tuple[Any, ...]]:
    """The long-move index entries of ``rows`` (events with ``event_id``, ``ts``, ``span``)."""
    return [
        (project_id, day, str(r.event_id), int(r.ts), int(r.ts) + int(r.span))
        for r in rows
        for day in long_move_days(int(r.ts), int(r.span))
    ]


def forget_long_moves(conn: Connection, project_id: str, rows: Sequence[Any]) -> None:
    """Delete the long-move index entries of ``rows`` (events with ``event_id``, ``ts``, ``span``)."""
    entries = [{"p": p, "d": d, "e": e} for p, d, e, _, _ in long_move_params(project_id, rows)]
    if entries:
        t = long_moves.c
        stmt = sa.delete(long_moves).where(
            t.project_id == sa.bindparam("p"), t.day == sa.bindparam("d"), t.event_id == sa.bindparam("e")
        )
        conn.execute(stmt, entries)


def session_values(session: SessionRow, project_id: str, user_id: str | None, event_count: int) -> dict[str, Any]:
    """The parameters of the session upsert (named as the columns)."""
    return {
        "project_id": project_id,
        "id": session.id,
        "user_id": user_id,
        "first_user_id": user_id,  # kept by later batches (not in _session_update)
        "started_at": session.started_at,
        "last_seen_at": session.last_seen_at,
        "first_path": session.first_path,
        "user_agent": session.user_agent,
        "device_json": session.device_json,
        "ip_hash": session.ip_hash,
        "event_count": event_count,
        "last_path": session.last_path,
        "last_ts": session.last_ts,
        "traffic": session.traffic,
        "traffic_reason": session.traffic_reason,
    }


def _pg_type(column_type: Any) -> str:
    if isinstance(column_type, sa.BigInteger):
        return "bigint"
    return "integer" if isinstance(column_type, sa.Integer) else "text"


def _user_update(new: Any) -> dict[str, Any]:
    # An erased user's row is a tombstone: it takes no traits again.
    live = users.c.erased_at.is_(None)
    return {"traits_json": sa.case((live, sa.func.coalesce(new.traits_json, users.c.traits_json)), else_=None)}


def _session_update(new: Any) -> dict[str, Any]:
    newer = sa.or_(sessions.c.last_ts.is_(None), new.last_ts >= sessions.c.last_ts)
    return {
        "last_seen_at": sa.case(
            (new.last_seen_at > sessions.c.last_seen_at, new.last_seen_at), else_=sessions.c.last_seen_at
        ),
        "user_id": sa.func.coalesce(new.user_id, sessions.c.user_id),
        "event_count": sessions.c.event_count + new.event_count,
        "last_path": sa.case((newer, new.last_path), else_=sessions.c.last_path),
        "last_ts": sa.case((newer, new.last_ts), else_=sessions.c.last_ts),
    }


def _columns_insert(dialect: Dialect, table: sa.Table, names: tuple[str, ...], tail: str = "") -> str:
    """``INSERT INTO table (names) VALUES (?, ...)`` for one row, in the driver's paramstyle."""
    quote = dialect.identifier_preparer.quote
    mark = "?" if dialect.paramstyle == "qmark" else "%s"
    head = "INSERT IGNORE INTO" if tail == "IGNORE" else "INSERT INTO"
    sql = (
        f"{head} {dialect.identifier_preparer.format_table(table)} ({', '.join(quote(n) for n in names)}) "
        f"VALUES ({', '.join([mark] * len(names))})"
    )
    return sql if tail in ("", "IGNORE") else f"{sql} {tail}"


def rage_mark_sql(dialect: Dialect) -> str:
    """The upsert marking a session's rage clicks pending with a new token: parameters (project,
    session, token) for ``executemany``."""
    return _columns_insert(
        dialect,
        heat_rage_pending,
        ("project_id", "session_id", "token"),
        "ON DUPLICATE KEY UPDATE token = VALUES(token)"
        if dialect.name == "mysql"
        else "ON CONFLICT (project_id, session_id) DO UPDATE SET token = excluded.token",
    )


_PYFORMAT = re.compile(r"%\((\w+)\)s")


@dataclass(frozen=True)
class PreparedStatement:
    """A PostgreSQL statement as ``PREPARE`` (``$n`` placeholders) and ``EXECUTE`` (pyformat) texts."""

    name: str
    prepare: str
    execute: str

    @classmethod
    def of(cls, name: str, sql: str) -> PreparedStatement:
        """From a pyformat statement; the server infers each parameter's type from where it is used."""
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match[1] not in names:
                names.append(match[1])
            return f"${names.index(match[1]) + 1}"

        body = _PYFORMAT.sub(number, sql)
        return cls(
            name=name,
            prepare=f"PREPARE {name} AS {body}".replace("%%", "%"),
            execute=f"EXECUTE {name}({', '.join(f'%({n})s' for n in names)})",
        )


class IngestStatements:
    """The statements of one ingest for one dialect.

    PostgreSQL stores a whole batch with one statement in autocommit (user upsert, events, session
    counters and aggregate pieces as data-modifying CTEs; rows as JSON parameters). A batch that is
    partly a duplicate makes that statement fail on purpose and is stored by the transaction the
    other dialects always use: find the ids already stored, insert the rest, add their pieces.
    """

    def __init__(self, dialect: Dialect) -> None:
        name = dialect.name
        self.user_upsert: Any = upsert(name, users, ["project_id", "external_id"], _user_update)
        self.user_select: Any = None
        # The upsert waits for an erase holding the row, then reads its erased_at (the tombstone):
        # the check is part of the transaction that stores the batch.
        if name == "mysql":
            self.user_select = sa.select(users.c.id, users.c.erased_at).where(
                users.c.project_id == sa.bindparam("project_id"), users.c.external_id == sa.bindparam("external_id")
            )
        else:
            self.user_upsert = self.user_upsert.returning(users.c.id, users.c.erased_at)
        self.session_upsert: Any = upsert(name, sessions, ["project_id", "id"], _session_update)
        self.session_clicks: Any = sa.select(events.c.ts).where(
            events.c.project_id == sa.bindparam("project_id"),
            events.c.session_id == sa.bindparam("session_id"),
            session_types("click"),
        )
        self.existing_ids: Any = sa.select(events.c.event_id, events.c.type, events.c.row_count).where(
            events.c.project_id == sa.bindparam("project_id"),
            events.c.event_id.in_(sa.bindparam("ids", expanding=True)),
        )
        self.raise_span: Any = (
            sa.update(projects)
            .where(projects.c.id == sa.bindparam("pid"), projects.c.max_span < sa.bindparam("span"))
            .values(max_span=sa.bindparam("span"))
        )
        event_columns = (*LOCATION_FIELDS, *ROW_FIELDS)
        self.events_sql = _columns_insert(
            dialect,
            events,
            event_columns,
            "IGNORE" if name == "mysql" else "ON CONFLICT (project_id, event_id) DO NOTHING",
        )
        self.pieces_sql = _columns_insert(dialect, heat_aggregates, ("project_id", *AGGREGATE_FIELDS))
        self.reports_sql = _columns_insert(dialect, heat_report_pieces, ("project_id", *ReportPiece._fields))
        self.rage_mark_sql = rage_mark_sql(dialect)
        self.long_moves_sql = _columns_insert(
            dialect,
            long_moves,
            ("project_id", "day", "event_id", "ts", "end_ts"),
            "IGNORE" if name == "mysql" else "ON CONFLICT DO NOTHING",
        )
        self._table = dialect.identifier_preparer.format_table(events)
        self._columns = ", ".join(dialect.identifier_preparer.quote(n) for n in event_columns)
        self.one_statement: dict[bool, PreparedStatement] = (
            {
                True: PreparedStatement.of("heat_batch_user", self._pg_batch_sql(dialect, True)),
                False: PreparedStatement.of("heat_batch", self._pg_batch_sql(dialect, False)),
            }
            if name == "postgresql"
            else {}
        )

    @staticmethod
    def events_params(project_id: str, user_id: str | None, rows: list[EventRow]) -> list[tuple[Any, ...]]:
        """The ``executemany`` parameters of ``events_sql``."""
        return [(project_id, user_id, *row[:_ROW_LENGTH]) for row in rows]

    @staticmethod
    def pieces_params(project_id: str, pieces: list[AggregateRow]) -> list[tuple[Any, ...]]:
        """The ``executemany`` parameters of ``pieces_sql``."""
        return [(project_id, *piece) for piece in pieces]

    def _pg_batch_sql(self, dialect: Dialect, with_user: bool) -> str:
        """One PostgreSQL statement storing user, events, session and aggregate pieces (pyformat)."""

        def compiled(stmt: Any) -> str:
            return str(stmt.compile(dialect=dialect))

        user_cte = compiled(
            self.user_upsert.values(
                id=sa.bindparam("user_uuid"),
                project_id=sa.bindparam("project_id"),
                external_id=sa.bindparam("external_id"),
                traits_json=sa.bindparam("traits_json"),
                created_at=sa.bindparam("now"),
            )
        )
        user_id = "(SELECT id FROM u)" if with_user else "NULL"
        # An erased user's batch (u.erased_at set: the upsert read the row after any erase holding it)
        # stores nothing: every write below is conditioned on ``live``.
        erased = "EXISTS (SELECT 1 FROM u WHERE erased_at IS NOT NULL)" if with_user else "false"
        live = f"NOT {erased}"
        # A bot session's rows add to no aggregate nor report piece (traffic.py): its stored class,
        # else (its first batch) the class its agent gives it.
        human = (
            "COALESCE((SELECT traffic FROM sessions WHERE project_id = %(project_id)s AND id = %(id)s), "
            "%(traffic)s) <> 'bot'"
        )
        session_cte = compiled(
            self.session_upsert.values(
                {
                    name: sa.literal_column(user_id)
                    if name in ("user_id", "first_user_id")
                    else sa.literal_column("(SELECT n FROM tot)")
                    if name == "event_count"
                    else sa.bindparam(name)
                    for name in _SESSION_COLUMNS
                }
            )
        )
        values_at, conflict_at = session_cte.index(" VALUES ("), session_cte.index(") ON CONFLICT ")
        session_cte = (
            f"{session_cte[:values_at]} SELECT {session_cte[values_at + 9 : conflict_at]} WHERE {live}"
            f"{session_cte[conflict_at + 1 :]}"
        )
        # Plain types: a cast to VARCHAR(n) would truncate silently where the INSERT raises.
        # meta_json arrives once per distinct value (usually one per batch): the row holds its
        # 1-based position in the text[] parameter ``metas``.
        casts = ", ".join(
            f"(%(metas)s::text[])[(e->>{i})::integer]"
            if name == "meta_json"
            else f"(e->>{i})::{_pg_type(events.c[name].type)}"
            for i, name in enumerate(ROW_FIELDS)
        )
        piece_casts = ", ".join(
            f"(g->>{i})::{_pg_type(heat_aggregates.c[name].type)}" for i, name in enumerate(AGGREGATE_FIELDS)
        )
        piece_columns = ", ".join(("project_id", *AGGREGATE_FIELDS))
        report_casts = ", ".join(
            f"(g->>{i})::{_pg_type(heat_report_pieces.c[name].type)}" for i, name in enumerate(ReportPiece._fields)
        )
        report_columns = ", ".join(("project_id", *ReportPiece._fields))
        ctes = [
            "p AS (UPDATE projects SET max_span = %(span)s WHERE id = %(project_id)s AND max_span < %(span)s)",
            *([f"u AS ({user_cte})"] if with_user else []),
            f"ins AS (INSERT INTO {self._table} ({self._columns}) "
            f"SELECT %(project_id)s, {user_id}, {casts} FROM jsonb_array_elements(%(rows)s::jsonb) AS e "
            f"WHERE {live} ON CONFLICT (project_id, event_id) DO NOTHING RETURNING row_count, event_id, ts, span)",
            # The long-move index entries of the moves stored (base.long_move_days).
            "lm AS (INSERT INTO heat_long_moves (project_id, day, event_id, ts, end_ts) "
            "SELECT %(project_id)s, d, event_id, ts, ts + span FROM ins, "
            "generate_series(floor(ts / 86400000.0)::bigint, floor((ts + span) / 86400000.0)::bigint) AS d "
            f"WHERE span > {LONG_MOVE_MS} ON CONFLICT DO NOTHING)",
            "tot AS (SELECT count(*) AS c, coalesce(sum(row_count), 0) AS n FROM ins)",
            # New rows of signals.SIGNAL_TYPES: the session's rage clicks and signals are settled again.
            "r AS (INSERT INTO heat_rage_pending (project_id, session_id, token) "
            "SELECT %(project_id)s, %(id)s, %(rage_token)s FROM tot WHERE %(signal_rows)s AND c > 0 "
            "ON CONFLICT (project_id, session_id) DO UPDATE SET token = EXCLUDED.token)",
            f"s AS ({session_cte})",
            # The pieces describe every row of the batch: added when all rows were new, skipped when
            # none were; a partial duplicate divides by zero, failing the statement (nothing stored)
            # so that the caller stores the batch by the exact path.
            f"a AS (INSERT INTO heat_aggregates ({piece_columns}) "
            f"SELECT %(project_id)s, {piece_casts} FROM jsonb_array_elements(%(pieces)s::jsonb) AS g "
            # A full duplicate is also stored by that path when one of its moves came back with more
            # points (rows are unique per point: the new points are new rows).
            f"WHERE {live} AND {human} AND (SELECT CASE WHEN c = %(row_count)s THEN true "
            f"WHEN c > 0 OR EXISTS (SELECT 1 FROM jsonb_array_elements(%(rows)s::jsonb) AS e JOIN {self._table} v "
            "ON v.project_id = %(project_id)s AND v.event_id = e->>0 "
            f"WHERE e->>{ROW_FIELDS.index('type')} = 'move' AND v.type = 'move' "
            f"AND v.row_count < (e->>{ROW_FIELDS.index('row_count')})::integer) "
            "THEN c / (c - c) = 0 ELSE false END FROM tot))",
        ]
        # Report pieces only when every row was new (a partial duplicate failed the statement above).
        ctes.append(
            f"rp AS (INSERT INTO heat_report_pieces ({report_columns}) "
            f"SELECT %(project_id)s, {report_casts} FROM jsonb_array_elements(%(reports)s::jsonb) AS g "
            f"WHERE (SELECT c FROM tot) = %(row_count)s AND {human})"
        )
        # The project is looked up by key inside the statement (no cache: a rotated key fails at
        # once); no project with the key leaves project_id NULL, failing the statement (23502).
        stored = (
            "COALESCE((SELECT traffic FROM sessions WHERE project_id = %(project_id)s AND id = %(id)s), %(traffic)s)"
        )
        sql = f"WITH {', '.join(ctes)} SELECT c, n, %(project_id)s, {erased}, {stored} FROM tot"
        return sql.replace("%(project_id)s", "(SELECT id FROM projects WHERE key = %(project_key)s)")

    @staticmethod
    def pg_batch_params(
        batch: Batch,
        user_uuid: str | None,
        now: int,
        pieces: list[AggregateRow],
        reports: list[ReportPiece],
    ) -> dict[str, Any]:
        """The parameters of ``one_statement[...]`` for ``batch`` (``user_uuid``: id of a new user)."""
        positions: dict[str, int] = {}
        meta_at = ROW_FIELDS.index("meta_json")
        rows = [
            (*row[:meta_at], positions.setdefault(row.meta_json, len(positions) + 1), *row[meta_at + 1 : _ROW_LENGTH])
            for row in batch.events
        ]
        values = session_values(batch.session, "", None, 0)  # project, user and count come from the statement
        del values["project_id"]
        return {
            **values,
            "project_key": batch.project_key,
            "user_uuid": user_uuid,
            "external_id": batch.external_user_id,
            "traits_json": batch.user_traits_json,
            "now": now,
            "span": batch.span,
            "metas": list(positions),
            "rows": _ROWS_JSON.encode(rows),
            "row_count": len(rows),
            "pieces": _ROWS_JSON.encode(pieces),
            "reports": _ROWS_JSON.encode(reports),
            "signal_rows": any(row.type in SIGNAL_TYPES for row in batch.events),
            "rage_token": new_token(),
        }
