"""SQLAlchemy Core tables and the SQL repository (SQLite, PostgreSQL, MySQL/MariaDB)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import mysql, postgresql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..errors import StorageUnavailable, UnknownProject
from .base import (
    Batch,
    Cell,
    Event,
    EventFilter,
    HeatmapFrame,
    IngestResult,
    Project,
    Repository,
    Session,
    SessionQuery,
    SessionSummary,
)

T = TypeVar("T")

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
    sa.Index("ix_events_project_path_type_ts", "project_id", "path", "type", "ts", mysql_length={"path": 255}),
    sa.Index("ix_events_project_session_ts", "project_id", "session_id", "ts"),
    sa.Index("ix_events_project_ts", "project_id", "ts"),
    **_MYSQL,
)

# MySQL error codes worth retrying: deadlock, lock wait timeout. PostgreSQL: serialization, deadlock.
_RETRY_CODES = {1213, 1205}
_RETRY_SQLSTATES = {"40001", "40P01"}
_PROJECT_CACHE_SECONDS = 30.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_retryable(exc: DBAPIError) -> bool:
    orig = exc.orig
    code = getattr(orig, "args", [None])[0] if orig is not None else None
    return code in _RETRY_CODES or getattr(orig, "pgcode", None) in _RETRY_SQLSTATES


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
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if backend == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 2}
        kwargs.update(pool_recycle=1800, pool_timeout=5)
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


class SqlRepository(Repository):
    """The repository over SQLAlchemy Core; one transaction per operation."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._engine: Engine | None = None
        self._project_cache: dict[str, tuple[str, float]] = {}

    @property
    def engine(self) -> Engine:
        """Created on first use, so that gunicorn workers each get their own pool after fork."""
        if self._engine is None:
            self._engine = create_sql_engine(self.uri)
        return self._engine

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (UnknownProject, StorageUnavailable):
            raise
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(str(exc.orig)[:200]) from exc
        except (sa.exc.InterfaceError, sa.exc.TimeoutError, sa.exc.DisconnectionError) as exc:
            raise StorageUnavailable(type(exc).__name__) from exc

    def _read(self, fn: Callable[[Connection], T]) -> T:
        with self._guard(), self.engine.connect() as conn:
            return fn(conn)

    def _write(self, fn: Callable[[Connection], T]) -> T:
        attempt = 0
        while True:
            try:
                with self._guard(), self.engine.connect().execution_options(heat_write=True) as conn:
                    with conn.begin():
                        return fn(conn)
            except StorageUnavailable as exc:
                cause = exc.__cause__
                attempt += 1
                if attempt >= 5 or not isinstance(cause, DBAPIError) or not _is_retryable(cause):
                    raise
                time.sleep(0.01 * attempt)

    # -- schema -------------------------------------------------------------

    def migrate(self) -> None:
        def run(conn: Connection) -> None:
            metadata.create_all(conn, checkfirst=True)

        self._write(run)

    # -- ingest -------------------------------------------------------------

    def _insert_ignore(self, table: sa.Table, index_elements: list[str]) -> Any:
        """An INSERT that skips rows clashing with a unique key (and counts only new rows)."""
        if self.dialect == "mysql":
            return sa.insert(table).prefix_with("IGNORE")
        module = postgresql if self.dialect == "postgresql" else sqlite
        return module.insert(table).on_conflict_do_nothing(index_elements=index_elements)

    def _upsert(
        self,
        conn: Connection,
        table: sa.Table,
        values: dict[str, Any],
        keys: list[str],
        update: Callable[[Any], dict[str, Any]],
    ) -> None:
        """One atomic INSERT ... ON CONFLICT/DUPLICATE KEY UPDATE; ``update`` maps the new row to SET values."""
        stmt: Any
        if self.dialect == "mysql":
            stmt = mysql.insert(table).values(values)
            stmt = stmt.on_duplicate_key_update(update(stmt.inserted))
        else:
            module = postgresql if self.dialect == "postgresql" else sqlite
            stmt = module.insert(table).values(values)
            stmt = stmt.on_conflict_do_update(index_elements=keys, set_=update(stmt.excluded))
        conn.execute(stmt)

    def _project_id(self, conn: Connection, key: str, create: bool) -> str:
        cached = self._project_cache.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        found = conn.execute(sa.select(projects.c.id).where(projects.c.key == key)).scalar()
        if found is None:
            if not create:
                raise UnknownProject(key)
            stmt = self._insert_ignore(projects, ["key"]).values(
                id=str(uuid.uuid4()), key=key, name="Default", created_at=_now_ms()
            )
            conn.execute(stmt)
            found = conn.execute(sa.select(projects.c.id).where(projects.c.key == key)).scalar_one()
        self._project_cache[key] = (found, time.monotonic() + _PROJECT_CACHE_SECONDS)
        return str(found)

    def _user_id(self, conn: Connection, project_id: str, external_id: str, traits_json: str | None) -> str:
        self._upsert(
            conn,
            users,
            dict(
                id=str(uuid.uuid4()),
                project_id=project_id,
                external_id=external_id,
                traits_json=traits_json,
                created_at=_now_ms(),
            ),
            ["project_id", "external_id"],
            lambda new: {"traits_json": sa.func.coalesce(new.traits_json, users.c.traits_json)},
        )
        return str(
            conn.execute(
                sa.select(users.c.id).where(users.c.project_id == project_id, users.c.external_id == external_id)
            ).scalar_one()
        )

    def ingest(self, batch: Batch) -> IngestResult:
        def run(conn: Connection) -> IngestResult:
            project_id = self._project_id(conn, batch.project_key, batch.create_project)
            user_id = (
                self._user_id(conn, project_id, batch.external_user_id, batch.user_traits_json)
                if batch.external_user_id
                else None
            )
            s = batch.session
            self._upsert(
                conn,
                sessions,
                dict(
                    project_id=project_id,
                    id=s.id,
                    user_id=user_id,
                    started_at=s.started_at,
                    last_seen_at=s.last_seen_at,
                    first_path=s.first_path,
                    user_agent=s.user_agent,
                    device_json=s.device_json,
                    ip_hash=s.ip_hash,
                ),
                ["project_id", "id"],
                lambda new: {
                    "last_seen_at": sa.case(
                        (new.last_seen_at > sessions.c.last_seen_at, new.last_seen_at),
                        else_=sessions.c.last_seen_at,
                    ),
                    "user_id": sa.func.coalesce(new.user_id, sessions.c.user_id),
                },
            )
            rows = [{**row.__dict__, "project_id": project_id, "user_id": user_id} for row in batch.events]
            accepted = self._insert_events(conn, rows) if rows else 0
            return IngestResult(project_id=project_id, accepted=accepted, duplicates=len(rows) - accepted)

        return self._write(run)

    def _insert_events(self, conn: Connection, rows: list[dict[str, Any]]) -> int:
        stmt = self._insert_ignore(events, ["project_id", "event_id", "point_index"])
        if self.dialect == "mysql":
            return int(conn.execute(stmt.values(rows)).rowcount)
        return len(conn.execute(stmt.returning(events.c.id), rows).all())

    # -- queries ------------------------------------------------------------

    @staticmethod
    def _where(flt: EventFilter) -> list[Any]:
        clauses: list[Any] = [events.c.project_id == flt.project_id]
        if flt.path is not None:
            clauses.append(events.c.path == flt.path)
        if flt.types is not None:
            clauses.append(events.c.type.in_(flt.types))
        if flt.ts_from is not None:
            clauses.append(events.c.ts >= flt.ts_from)
        if flt.ts_to is not None:
            clauses.append(events.c.ts <= flt.ts_to)
        return clauses

    def count_by_type(self, flt: EventFilter) -> dict[str, int]:
        stmt = sa.select(events.c.type, sa.func.count()).where(*self._where(flt)).group_by(events.c.type)
        return self._read(lambda conn: {t: int(n) for t, n in conn.execute(stmt)})

    def heatmap_frame(self, flt: EventFilter) -> HeatmapFrame:
        where = self._where(flt)
        n = sa.func.count().label("n")
        bucket_stmt = (
            sa.select(events.c.bucket_w, events.c.bucket_h, n)
            .where(*where)
            .group_by(events.c.bucket_w, events.c.bucket_h)
            .order_by(n.desc(), sa.func.min(events.c.id))
            .limit(1)
        )
        max_y_stmt = sa.select(sa.func.max(events.c.y)).where(*where, events.c.type != "scroll")

        def run(conn: Connection) -> HeatmapFrame:
            top = conn.execute(bucket_stmt).first()
            max_y = conn.execute(max_y_stmt).scalar()
            return HeatmapFrame(
                bucket=(int(top[0]), int(top[1])) if top else None,
                max_y=int(max_y) if max_y is not None else None,
            )

        return self._read(run)

    def heatmap_cells(self, flt: EventFilter, width: int, height: int, resolution: int) -> list[Cell]:
        res = sa.literal(resolution, sa.Integer)

        def index(col: Any, size: int) -> Any:
            raw = (col * res) // sa.literal(size, sa.Integer)
            return sa.case((raw < 0, 0), (raw > resolution - 1, resolution - 1), else_=raw)

        cx, cy = index(events.c.x, width).label("cx"), index(events.c.y, height).label("cy")
        stmt = (
            sa.select(cx, cy, sa.func.count())
            .where(*self._where(flt), events.c.type != "scroll", events.c.x.is_not(None), events.c.y.is_not(None))
            .group_by(cx, cy)
        )
        return self._read(lambda conn: [Cell(int(a), int(b), int(c)) for a, b, c in conn.execute(stmt)])

    def scroll_depths(self, flt: EventFilter) -> list[tuple[int, int]]:
        stmt = (
            sa.select(events.c.scroll_depth, sa.func.count())
            .where(*self._where(flt), events.c.type == "scroll", events.c.scroll_depth.is_not(None))
            .group_by(events.c.scroll_depth)
        )
        return self._read(lambda conn: [(int(d), int(c)) for d, c in conn.execute(stmt)])

    @staticmethod
    def _event(row: Any) -> Event:
        return Event(
            id=f"{row.event_id}:{row.point_index}",
            event_id=row.event_id,
            project_id=row.project_id,
            session_id=row.session_id,
            user_id=row.user_id,
            type=row.type,
            ts=int(row.ts),
            path=row.path,
            selector=row.selector,
            x=row.x,
            y=row.y,
            scroll_depth=row.scroll_depth,
            meta_json=row.meta_json,
            data=json.loads(row.data_json) if row.data_json else None,
        )

    def list_events(self, flt: EventFilter, limit: int, offset: int) -> list[Event]:
        stmt = sa.select(events).where(*self._where(flt)).order_by(events.c.ts, events.c.id).limit(limit).offset(offset)
        return self._read(lambda conn: [self._event(r) for r in conn.execute(stmt)])

    def list_sessions(self, query: SessionQuery) -> list[SessionSummary]:
        count = (
            sa.select(sa.func.count())
            .where(events.c.project_id == sessions.c.project_id, events.c.session_id == sessions.c.id)
            .scalar_subquery()
        )
        clauses: list[Any] = [sessions.c.project_id == query.project_id]
        if query.user_id is not None:
            clauses.append(sessions.c.user_id == query.user_id)
        if query.first_path is not None:
            clauses.append(sessions.c.first_path == query.first_path)
        if query.started_from is not None:
            clauses.append(sessions.c.started_at >= query.started_from)
        if query.last_seen_to is not None:
            clauses.append(sessions.c.last_seen_at <= query.last_seen_to)
        stmt = (
            sa.select(
                sessions.c.id,
                sessions.c.user_id,
                sessions.c.started_at,
                sessions.c.last_seen_at,
                sessions.c.first_path,
                count.label("event_count"),
            )
            .where(*clauses)
            .order_by(sessions.c.started_at, sessions.c.id)
            .limit(query.limit)
            .offset(query.offset)
        )
        return self._read(
            lambda conn: [
                SessionSummary(
                    r.id, r.user_id, int(r.started_at), int(r.last_seen_at), r.first_path, int(r.event_count)
                )
                for r in conn.execute(stmt)
            ]
        )

    def get_session(self, session_id: str, project_id: str | None) -> Session | None:
        stmt = sa.select(sessions).where(sessions.c.id == session_id)
        if project_id is not None:
            stmt = stmt.where(sessions.c.project_id == project_id)
        row = self._read(lambda conn: conn.execute(stmt.order_by(sessions.c.started_at).limit(1)).first())
        if row is None:
            return None
        return Session(
            id=row.id,
            project_id=row.project_id,
            user_id=row.user_id,
            started_at=int(row.started_at),
            last_seen_at=int(row.last_seen_at),
            first_path=row.first_path,
            user_agent=row.user_agent,
            device_json=row.device_json,
            ip_hash=row.ip_hash,
        )

    def session_events(self, session: Session, types: tuple[str, ...] | None, limit: int, offset: int) -> list[Event]:
        flt = EventFilter(project_id=session.project_id, types=types)
        stmt = (
            sa.select(events)
            .where(*self._where(flt), events.c.session_id == session.id)
            .order_by(events.c.ts, events.c.id)
            .limit(limit)
            .offset(offset)
        )
        return self._read(lambda conn: [self._event(r) for r in conn.execute(stmt)])

    # -- projects -----------------------------------------------------------

    @staticmethod
    def _project(row: Any) -> Project:
        return Project(id=row.id, key=row.key, name=row.name, created_at=int(row.created_at))

    def create_project(self, key: str, name: str) -> Project:
        values = dict(id=str(uuid.uuid4()), key=key, name=name, created_at=_now_ms())
        self._write(lambda conn: conn.execute(sa.insert(projects).values(values)))
        return Project(**values)  # type: ignore[arg-type]

    def list_projects(self) -> list[Project]:
        stmt = sa.select(projects).order_by(projects.c.created_at, projects.c.id)
        return self._read(lambda conn: [self._project(r) for r in conn.execute(stmt)])

    def rotate_project_key(self, project_id: str, new_key: str) -> Project | None:
        def run(conn: Connection) -> Project | None:
            conn.execute(sa.update(projects).where(projects.c.id == project_id).values(key=new_key))
            row = conn.execute(sa.select(projects).where(projects.c.id == project_id)).first()
            return self._project(row) if row else None

        self._project_cache.clear()
        return self._write(run)
