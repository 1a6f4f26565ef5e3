"""The SQL repository (SQLite, PostgreSQL, MySQL/MariaDB) over the tables of ``sql_schema``."""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from ..errors import StorageUnavailable, UnknownProject
from .base import (
    Batch,
    Cell,
    Event,
    EventFilter,
    HeatmapFrame,
    HeatmapSummary,
    IngestResult,
    Project,
    Repository,
    Session,
    SessionQuery,
    SessionSummary,
)
from .sql_ingest import IngestStatements, insert_ignore, session_values
from .sql_schema import (
    INDEX_DIALECTS,
    MIGRATE_LOCK_ID,
    MIGRATE_LOCK_NAME,
    MYSQL_HEATMAP_DDL,
    MYSQL_PATH_KEY,
    create_sql_engine,
    events,
    metadata,
    projects,
    sessions,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's own busy handler waits
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

# MySQL error codes worth retrying: deadlock, lock wait timeout. PostgreSQL: serialization, deadlock.
_RETRY_CODES = {1213, 1205}
_RETRY_SQLSTATES = {"40001", "40P01"}
_PROJECT_CACHE_SECONDS = 30.0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_retryable(exc: DBAPIError) -> bool:
    """Deadlocks, lock timeouts and serialization failures; a pooled connection found dead."""
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    code = getattr(orig, "args", [None])[0] if orig is not None else None
    return code in _RETRY_CODES or getattr(orig, "pgcode", None) in _RETRY_SQLSTATES


class SqlRepository(Repository):
    """The repository over SQLAlchemy Core; one transaction per operation."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self._engine: Engine | None = None
        self._project_cache: dict[str, tuple[str, float]] = {}
        self._ingest: IngestStatements | None = None
        url = sa.make_url(uri)
        database = url.database or ""
        file_db = url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
        self._sqlite_path: str | None = os.path.abspath(database) if file_db else None
        self._writer_mutex = threading.Lock()
        self._lock_file: IO[bytes] | None = None
        self._lock_pid = 0

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
        for attempt in (1, 2):
            try:
                with self._guard(), self.engine.connect() as conn:
                    return fn(conn)
            except StorageUnavailable as exc:
                cause = exc.__cause__
                if attempt == 2 or not isinstance(cause, DBAPIError) or not cause.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    @contextmanager
    def _writer_turn(self) -> Iterator[None]:
        """On a SQLite file, wait for the write lock in the kernel (flock), not in SQLite.

        SQLite's busy handler polls with sleeps of up to 100 ms, so with several gunicorn workers
        a waiting batch often sleeps past the moment the lock is freed (p99 latency triples); a
        blocking ``flock`` on a side file wakes the next writer as soon as the lock is free.
        Other databases (and ``:memory:``) need no turn.
        """
        path = self._sqlite_path
        if path is None or fcntl is None:
            yield
            return
        with self._writer_mutex:
            if self._lock_file is None or self._lock_pid != os.getpid():
                self._lock_file = open(path + "-heatlock", "a+b")
                self._lock_pid = os.getpid()
            fd = self._lock_file.fileno()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _write(self, fn: Callable[[Connection], T], *, autocommit: bool = False) -> T:
        """Run ``fn`` in one transaction (or, with ``autocommit``, statement by statement).

        Deadlocks, serialization failures and dead pooled connections are retried.
        """
        attempt = 0
        while True:
            try:
                with self._writer_turn(), self._guard(), self._connect(autocommit) as conn:
                    if autocommit:
                        return fn(conn)
                    with conn.begin():
                        return fn(conn)
            except StorageUnavailable as exc:
                cause = exc.__cause__
                attempt += 1
                if attempt >= 5 or not isinstance(cause, DBAPIError) or not _is_retryable(cause):
                    raise
                time.sleep(0.01 * attempt)

    def _connect(self, autocommit: bool) -> Connection:
        conn = self.engine.connect()
        if self.dialect == "postgresql":  # the engine autocommits (see create_sql_engine)
            return conn if autocommit else conn.execution_options(isolation_level="READ COMMITTED")
        if autocommit:
            return conn.execution_options(isolation_level="AUTOCOMMIT")
        return conn.execution_options(heat_write=True)

    # -- schema -------------------------------------------------------------

    def migrate(self) -> None:
        def run(conn: Connection) -> None:
            # Gunicorn workers each run migrate() at start: one at a time, or two CREATE TABLEs race.
            # (SQLite writers are already serialized by BEGIN IMMEDIATE.)
            dialect = conn.dialect.name
            if dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK_ID})")  # until commit
            elif dialect == "mysql":
                conn.exec_driver_sql(f"SELECT GET_LOCK('{MIGRATE_LOCK_NAME}', 120)")
            try:
                _migrate(conn, dialect)
            finally:
                if dialect == "mysql":
                    conn.exec_driver_sql(f"SELECT RELEASE_LOCK('{MIGRATE_LOCK_NAME}')")

        def _migrate(conn: Connection, dialect: str) -> None:
            metadata.create_all(conn, checkfirst=True)
            # create_all skips existing tables: add the indexes that older versions did not have.
            for table in metadata.sorted_tables:
                existing = {ix["name"] for ix in sa.inspect(conn).get_indexes(table.name)}
                for index in table.indexes:
                    wanted = dialect in INDEX_DIALECTS.get(str(index.name), (dialect,))
                    if wanted and index.name not in existing:
                        index.create(conn)
                    elif not wanted and index.name in existing:
                        conn.execute(sa.schema.DropIndex(index))  # superseded here (by ix_events_heatmap)
            if dialect == "mysql":
                inspector = sa.inspect(conn)
                present = {c["name"] for c in inspector.get_columns("events")}
                present |= {str(ix["name"]) for ix in inspector.get_indexes("events")}
                for name, ddl in MYSQL_HEATMAP_DDL:
                    if name not in present:
                        conn.exec_driver_sql(ddl)

        self._write(run)

    # -- ingest -------------------------------------------------------------

    @property
    def _statements(self) -> IngestStatements:
        """The ingest statements, built once (SQLAlchemy then reuses their compiled form)."""
        if self._ingest is None:
            self._ingest = IngestStatements(self.engine.dialect)
        return self._ingest

    def _project_id(self, conn: Connection, key: str, create: bool) -> str:
        cached = self._project_cache.get(key)
        if cached and cached[1] > time.monotonic():
            return cached[0]
        found = conn.execute(sa.select(projects.c.id).where(projects.c.key == key)).scalar()
        if found is None:
            if not create:
                raise UnknownProject(key)
            stmt = insert_ignore(self.dialect, projects, ["key"]).values(
                id=str(uuid.uuid4()), key=key, name="Default", created_at=_now_ms()
            )
            conn.execute(stmt)
            found = conn.execute(sa.select(projects.c.id).where(projects.c.key == key)).scalar_one()
        self._project_cache[key] = (found, time.monotonic() + _PROJECT_CACHE_SECONDS)
        return str(found)

    def _user_id(self, conn: Connection, project_id: str, external_id: str, traits_json: str | None) -> str:
        st = self._statements
        params = dict(
            id=str(uuid.uuid4()),
            project_id=project_id,
            external_id=external_id,
            traits_json=traits_json,
            created_at=_now_ms(),
        )
        if st.user_select is None:  # RETURNING: one round trip
            return str(conn.execute(st.user_upsert, params).scalar_one())
        conn.execute(st.user_upsert, params)
        return str(conn.execute(st.user_select, params).scalar_one())

    def ingest(self, batch: Batch) -> IngestResult:
        st = self._statements
        if st.one_statement:
            return self._ingest_one_statement(batch)

        def run(conn: Connection) -> IngestResult:
            project_id = self._project_id(conn, batch.project_key, batch.create_project)
            user_id = (
                self._user_id(conn, project_id, batch.external_user_id, batch.user_traits_json)
                if batch.external_user_id
                else None
            )
            conn.execute(st.session_upsert, session_values(batch.session, project_id, user_id))
            accepted = 0
            for start in range(0, len(batch.events), st.chunk):
                chunk = batch.events[start : start + st.chunk]
                params = st.events_params(project_id, user_id, chunk)
                accepted += int(conn.exec_driver_sql(st.events_sql(len(chunk)), params).rowcount)
            return IngestResult(project_id=project_id, accepted=accepted, duplicates=len(batch.events) - accepted)

        return self._write(run)

    def _ingest_one_statement(self, batch: Batch) -> IngestResult:
        """PostgreSQL: the whole batch in one autocommit statement (atomic, one round trip)."""
        st = self._statements
        sql = st.one_statement[batch.external_user_id is not None]

        def run(conn: Connection) -> IngestResult:
            project_id = self._project_id(conn, batch.project_key, batch.create_project)
            user_uuid = str(uuid.uuid4()) if batch.external_user_id is not None else None
            params = st.pg_batch_params(batch, project_id, user_uuid, _now_ms())
            accepted = int(conn.exec_driver_sql(sql, params).rowcount)
            return IngestResult(project_id=project_id, accepted=accepted, duplicates=len(batch.events) - accepted)

        return self._write(run, autocommit=True)

    # -- queries ------------------------------------------------------------

    def _where(self, flt: EventFilter, *, aggregate: bool = False) -> list[Any]:
        """The filter's clauses; ``aggregate`` lets MySQL match the path by its SHA-256 (index only)."""
        clauses: list[Any] = [events.c.project_id == flt.project_id]
        if flt.path is not None and aggregate and self.dialect == "mysql":
            clauses.append(MYSQL_PATH_KEY == sa.func.unhex(sa.func.sha2(sa.literal(flt.path), 256)))
        elif flt.path is not None:
            clauses.append(events.c.path == flt.path)
        if flt.types is not None:
            clauses.append(events.c.type.in_(flt.types))
        if flt.ts_from is not None:
            clauses.append(events.c.ts >= flt.ts_from)
        if flt.ts_to is not None:
            clauses.append(events.c.ts <= flt.ts_to)
        return clauses

    def count_by_type(self, flt: EventFilter) -> dict[str, int]:
        stmt = (
            sa.select(events.c.type, sa.func.count()).where(*self._where(flt, aggregate=True)).group_by(events.c.type)
        )
        return self._read(lambda conn: {t: int(n) for t, n in conn.execute(stmt)})

    def heatmap_frame(self, flt: EventFilter) -> HeatmapFrame:
        where = self._where(flt, aggregate=True)
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

    def heatmap_summary(self, flt: EventFilter) -> HeatmapSummary:
        """Rows per type, the most common bucket and the largest y, in one grouped pass."""
        stmt = (
            sa.select(
                events.c.type,
                events.c.bucket_w,
                events.c.bucket_h,
                sa.func.count(),
                sa.func.min(events.c.id),
                sa.func.max(events.c.y),
            )
            .where(*self._where(flt, aggregate=True))
            .group_by(events.c.type, events.c.bucket_w, events.c.bucket_h)
        )
        groups = self._read(lambda conn: conn.execute(stmt).all())
        if not groups:
            return HeatmapSummary(by_type={}, frame=None)
        by_type: dict[str, int] = {}
        buckets: dict[tuple[int, int], tuple[int, int]] = {}  # bucket -> (rows, -first id)
        max_y: int | None = None
        for kind, bucket_w, bucket_h, rows, first_id, top_y in groups:
            by_type[kind] = by_type.get(kind, 0) + int(rows)
            bucket = (int(bucket_w), int(bucket_h))
            seen, first = buckets.get(bucket, (0, 0))
            buckets[bucket] = (seen + int(rows), max(first, -int(first_id)) if seen else -int(first_id))
            if kind != "scroll" and top_y is not None:
                max_y = int(top_y) if max_y is None else max(max_y, int(top_y))
        # Most rows wins; a tie goes to the bucket seen first (as ORDER BY count DESC, MIN(id)).
        bucket = max(buckets, key=lambda b: buckets[b])
        return HeatmapSummary(by_type=by_type, frame=HeatmapFrame(bucket=bucket, max_y=max_y))

    def heatmap_cells(self, flt: EventFilter, width: int, height: int, resolution: int) -> list[Cell]:
        res = sa.literal(resolution, sa.BigInteger)
        last = sa.literal(resolution - 1, sa.BigInteger)
        low, high = (sa.func.max, sa.func.min) if self.dialect == "sqlite" else (sa.func.greatest, sa.func.least)

        def index(col: Any, size: int) -> Any:
            # BIGINT: a coordinate may reach 10^7, times a resolution of up to 1024.
            raw = (sa.cast(col, sa.BigInteger) * res) // sa.literal(size, sa.BigInteger)
            return high(low(raw, sa.literal(0, sa.BigInteger)), last)

        # One integer key per cell (cy * resolution + cx): a cheaper GROUP BY than two expressions.
        cell = (index(events.c.y, height) * res + index(events.c.x, width)).label("cell")
        stmt = (
            sa.select(cell, sa.func.count())
            .where(
                *self._where(flt, aggregate=True),
                events.c.type != "scroll",
                events.c.x.is_not(None),
                events.c.y.is_not(None),
            )
            .group_by(cell)
        )
        rows = self._read(lambda conn: conn.execute(stmt).all())
        return [Cell(int(key) % resolution, int(key) // resolution, int(count)) for key, count in rows]

    def scroll_depths(self, flt: EventFilter) -> list[tuple[int, int]]:
        stmt = (
            sa.select(events.c.scroll_depth, sa.func.count())
            .where(*self._where(flt, aggregate=True), events.c.type == "scroll", events.c.scroll_depth.is_not(None))
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
