"""SQLAlchemy Core tables of the SQL backends and the engine they run on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine

from ..ingest import path_key
from .base import STORED_FIELDS, PathSet

metadata = sa.MetaData()
# Binary collation: ids, keys and paths compare exactly (case matters) on MySQL/MariaDB too; migrate()
# then switches the tables to the server's NO PAD binary collation, so trailing spaces matter as well.
_MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
# JSON columns: MySQL's TEXT holds only 64 KB.
_Json = sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")
_Blob = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")
_Uuid = sa.String(36)  # project and user ids made here
_ClientId = sa.String(128)  # session and event ids as the SDK sends them
_Path = sa.String(1024)  # paths, selectors and user agents as the SDK sends them


def path_clauses(table: sa.Table, paths: PathSet, *, exact: bool = True, indexed: bool = True) -> list[Any]:
    """The clauses on ``table``'s ``path_key`` (and, when ``exact``, its ``path``) of one path, of any of
    several (a page group), or none for every path; not ``indexed``: as ``path_key + 0``, so that a
    narrower index (a few sessions') is taken over the path's."""
    t = table.c
    if paths is None:
        return []
    key = t.path_key if indexed else t.path_key + 0
    if isinstance(paths, str):
        return [key == path_key(paths), *([t.path == paths] if exact else [])]
    keys = sorted({path_key(p) for p in paths})
    return [key.in_(keys), *([t.path.in_(sorted(paths))] if exact else [])]


def _table(name: str, *items: Any) -> sa.Table:
    """A table of ``metadata`` with the MySQL/MariaDB charset and binary collation."""
    return sa.Table(name, metadata, *items, **_MYSQL)


def _ms(name: str) -> sa.Column[int]:
    """A required time in milliseconds since the epoch (UTC)."""
    return sa.Column(name, sa.BigInteger, nullable=False)


projects = _table(
    "projects",
    sa.Column("id", _Uuid, primary_key=True),
    sa.Column("key", sa.String(256), nullable=False, unique=True),
    sa.Column("name", sa.String(256), nullable=False),
    _ms("created_at"),
    # The longest move stored (ms from first to last point): how far before a time range to look.
    sa.Column("max_span", sa.BigInteger, nullable=False, server_default="0"),
    # The next session ordinal of the report pieces (heat_session_ordinals).
    sa.Column("next_ordinal", sa.BigInteger, nullable=False, server_default="0"),
)

# Keys replaced by `flask heat project rotate-key`: refused for ever, never made into a project.
retired_keys = _table(
    "heat_retired_keys",
    sa.Column("key", sa.String(256), primary_key=True),
    sa.Column("project_id", _Uuid, nullable=False),
    _ms("retired_at"),
)

users = _table(
    "users",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("id", _Uuid, primary_key=True),
    sa.Column("external_id", _ClientId, nullable=False),
    sa.Column("traits_json", _Json),
    _ms("created_at"),
    # Set when the user is erased: the row stays as the tombstone (ids only) that ingest checks in the
    # transaction that stores a batch, until purge drops it after HEAT_ERASED_USER_TTL_DAYS.
    sa.Column("erased_at", sa.BigInteger),
    sa.UniqueConstraint("project_id", "external_id", name="uq_users_project_external"),
)

sessions = _table(
    "sessions",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("id", _ClientId, primary_key=True),
    sa.Column("user_id", _Uuid),  # the last user a batch of the session named
    # The user of the batch that made the row (whose agent, device and IP hash it holds): a browser
    # session may change hands, and each user's export and erase cover what they sent.
    sa.Column("first_user_id", _Uuid),
    _ms("started_at"),
    _ms("last_seen_at"),
    sa.Column("first_path", _Path, nullable=False),
    sa.Column("user_agent", _Path),
    sa.Column("device_json", sa.Text),
    sa.Column("ip_hash", sa.String(64)),
    # Counters kept by ingest, so listing sessions never counts events.
    sa.Column("event_count", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("last_path", _Path),
    sa.Column("last_ts", sa.BigInteger),
    # The traffic class (traffic.py: "human" or "bot") and why; a row of an older layout is human
    # until `flask heat reclassify` decides it.
    sa.Column("traffic", sa.String(8), nullable=False, server_default="human"),
    sa.Column("traffic_reason", sa.String(200)),
    sa.Index("ix_sessions_project_started", "project_id", "started_at", "id"),
    sa.Index("ix_sessions_project_traffic", "project_id", "traffic", "started_at", "id"),
    sa.Index("ix_sessions_project_user_started", "project_id", "user_id", "started_at"),
)

# One row per SDK event: its JSON once, a move's points packed in ``points``. Every index leads with
# the project and then serves one documented filter combination in (ts, seq) order; long strings
# (path) are indexed through a fixed-size hash (path_key), so any valid path fits every index.
events = _table(
    "events",
    sa.Column("project_id", _Uuid, nullable=False),
    sa.Column("event_id", _ClientId, nullable=False),
    sa.Column("user_id", _Uuid),
    sa.Column("seq", sa.BigInteger, nullable=False),
    sa.Column("session_id", _ClientId, nullable=False),
    sa.Column("type", sa.String(16), nullable=False),
    _ms("ts"),
    sa.Column("span", sa.BigInteger, nullable=False),
    sa.Column("path", _Path, nullable=False),
    sa.Column("path_key", sa.BigInteger, nullable=False),
    sa.Column("selector", _Path),
    sa.Column("x", sa.Integer),
    sa.Column("y", sa.Integer),
    sa.Column("scroll_depth", sa.Integer),
    sa.Column("bucket_w", sa.Integer, nullable=False),
    sa.Column("bucket_h", sa.Integer, nullable=False),
    # The exact viewport width (bucket_w is its 100 px bucket): the heatmap's frame. Nullable only so
    # migrate() can add it to a table with rows, then fill it from meta_json.
    sa.Column("view_w", sa.Integer),
    sa.Column("row_count", sa.Integer, nullable=False),
    sa.Column("points", _Json),
    sa.Column("meta_json", _Json, nullable=False),
    sa.Column("data_json", _Json),
    # Keyed in time order: InnoDB clusters rows by the primary key, so a page's rows are read in
    # order instead of by random lookups; the unique key makes a retried event a duplicate.
    sa.PrimaryKeyConstraint("project_id", "ts", "seq", "event_id", name="pk_events"),
    sa.UniqueConstraint("project_id", "event_id", name="uq_events_project_event"),
    sa.Index("ix_events_type_ts_seq", "project_id", "type", "ts", "seq"),
    sa.Index("ix_events_path_ts_seq", "project_id", "path_key", "ts", "seq"),
    sa.Index("ix_events_path_type_ts_seq", "project_id", "path_key", "type", "ts", "seq"),
    sa.Index("ix_events_session_ts_seq", "project_id", "session_id", "ts", "seq"),
)

# Pieces of the heatmap aggregates (aggregates.py): one per batch and key until compacted; keyed by
# the exact viewport width too (its cells are binned on it).
heat_aggregates = _table(
    "heat_aggregates",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("path_key", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("day", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(16), primary_key=True),
    sa.Column("bucket_w", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("bucket_h", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("view_w", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("part", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("first_seq", sa.BigInteger),
    sa.Column("max_y", sa.BigInteger),
    sa.Column("cells", _Blob),
    sa.Column("depths", _Blob),
    sa.Index("ix_heat_aggregates_day", "project_id", "day"),
    # Pieces written by ingest have a positive part, merged ones a negative part: compaction's work list.
    sa.Index("ix_heat_aggregates_fresh", "project_id", "part"),
)

# Pieces of the report data (report_pieces.py): per path, UTC day and width band, one per batch
# (``session_id`` its session) until compacted into one with a bitmap of session ordinals.
heat_report_pieces = _table(
    "heat_report_pieces",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("path_key", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("day", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("bucket_w", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("part", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("path", _Path, nullable=False),
    sa.Column("n_rows", sa.BigInteger, nullable=False),
    sa.Column("last_ts", sa.BigInteger),
    sa.Column("session_id", _ClientId),
    sa.Column("sessions", _Blob),
    sa.Column("selectors", _Blob),
    sa.Column("scroll", _Blob),
    sa.Index("ix_heat_report_pieces_day", "project_id", "day"),
    sa.Index("ix_heat_report_pieces_band_day", "project_id", "bucket_w", "day"),  # the paths report
    sa.Index("ix_heat_report_pieces_fresh", "project_id", "part"),
)

# Per-project session ordinals, the members of the report pieces' bitmaps; given by compaction
# (projects.next_ordinal counts them, so an ordinal is never given twice).
heat_session_ordinals = _table(
    "heat_session_ordinals",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("session_id", _ClientId, primary_key=True),
    sa.Column("ordinal", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "ordinal", name="uq_heat_session_ordinals_ordinal"),
)

# Rage clicks (rageclicks.py), decided per session over all its clicks and kept up to date: a batch
# with clicks marks its session pending (in the batch's transaction); settling a pending session
# recomputes its bursts and writes the difference here. Reports read these rows, never every click.
heat_rage_clicks = _table(
    "heat_rage_clicks",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("session_id", _ClientId, primary_key=True),
    sa.Column("event_id", _ClientId, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    _ms("ts"),
    sa.Column("path", _Path, nullable=False),
    sa.Column("path_key", sa.BigInteger, nullable=False),
    sa.Column("selector", _Path),
    sa.Column("x", sa.Integer, nullable=False),
    sa.Column("y", sa.Integer, nullable=False),
    sa.Column("bucket_w", sa.Integer, nullable=False),
    sa.Column("bucket_h", sa.Integer, nullable=False),
    sa.Column("view_w", sa.Integer),  # the event's exact width; NULL: settled before it was kept
    sa.Index("ix_heat_rage_clicks_ts", "project_id", "ts"),
    sa.Index("ix_heat_rage_clicks_path_ts", "project_id", "path_key", "ts"),
)

# Sessions whose clicks changed since their rage clicks were last settled; ``token`` changes with
# every change, so a settle that raced a batch leaves the mark for the next one.
heat_rage_pending = _table(
    "heat_rage_pending",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("session_id", _ClientId, primary_key=True),
    sa.Column("token", sa.BigInteger, nullable=False),
    sa.Index("ix_heat_rage_pending_token", "project_id", "token"),  # the workers' settles, longest idle first
)

# The other frustration signals (signals.py): one row per (kind, event) of a session, settled with
# its rage clicks (the same pending mark, set by every batch with a row of signals.SIGNAL_TYPES).
heat_signals = _table(
    "heat_signals",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("session_id", _ClientId, primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("event_id", _ClientId, primary_key=True),
    sa.Column("seq", sa.BigInteger, nullable=False),
    _ms("ts"),
    sa.Column("path", _Path, nullable=False),
    sa.Column("path_key", sa.BigInteger, nullable=False),
    sa.Column("selector", _Path),
    sa.Column("x", sa.Integer),
    sa.Column("y", sa.Integer),
    sa.Column("bucket_w", sa.Integer, nullable=False),
    sa.Column("bucket_h", sa.Integer, nullable=False),
    sa.Column("view_w", sa.Integer),  # the event's exact width; NULL: settled before it was kept
    sa.Index("ix_heat_signals_ts", "project_id", "kind", "ts"),
    sa.Index("ix_heat_signals_path_ts", "project_id", "path_key", "ts"),
)

# Exact counts of the human sessions' settled signals and rage clicks (signal_counts.py): per path,
# day and kind over every band (bucket_w -1, selector_key 0), and per band and selector.
heat_signal_counts = _table(
    "heat_signal_counts",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("path_key", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("day", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("bucket_w", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("selector_key", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("path", _Path, nullable=False),
    sa.Column("selector", _Path),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Index("ix_heat_signal_counts_band_day", "project_id", "bucket_w", "day"),  # the paths report
)

# The dead-click and error-click maps' pieces (signal_maps.py): one per path, day, kind, bucket and
# exact width, of the human sessions' stored signals; the columns of heat_aggregates' pieces.
heat_signal_cells = _table(
    "heat_signal_cells",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("path_key", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("day", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("bucket_w", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("bucket_h", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("view_w", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("first_seq", sa.BigInteger),
    sa.Column("max_y", sa.Integer),
    sa.Column("cells", _Blob),
    sa.Index("ix_heat_signal_cells_kind_day", "project_id", "kind", "day"),  # the map of every path
)

# Every stored column of events but the JSON ones: what the aggregates add up.
ROLLUP_FIELDS = [events.c[name] if name not in ("meta_json", "data_json") else sa.null() for name in STORED_FIELDS]

# The long-move index: moves lasting more than base.LONG_MOVE_MS, one entry per UTC day their rows fall
# on, so that a scan from a time finds the long moves crossing it without reading further back.
long_moves = _table(
    "heat_long_moves",
    sa.Column("project_id", _Uuid, primary_key=True),
    sa.Column("day", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("event_id", _ClientId, primary_key=True),
    _ms("ts"),
    _ms("end_ts"),
)

# The events table of the first layout (one row per move point): migrate() moves it forward.
LEGACY_EVENTS = "events_v1"
LEGACY_MARKER = "point_index"

MIGRATE_LOCK_ID = 0x68656174  # "heat": PostgreSQL advisory lock key held while migrating
MIGRATE_LOCK_NAME = "flask_heat_collector.migrate"  # MySQL/MariaDB named lock


def _sqlite_setup(engine: Engine) -> None:
    """WAL, a busy timeout and ``BEGIN IMMEDIATE`` for writes, so concurrent writers wait, not fail."""

    @sa_event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @sa_event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("heat_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def create_sql_engine(uri: str) -> Engine:
    """An engine with short connect timeouts and pre-ping, so an outage is a fast 503."""
    url = sa.make_url(uri)
    backend = url.get_backend_name()
    # No pool_pre_ping (a round trip per request): a pooled connection found dead is invalidated
    # by SQLAlchemy and the operation retried once on a fresh one (see _read/_write).
    kwargs: dict[str, Any] = {}
    if backend == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 2}
        if "options" not in url.query:
            # JIT compilation costs more than it saves on these short queries (~20 ms per aggregate).
            kwargs["connect_args"]["options"] = "-c jit=off"
        # Autocommit: a one-statement read or ingest costs one round trip, not BEGIN + statement +
        # ROLLBACK/COMMIT; isolation is READ COMMITTED either way (a snapshot per statement).
        # Writes of several statements ask for READ COMMITTED and a transaction (SqlRepository._write).
        kwargs.update(pool_recycle=1800, pool_timeout=5, isolation_level="AUTOCOMMIT")
    elif backend in ("mysql", "mariadb"):
        kwargs["connect_args"] = {"connect_timeout": 2, "charset": "utf8mb4"}
        # READ COMMITTED: a row another batch just committed (project, user) is visible to the
        # re-read after INSERT IGNORE, and InnoDB takes no gap locks (fewer deadlocks).
        kwargs.update(pool_recycle=1800, pool_timeout=5, isolation_level="READ COMMITTED")
    elif backend == "sqlite":
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        if url.database in (None, "", ":memory:"):
            # An in-memory database lives in its connection: every operation shares the one.
            kwargs["poolclass"] = sa.StaticPool
    engine = sa.create_engine(url, **kwargs)
    if backend == "sqlite":
        _sqlite_setup(engine)
    return engine


def bot_sessions(project_id: Any) -> Any:
    """The ids of the project's bot sessions (a subquery)."""
    return sa.select(sessions.c.id).where(sessions.c.project_id == project_id, sessions.c.traffic == "bot")


def traffic_clauses(session_column: Any, project_id: Any, traffic: str) -> list[Any]:
    """The clauses keeping the rows of sessions of class ``traffic`` ("all": every row)."""
    if traffic == "human":
        return [session_column.not_in(bot_sessions(project_id))]
    if traffic == "bot":
        return [session_column.in_(bot_sessions(project_id))]
    return []


def unindexed(column: Any) -> Any:
    """``column`` as ``column || ''``: the same text, but no index on it is offered to the planner.
    For reads that also name a narrower key (a session, a path): SQLite, without statistics, takes
    an index on (project, type) or (project, kind) over the narrower one and reads every row of the
    type in the project."""
    return column.concat("")


def session_types(*types: str) -> Any:
    """``events.type`` among ``types``, for reads that also name the session (each batch with a click
    read every click of its project through the type's index: ingest slowed with the data stored)."""
    typed = unindexed(events.c.type)
    return typed == types[0] if len(types) == 1 else typed.in_(types)


def select_keyed(conn: Connection, stmt: Any, table: sa.Table, names: Sequence[str], keys: Sequence[Any]) -> list[Any]:
    """The rows of ``stmt`` (a select of ``table``) whose columns ``names`` hold one of ``keys``. One
    statement with the keys as a row-value list where the planner reads it as one index range per key
    (PostgreSQL, MySQL/MariaDB); on SQLite, which reads such a list by scanning, one cached statement
    per key (in process: no round trips)."""
    if not keys:
        return []
    if conn.dialect.name == "sqlite":
        one = stmt.where(*(table.c[n] == sa.bindparam(f"k_{n}") for n in names))
        return [
            row for key in keys for row in conn.execute(one, dict(zip((f"k_{n}" for n in names), key, strict=True)))
        ]
    many = stmt.where(sa.tuple_(*(table.c[n] for n in names)).in_(sa.bindparam("keys", expanding=True)))
    return [
        row
        for start in range(0, len(keys), 500)
        for row in conn.execute(many, {"keys": list(keys[start : start + 500])})
    ]


def delete_keyed(
    conn: Connection,
    table: sa.Table,
    project_id: str,
    names: Sequence[str],
    keys: Sequence[Sequence[Any]],
    *also: Any,
) -> None:
    """Delete the project's rows of ``table`` whose columns ``names`` hold one of ``keys`` (and that
    meet the clauses ``also``), as :func:`select_keyed` reads them: a row-value list, or on SQLite one
    statement executed per key."""
    if not keys:
        return
    mine = sa.and_(table.c.project_id == project_id, *also)
    if conn.dialect.name == "sqlite":
        where = [table.c[name] == sa.bindparam(f"b_{name}") for name in names]
        conn.execute(
            sa.delete(table).where(mine, *where),
            [{f"b_{name}": value for name, value in zip(names, key, strict=True)} for key in keys],
        )
        return
    listed = sa.tuple_(*(table.c[n] for n in names)).in_(sa.bindparam("keys", expanding=True))
    for start in range(0, len(keys), 500):
        conn.execute(sa.delete(table).where(mine, listed), {"keys": [tuple(k) for k in keys[start : start + 500]]})
