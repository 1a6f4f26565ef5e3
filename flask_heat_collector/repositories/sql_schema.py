"""SQLAlchemy Core tables of the SQL backends and the engine they run on."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.engine import Connection, Engine

metadata = sa.MetaData()
# Binary collation: ids, keys and paths compare exactly (case matters) on MySQL/MariaDB too.
_MYSQL: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}
_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

projects = sa.Table(
    "projects",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("key", sa.String(256), nullable=False, unique=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    **_MYSQL,
)

users = sa.Table(
    "users",
    metadata,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(36), nullable=False),
    sa.Column("external_id", sa.String(128), nullable=False),
    sa.Column("traits_json", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "external_id", name="uq_users_project_external"),
    **_MYSQL,
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("project_id", sa.String(36), primary_key=True),
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("user_id", sa.String(36)),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("last_seen_at", sa.BigInteger, nullable=False),
    sa.Column("first_path", sa.String(1024), nullable=False),
    sa.Column("user_agent", sa.String(1024)),
    sa.Column("device_json", sa.Text),
    sa.Column("ip_hash", sa.String(64)),
    sa.Index("ix_sessions_project_started", "project_id", "started_at"),
    sa.Index("ix_sessions_id", "id"),
    **_MYSQL,
)

# Indexes created only on some dialects (migrate() also adds them to tables made by older versions).
INDEX_DIALECTS: dict[str, tuple[str, ...]] = {
    "ix_events_project_path_type_ts": ("mysql", "mariadb"),
    "ix_events_heatmap": ("sqlite", "postgresql"),
}

events = sa.Table(
    "events",
    metadata,
    sa.Column("id", _BigId, primary_key=True, autoincrement=True),
    sa.Column("project_id", sa.String(36), nullable=False),
    sa.Column("event_id", sa.String(128), nullable=False),
    sa.Column("point_index", sa.Integer, nullable=False),
    sa.Column("session_id", sa.String(128), nullable=False),
    sa.Column("user_id", sa.String(36)),
    sa.Column("type", sa.String(16), nullable=False),
    sa.Column("ts", sa.BigInteger, nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("selector", sa.String(1024)),
    sa.Column("x", sa.Integer),
    sa.Column("y", sa.Integer),
    sa.Column("scroll_depth", sa.Integer),
    sa.Column("viewport_w", sa.Integer, nullable=False),
    sa.Column("viewport_h", sa.Integer, nullable=False),
    sa.Column("bucket_w", sa.Integer, nullable=False),
    sa.Column("bucket_h", sa.Integer, nullable=False),
    sa.Column("meta_json", sa.Text, nullable=False),
    sa.Column("data_json", sa.Text),
    sa.UniqueConstraint("project_id", "event_id", "point_index", name="uq_events_project_event_point"),
    # MySQL/MariaDB can index only a prefix of path, so no index of theirs can cover the heatmap.
    sa.Index("ix_events_project_path_type_ts", "project_id", "path", "type", "ts", mysql_length={"path": 255}).ddl_if(
        callable_=lambda *_, dialect, **__: dialect.name in INDEX_DIALECTS["ix_events_project_path_type_ts"]
    ),
    # The same key, plus every column the heatmap aggregates: its GROUP BYs read the index only.
    sa.Index(
        "ix_events_heatmap",
        *("project_id", "path", "type", "ts", "x", "y", "bucket_w", "bucket_h", "scroll_depth"),
        postgresql_include=["id"],
    ).ddl_if(callable_=lambda *_, dialect, **__: dialect.name in INDEX_DIALECTS["ix_events_heatmap"]),
    sa.Index("ix_events_project_session_ts", "project_id", "session_id", "ts"),
    sa.Index("ix_events_project_ts", "project_id", "ts"),
    **_MYSQL,
)

# MySQL/MariaDB index only a prefix of path, so the heatmap matches rows by a stored SHA-256 of the
# path instead (the index below covers it); equal digests of two different paths are not a concern.
MYSQL_PATH_KEY: sa.ColumnClause[Any] = sa.literal_column("path_key")
MYSQL_HEATMAP_DDL = (
    ("path_key", "ALTER TABLE events ADD COLUMN path_key BINARY(32) AS (UNHEX(SHA2(path, 256))) STORED"),
    (
        "ix_events_heatmap_key",
        "CREATE INDEX ix_events_heatmap_key ON events "
        "(project_id, path_key, type, ts, x, y, bucket_w, bucket_h, scroll_depth)",
    ),
)

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
    engine = sa.create_engine(url, **kwargs)
    if backend == "sqlite":
        _sqlite_setup(engine)
    return engine
