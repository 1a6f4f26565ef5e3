"""The statements that store one ingest batch, built once per dialect."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Dialect

from .base import Batch, EventRow, SessionRow
from .sql_schema import events, sessions, users

# Event columns in INSERT order: the two the batch shares, then the fields of each EventRow.
EVENT_ROW_FIELDS = tuple(c.name for c in events.columns if c.name not in ("id", "project_id", "user_id"))
if EventRow._fields != EVENT_ROW_FIELDS:  # rows are sent as they are: same order as the columns
    raise RuntimeError("EventRow fields must follow the events table's column order")
_META_AT = EVENT_ROW_FIELDS.index("meta_json")
_MAX_BIND_PARAMS = 30_000  # below SQLite's 32766 and the MySQL/PostgreSQL limits of 65535
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


def session_values(session: SessionRow, project_id: str, user_id: str | None) -> dict[str, Any]:
    """The parameters of the session upsert (named as the columns)."""
    return {
        "project_id": project_id,
        "id": session.id,
        "user_id": user_id,
        "started_at": session.started_at,
        "last_seen_at": session.last_seen_at,
        "first_path": session.first_path,
        "user_agent": session.user_agent,
        "device_json": session.device_json,
        "ip_hash": session.ip_hash,
    }


def _pg_type(column_type: Any) -> str:
    if isinstance(column_type, sa.BigInteger):
        return "bigint"
    return "integer" if isinstance(column_type, sa.Integer) else "text"


def _user_update(new: Any) -> dict[str, Any]:
    return {"traits_json": sa.func.coalesce(new.traits_json, users.c.traits_json)}


def _session_update(new: Any) -> dict[str, Any]:
    return {
        "last_seen_at": sa.case(
            (new.last_seen_at > sessions.c.last_seen_at, new.last_seen_at), else_=sessions.c.last_seen_at
        ),
        "user_id": sa.func.coalesce(new.user_id, sessions.c.user_id),
    }


class IngestStatements:
    """The statements of one ingest for one dialect.

    PostgreSQL stores a whole batch with one statement in autocommit (user and session upserts
    as data-modifying CTEs, the event rows as one JSON parameter): one round trip, and the server
    parses the rows instead of psycopg2 quoting hundreds of parameters. The other dialects run
    the upserts and multi-row INSERTs inside one transaction.
    """

    def __init__(self, dialect: Dialect) -> None:
        name = dialect.name
        self.user_upsert: Any = upsert(name, users, ["project_id", "external_id"], _user_update)
        self.user_select: Any = None
        if name == "mysql":
            self.user_select = sa.select(users.c.id).where(
                users.c.project_id == sa.bindparam("project_id"), users.c.external_id == sa.bindparam("external_id")
            )
        else:
            self.user_upsert = self.user_upsert.returning(users.c.id)
        self.session_upsert: Any = upsert(name, sessions, ["project_id", "id"], _session_update)
        names = ("project_id", "user_id", *EVENT_ROW_FIELDS)
        quote = dialect.identifier_preparer.quote
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self._row = "(" + ", ".join([mark] * len(names)) + ")"
        self._columns = ", ".join(quote(n) for n in names)
        self._table = dialect.identifier_preparer.format_table(events)
        if name == "mysql":
            self._head, self._tail = f"INSERT IGNORE INTO {self._table} ({self._columns}) VALUES ", ""
        else:
            self._head = f"INSERT INTO {self._table} ({self._columns}) VALUES "
            self._tail = " ON CONFLICT (project_id, event_id, point_index) DO NOTHING"
        self.chunk = _MAX_BIND_PARAMS // len(names)
        self._sql: dict[int, str] = {}
        self.one_statement: dict[bool, str] = (
            {True: self._pg_batch_sql(dialect, True), False: self._pg_batch_sql(dialect, False)}
            if name == "postgresql"
            else {}
        )

    def events_sql(self, rows: int) -> str:
        """``INSERT ... VALUES`` for ``rows`` rows (bound parameters only), cached by size."""
        sql = self._sql.get(rows)
        if sql is None:
            sql = self._sql[rows] = self._head + ", ".join([self._row] * rows) + self._tail
        return sql

    def events_params(self, project_id: str, user_id: str | None, rows: list[EventRow]) -> tuple[Any, ...]:
        """The flat parameters of ``events_sql(len(rows))``."""
        params: list[Any] = []
        for row in rows:
            params.append(project_id)
            params.append(user_id)
            params.extend(row)
        return tuple(params)

    def _pg_batch_sql(self, dialect: Dialect, with_user: bool) -> str:
        """One PostgreSQL statement storing user, session and events of a batch (pyformat)."""

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
        session_cte = compiled(
            self.session_upsert.values(
                {
                    name: sa.literal_column(user_id) if name == "user_id" else sa.bindparam(name)
                    for name in _SESSION_COLUMNS
                }
            )
        )
        # Plain types: a cast to VARCHAR(n) would truncate silently where the INSERT raises.
        # meta_json arrives once per distinct value (usually one per batch): the row holds its
        # 1-based position in the text[] parameter ``metas``.
        casts = ", ".join(
            f"(%(metas)s::text[])[(e->>{i})::integer]"
            if name == "meta_json"
            else f"(e->>{i})::{_pg_type(events.c[name].type)}"
            for i, name in enumerate(EVENT_ROW_FIELDS)
        )
        ctes = ([f"u AS ({user_cte})"] if with_user else []) + [f"s AS ({session_cte})"]
        return (
            f"WITH {', '.join(ctes)} "
            f"INSERT INTO {self._table} ({self._columns}) "
            f"SELECT %(project_id)s, {user_id}, {casts} FROM jsonb_array_elements(%(rows)s::jsonb) AS e"
            f"{self._tail}"
        )

    @staticmethod
    def pg_batch_params(batch: Batch, project_id: str, user_uuid: str | None, now: int) -> dict[str, Any]:
        """The parameters of ``one_statement[...]`` for ``batch`` (``user_uuid``: id of a new user)."""
        positions: dict[str, int] = {}
        rows = [
            (*row[:_META_AT], positions.setdefault(row.meta_json, len(positions) + 1), *row[_META_AT + 1 :])
            for row in batch.events
        ]
        return {
            **session_values(batch.session, project_id, None),  # its user_id comes from the user CTE
            "user_uuid": user_uuid,
            "external_id": batch.external_user_id,
            "traits_json": batch.user_traits_json,
            "now": now,
            "metas": list(positions),
            "rows": _ROWS_JSON.encode(rows),
        }
