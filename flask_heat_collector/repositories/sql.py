"""The SQL repository (SQLite, PostgreSQL, MySQL/MariaDB) over the tables of ``sql_schema``."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import IO, Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from .. import report_pieces
from ..aggregates import (
    ROLLED,
    batch_pieces,
    compaction,
    finished_before,
    fresh_part,
    month_code,
    month_of,
    piece_ranges,
    roll_month,
)
from ..errors import RetiredProjectKey, StorageUnavailable, UnknownProject
from ..ingest import move_stamps, move_tail, pack_points
from ..rageclicks import DEFAULT_RULE, idle_token, new_token
from ..signals import DEFAULT_RULES, SIGNAL_TYPES, Signal
from ..traffic import BOT, behaviour_reason
from ..traffic import DEFAULT_RULES as DEFAULT_TRAFFIC_RULES
from . import (
    base,
    sql_compaction,
    sql_erase,
    sql_purge,
    sql_rage,
    sql_reports,
    sql_signals,
    sql_statistics,
    sql_traffic,
)
from .sql_erase import PiecesChanged
from .sql_ingest import (
    IngestStatements,
    PreparedStatement,
    after_key,
    crossing,
    executemany,
    forget_long_moves,
    insert_ignore,
    long_move_params,
    session_values,
)
from .sql_migrate import migrate_schema, rebuild_aggregates
from .sql_schema import (
    MIGRATE_LOCK_ID,
    MIGRATE_LOCK_NAME,
    bot_sessions,
    create_sql_engine,
    delete_keyed,
    events,
    heat_aggregates,
    heat_report_pieces,
    path_clauses,
    projects,
    retired_keys,
    select_keyed,
    session_types,
    sessions,
    traffic_clauses,
    users,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: SQLite's own busy handler waits
    fcntl = None  # type: ignore[assignment]

T = TypeVar("T")

# MySQL error codes worth retrying: deadlock, lock wait timeout. PostgreSQL: serialization, deadlock.
_RETRY_CODES = {1213, 1205}
_RETRY_SQLSTATES = {"40001", "40P01"}
_STORED_COLUMNS = [events.c[name] for name in base.STORED_FIELDS]
_JSON_FIELDS = ("meta_json", "data_json")
_HEAVY = ("path", "selector", *_JSON_FIELDS)
_LIGHT_COLUMNS = [sa.null() if name in _HEAVY else events.c[name] for name in base.STORED_FIELDS]
_TEXT_COLUMNS = [sa.null() if name in _JSON_FIELDS else events.c[name] for name in base.STORED_FIELDS]
_COUNT_COLUMNS = [sa.null() if name in (*_HEAVY, "points") else events.c[name] for name in base.STORED_FIELDS]
_AGGREGATE_KEY = ("project_id", "path_key", "day", "type", "bucket_w", "bucket_h", "view_w")
_MONTH_KEY = ("project_id", "path_key", "type", "bucket_w", "bucket_h", "view_w")


def _inside(ts_from: int | None, ts_to: int | None) -> list[Any]:
    """Events whose rows all lie in ``ts_from..ts_to`` (a move: from its first to its last point)."""
    clauses: list[Any] = []
    if ts_from is not None:
        clauses.append(events.c.ts >= ts_from)
    if ts_to is not None:
        clauses += [events.c.ts <= ts_to, events.c.ts + events.c.span <= ts_to]
    return clauses


class _Raced(Exception):
    """Another transaction stored some of this batch's events meanwhile: store it again."""


class _Duplicates(Exception):
    """Some events of the batch were stored before: the batch is stored by the exact path."""


def _now_ms() -> int:
    return int(time.time() * 1000)


def _is_retryable(exc: DBAPIError) -> bool:
    """Deadlocks, lock timeouts and serialization failures; a pooled connection found dead."""
    if exc.connection_invalidated:
        return True
    orig = exc.orig
    code = getattr(orig, "args", [None])[0] if orig is not None else None
    return code in _RETRY_CODES or getattr(orig, "pgcode", None) in _RETRY_SQLSTATES


def _isolated(conn: Connection, level: str) -> Connection:
    """``conn`` at isolation ``level``.

    Setting the level talks to the server (psycopg2), outside any statement, so SQLAlchemy neither
    wraps the driver's error nor sees a disconnect: a pooled connection the server has closed would
    be a 500. The error is wrapped here as a statement's would be (the connection invalidated when
    it is dead), so it is retried on a fresh connection, or answered 503 while the database is down.
    """
    try:
        return conn.execution_options(isolation_level=level)
    except conn.dialect.loaded_dbapi.Error as exc:
        dead = conn.dialect.is_disconnect(exc, None, None)
        if dead:
            conn.invalidate()
        conn.close()
        raise DBAPIError.instance(
            None, None, exc, conn.dialect.loaded_dbapi.Error, connection_invalidated=dead, dialect=conn.dialect
        ) from exc


class SqlRepository(base.Repository):
    """The repository over SQLAlchemy Core; one transaction per operation."""

    def __init__(self, uri: str) -> None:
        self.rage_rule = DEFAULT_RULE
        self.signal_rules = DEFAULT_RULES
        self.traffic_rules = DEFAULT_TRAFFIC_RULES
        self.uri = uri
        self._engine: Engine | None = None
        self.tally = base.ReadTally()
        self._spans: dict[str, int] = {}  # the max_span of each project as this process last raised it
        self._ingest: IngestStatements | None = None
        self._statistics = sql_statistics.Statistics()
        url = sa.make_url(uri)
        database = url.database or ""
        file_db = url.get_backend_name() == "sqlite" and database not in ("", ":memory:")
        self._sqlite_path: str | None = os.path.abspath(database) if file_db else None
        memory_db = url.get_backend_name() == "sqlite" and not file_db
        # An in-memory SQLite database is one shared connection (StaticPool): one operation at a time.
        self._memory_lock: threading.RLock | None = threading.RLock() if memory_db else None
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
        # Closing an in-memory database's one connection would drop its data: it lives with the engine.
        if self._engine is not None and self._memory_lock is None:
            self._engine.dispose()

    def _memory_turn(self) -> AbstractContextManager[Any]:
        return self._memory_lock if self._memory_lock is not None else nullcontext()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except (UnknownProject, RetiredProjectKey, StorageUnavailable):
            raise
        except sa.exc.OperationalError as exc:
            raise StorageUnavailable(str(exc.orig)[:200]) from exc
        except (sa.exc.InterfaceError, sa.exc.TimeoutError, sa.exc.DisconnectionError) as exc:
            raise StorageUnavailable(type(exc).__name__) from exc

    def _read(self, fn: Callable[[Connection], T]) -> T:
        for attempt in (1, 2):
            try:
                with self._memory_turn(), self._guard(), self.engine.connect() as conn:
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
                try:
                    self._lock_file = open(path + "-heatlock", "a+b")
                except OSError as exc:  # its folder is missing or read-only: unreachable, as a down server
                    raise StorageUnavailable(f"cannot open {path}-heatlock: {exc.strerror}") from exc
                self._lock_pid = os.getpid()
            fd = self._lock_file.fileno()
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _write(self, fn: Callable[[Connection], T], *, autocommit: bool = False, snapshot: bool = False) -> T:
        """Run ``fn`` in one transaction (or, with ``autocommit``, statement by statement).

        Deadlocks, serialization failures and dead pooled connections are retried.
        """
        attempt = 0
        while True:
            try:
                with (
                    self._memory_turn(),
                    self._writer_turn(),
                    self._guard(),
                    self._connect(autocommit, snapshot) as conn,
                ):
                    if autocommit:
                        return fn(conn)
                    with conn.begin():
                        return fn(conn)
            except (_Raced, PiecesChanged):
                attempt += 1
                if attempt >= 5:
                    raise StorageUnavailable("concurrent batches kept storing the same events") from None
            except StorageUnavailable as exc:
                cause = exc.__cause__
                attempt += 1
                if attempt >= 5 or not isinstance(cause, DBAPIError) or not _is_retryable(cause):
                    raise
                time.sleep(0.01 * attempt)

    def _connect(self, autocommit: bool, snapshot: bool = False) -> Connection:
        conn = self.engine.connect()
        if snapshot and self.dialect in ("postgresql", "mysql"):  # one snapshot for every read
            return _isolated(conn, "REPEATABLE READ")
        if self.dialect == "postgresql":  # the engine autocommits (see create_sql_engine)
            return conn if autocommit else _isolated(conn, "READ COMMITTED")
        if autocommit:
            return _isolated(conn, "AUTOCOMMIT")
        return conn.execution_options(heat_write=True)

    # -- schema -------------------------------------------------------------

    def migrate(self) -> base.Migration:
        def run(conn: Connection) -> base.Migration:
            # Gunicorn workers each run migrate() at start: one at a time, or two CREATE TABLEs race.
            # (SQLite writers are already serialized by BEGIN IMMEDIATE.)
            dialect = conn.dialect.name
            if dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATE_LOCK_ID})")  # until commit
            elif dialect == "mysql":
                got = conn.exec_driver_sql(f"SELECT GET_LOCK('{MIGRATE_LOCK_NAME}', 600)").scalar()
                if got != 1:
                    raise StorageUnavailable("another process held the migration lock for 10 minutes")
            try:
                migration = migrate_schema(conn, self._statements)
            except BaseException:
                # The connection may be dead (the server went away mid-migration): the server drops a
                # dead session's named lock itself, and the error that stopped the migration is the one
                # to report (StorageUnavailable at start, retried), not a failed RELEASE_LOCK.
                if dialect == "mysql":
                    with contextlib.suppress(sa.exc.SQLAlchemyError):
                        conn.exec_driver_sql(f"SELECT RELEASE_LOCK('{MIGRATE_LOCK_NAME}')")
                raise
            if dialect == "mysql":
                conn.exec_driver_sql(f"SELECT RELEASE_LOCK('{MIGRATE_LOCK_NAME}')")
            return migration

        return self._write(run)

    def rebuild_aggregates(self) -> int:
        return self._write(lambda conn: rebuild_aggregates(conn, self._statements))

    # -- ingest -------------------------------------------------------------

    @property
    def _statements(self) -> IngestStatements:
        """The ingest statements, built once (SQLAlchemy then reuses their compiled form)."""
        if self._ingest is None:
            self._ingest = IngestStatements(self.engine.dialect)
        return self._ingest

    @staticmethod
    def _project_id(conn: Connection, key: str) -> str:
        """The project holding ``key`` now; UnknownProject or RetiredProjectKey."""
        found = conn.execute(sa.select(projects.c.id).where(projects.c.key == key)).scalar()
        if found is None:
            if conn.execute(sa.select(retired_keys.c.key).where(retired_keys.c.key == key)).first() is not None:
                raise RetiredProjectKey(key)
            raise UnknownProject(key)
        return str(found)

    def _user_id(
        self, conn: Connection, project_id: str, external_id: str, traits_json: str | None
    ) -> tuple[str, bool]:
        """The internal id of the user, made when new, and whether the user was erased (a tombstone)."""
        st = self._statements
        params = dict(
            id=str(uuid.uuid4()),
            project_id=project_id,
            external_id=external_id,
            traits_json=traits_json,
            created_at=_now_ms(),
        )
        if st.user_select is None:  # RETURNING: one round trip
            row = conn.execute(st.user_upsert, params).one()
        else:
            conn.execute(st.user_upsert, params)
            row = conn.execute(st.user_select, params).one()
        return str(row.id), row.erased_at is not None

    def ingest(self, batch: base.Batch) -> base.IngestResult:
        known_duplicates = False
        if self._statements.one_statement:
            try:
                return self._ingest_one_statement(batch)
            except sa.exc.DataError as exc:  # some rows were duplicates: the exact path below
                if getattr(exc.orig, "pgcode", None) != "22012":
                    raise
                known_duplicates = True
            except sa.exc.IntegrityError as exc:  # no project has the key: the path below says why
                if getattr(exc.orig, "pgcode", None) != "23502":
                    raise
        raised: dict[str, int] = {}

        def run(conn: Connection, exact: bool) -> base.IngestResult:
            raised.clear()
            return self._ingest_rows(conn, batch, raised, exact)

        try:  # most batches are all new: insert them at once, no lookup first
            result = self._write(lambda conn: run(conn, known_duplicates))
        except _Duplicates:  # rolled back: store the new rows only
            result = self._write(lambda conn: run(conn, True))
        for project_id, span in raised.items():  # known only once committed (a retry starts over)
            self._spans[project_id] = max(span, self._spans.get(project_id, 0))
        return result

    def _raise_span(self, conn: Connection, project_id: str, span: int, raised: dict[str, int]) -> None:
        """Make projects.max_span at least ``span`` (skipped when this process knows it already is)."""
        if span > max(self._spans.get(project_id, 0), raised.get(project_id, 0)):
            conn.execute(self._statements.raise_span, {"pid": project_id, "span": span})
            raised[project_id] = span

    def _ingest_rows(
        self, conn: Connection, batch: base.Batch, raised: dict[str, int], exact: bool
    ) -> base.IngestResult:
        """In one transaction: upserts, then only the events not stored yet and their aggregate pieces.

        Not ``exact``: every event is inserted at once, and :class:`_Duplicates` (rolling the
        transaction back) when some were stored already. ``exact``: the stored ids are looked up
        first, resent moves extended, and only new events inserted.
        """
        st = self._statements
        project_id = self._project_id(conn, batch.project_key)
        user_id: str | None = None
        if batch.external_user_id:
            user_id, erased = self._user_id(conn, project_id, batch.external_user_id, batch.user_traits_json)
            if erased:
                return base.IngestResult(project_id=project_id, accepted=0, duplicates=0, erased_user=True)
        self._raise_span(conn, project_id, batch.span, raised)
        rows = batch.events
        tails: list[base.EventRow] = []
        if rows and exact:
            ids = [r.event_id for r in rows]
            stored = {
                eid: (kind, n) for eid, kind, n in conn.execute(st.existing_ids, {"project_id": project_id, "ids": ids})
            }
            for row in rows:
                if row.type == "move" and stored.get(row.event_id, ("", 0))[0] == "move":
                    tail = self._extend_move(conn, project_id, row, raised)
                    if tail is not None:
                        tails.append(tail)
            rows = [r for r in rows if r.event_id not in stored]
        if rows and executemany(conn, st.events_sql, st.events_params(project_id, user_id, rows)) != len(rows):
            # Not exact: some were stored before. Exact: a concurrent batch (MySQL) stored some of
            # them first; either way this transaction starts over.
            raise _Raced() if exact else _Duplicates()
        if long_entries := long_move_params(project_id, rows):
            executemany(conn, st.long_moves_sql, long_entries)
        traffic = self._stored_traffic(conn, project_id, batch.session)
        if (rows or tails) and traffic != BOT:
            part = fresh_part()
            pieces = batch_pieces(rows + tails, part)
            executemany(conn, st.pieces_sql, st.pieces_params(project_id, pieces))
            reports = report_pieces.batch_pieces(rows + tails, batch.session.id, part)
            executemany(conn, st.reports_sql, [(project_id, *piece) for piece in reports])
        accepted = sum(r.row_count for r in rows) + sum(t.row_count for t in tails)
        conn.execute(st.session_upsert, session_values(batch.session, project_id, user_id, accepted))
        if any(row.type in SIGNAL_TYPES for row in rows):  # after the session: erase and purge lock in that order
            executemany(conn, st.rage_mark_sql, [(project_id, batch.session.id, new_token())])
        return base.IngestResult(
            project_id=project_id,
            accepted=accepted,
            duplicates=batch.row_count - accepted,
            traffic=traffic,
            bot_suspect=self._bot_suspect(conn, project_id, batch, traffic),
        )

    def _bot_suspect(self, conn: Connection, project_id: str, batch: base.Batch, traffic: str) -> bool:
        """Whether the session's stored clicks (this batch's too, on ``conn``) break a behaviour rule
        without their moves counted (moves only ever clear one): then ``classify_sessions`` decides."""
        if traffic == BOT or not any(row.type == "click" for row in batch.events):
            return False
        found = conn.execute(
            self._statements.session_clicks, {"project_id": project_id, "session_id": batch.session.id}
        )
        return behaviour_reason([int(ts) for ts in found.scalars()], (), self.traffic_rules) is not None

    @staticmethod
    def _stored_traffic(conn: Connection, project_id: str, session: base.SessionRow) -> str:
        """The session's stored class, else (its first batch) the class its agent gives it."""
        stmt = sa.select(sessions.c.traffic).where(sessions.c.project_id == project_id, sessions.c.id == session.id)
        return str(conn.execute(stmt).scalar() or session.traffic)

    def _extend_move(
        self, conn: Connection, project_id: str, row: base.EventRow, raised: dict[str, int]
    ) -> base.EventRow | None:
        """Append the points of a resent move past those stored; the appended points as a row."""
        key = (events.c.project_id == project_id, events.c.event_id == row.event_id)
        select = sa.select(events.c.ts, events.c.span, events.c.row_count, events.c.points).where(*key)
        if self.dialect != "sqlite":
            select = select.with_for_update()
        stored = conn.execute(select).one()
        tail = move_tail(row, int(stored.row_count))
        if tail is None:
            return None
        ts, span, points = pack_points(move_stamps(stored) + move_stamps(tail))
        conn.execute(sa.update(events).where(*key).values(ts=ts, span=span, row_count=row.row_count, points=points))
        grown = row._replace(ts=ts, span=span)
        forget_long_moves(conn, project_id, [row._replace(ts=int(stored.ts), span=int(stored.span))])
        if long_entries := long_move_params(project_id, [grown]):
            executemany(conn, self._statements.long_moves_sql, long_entries)
        self._raise_span(conn, project_id, span, raised)
        return tail

    @staticmethod
    def _execute_prepared(conn: Connection, statement: PreparedStatement, params: dict[str, Any]) -> Any:
        """Run a statement prepared once per connection: planning it cost more than running it."""
        info = conn.connection.info
        prepared = info.setdefault("heat_prepared", set())
        if statement.name not in prepared:
            conn.exec_driver_sql(statement.prepare)
            prepared.add(statement.name)
        return conn.exec_driver_sql(statement.execute, params).one()

    def _ingest_one_statement(self, batch: base.Batch) -> base.IngestResult:
        """PostgreSQL: the whole batch in one autocommit statement (atomic, one round trip)."""
        st = self._statements
        sql = st.one_statement[batch.external_user_id is not None]
        part = fresh_part()
        pieces = batch_pieces(batch.events, part)
        reports = report_pieces.batch_pieces(batch.events, batch.session.id, part)

        def run(conn: Connection) -> base.IngestResult:
            user_uuid = str(uuid.uuid4()) if batch.external_user_id is not None else None
            params = st.pg_batch_params(batch, user_uuid, _now_ms(), pieces, reports)
            _, accepted, project_id, erased, traffic = self._execute_prepared(conn, sql, params)
            if erased:
                return base.IngestResult(project_id=str(project_id), accepted=0, duplicates=0, erased_user=True)
            return base.IngestResult(
                project_id=str(project_id),
                accepted=int(accepted),
                duplicates=batch.row_count - int(accepted),
                traffic=str(traffic),
                # Its own statement, not a part of the prepared one: that one's generic plan, made while
                # the table was small, read every event of the project through another index (15 ms).
                bot_suspect=self._bot_suspect(conn, str(project_id), batch, str(traffic)),  # committed: visible
            )

        return self._write(run, autocommit=True)

    # -- queries ------------------------------------------------------------

    def read(self, fn: Callable[[base.Reader], T]) -> T:
        """One read-only transaction: PostgreSQL and MySQL at REPEATABLE READ, SQLite's WAL snapshot."""
        dialect = self.dialect

        def run(conn: Connection) -> T:
            if dialect == "postgresql":
                conn = _isolated(conn, "REPEATABLE READ")
            elif dialect == "mysql":  # as a statement: a dead pooled connection then fails as one
                conn.exec_driver_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # the next one
                try:
                    return fn(_SqlReader(conn, self.tally))
                finally:
                    conn.rollback()
            with conn.begin():
                return fn(_SqlReader(conn, self.tally))

        return self._read(run)

    def mark_rage(self, project_id: str | None) -> None:
        self._write(lambda conn: sql_rage.mark_all(conn, project_id))

    def settle_rage(self, project_id: str | None, limit: int | None = None, *, idle_ms: int | None = None) -> int:
        done = self._settle_marked(project_id, limit) if idle_ms is None else self._settle_idle(limit, idle_ms)
        if self.dialect == "postgresql" and done >= sql_statistics.ANALYZE_AFTER:
            # Many signal rows at once (after a fill, a migration, recompute-signals): the planner's
            # statistics refreshed now, not by autovacuum a minute later (until then it planned
            # for empty tables: sessions?signal=dead 100 ms, not 6 ms, at 300,000 events).
            self._write(sql_statistics.analyze_signals, autocommit=True)
        return done

    def _settle_idle(self, limit: int | None, idle_ms: int) -> int:
        """A worker's background settle: the longest idle marks, a chunk per transaction."""
        done = 0
        while limit is None or done < limit:
            n = sql_rage.SETTLE_CHUNK if limit is None else min(limit - done, sql_rage.SETTLE_CHUNK)
            before = idle_token(idle_ms)
            settle = functools.partial(
                sql_rage.settle_idle, before=before, limit=n, rule=self.rage_rule, signals=self.signal_rules
            )
            settled = self._write(settle)
            done += settled
            if settled < n:
                return done
        return done

    def _settle_marked(self, project_id: str | None, limit: int | None) -> int:
        """Every marked session (of one project when given, at most ``limit``), a chunk per transaction."""
        done = 0
        while limit is None or done < limit:
            page = sql_rage.SETTLE_CHUNK * 50 if limit is None else min(limit - done, sql_rage.SETTLE_CHUNK * 50)
            found = self._read(lambda conn, n=page: sql_rage.pending(conn, project_id, n))  # type: ignore[misc]
            for pid, group in itertools.groupby(found, key=lambda pair: pair[0]):
                sids = [sid for _, sid in group]
                for start in range(0, len(sids), sql_rage.SETTLE_CHUNK):
                    chunk = sids[start : start + sql_rage.SETTLE_CHUNK]
                    self._write(
                        functools.partial(
                            sql_rage.settle_sessions,
                            project_id=pid,
                            session_ids=chunk,
                            rule=self.rage_rule,
                            signals=self.signal_rules,
                        )
                    )
            done += len(found)
            if len(found) < page:
                return done
        return done

    def compact(
        self,
        max_keys: int = 1000,
        *,
        keys: list[base.AggregateKeyDay] | None = None,
        report_keys: list[base.ReportKeyDay] | None = None,
        roll: bool = True,
        full: bool = True,
    ) -> int:
        """Merge the keys that have fresh pieces (found through ``ix_heat_aggregates_fresh``), then
        (``roll``) roll finished months (their merged day pieces not rolled yet, found through the
        same index), then the report key-days with fresh pieces."""
        t = heat_aggregates.c
        key_columns = [t[name] for name in _AGGREGATE_KEY]

        def find(conn: Connection, where: Any) -> list[tuple[Any, ...]]:
            keys: dict[tuple[Any, ...], None] = {}
            for project_id in conn.execute(sa.select(projects.c.id)).scalars():
                stmt = sa.select(*key_columns).where(t.project_id == project_id, *where).limit(max_keys * 4)
                for row in conn.execute(stmt):
                    keys[tuple(row)] = None
                if len(keys) >= max_keys:
                    break
            return list(keys)[:max_keys]

        given = keys is not None or report_keys is not None
        if keys is None:
            keys = [] if given else self._read(lambda conn: find(conn, [t.part > 0]))
        whole = full and not given
        for start in range(0, len(keys), 50):
            self._write(functools.partial(self._compact_keys, keys=keys[start : start + 50], full=whole))
        if given:
            self._compact_reports(report_keys or [])
            return len(keys) + len(report_keys or [])
        before = finished_before(_now_ms())
        unrolled = [t.part < 0, t.part > ROLLED, t.day < before]
        months_found = {
            (*key[:2], *key[3:], month_of(int(key[2]))[0]): None
            for key in (self._read(lambda c: find(c, unrolled)) if roll else ())
        }
        rolls = list(months_found)
        for start in range(0, len(rolls), 20):
            self._write(lambda conn, chunk=rolls[start : start + 20]: self._roll_months(conn, chunk))  # type: ignore[misc]
        reports = self._read(lambda conn: sql_reports.fresh_keys(conn, max_keys))
        self._compact_reports(reports)
        if self.dialect == "postgresql" and self._statistics.due():
            self._write(sql_statistics.maintain_stale, autocommit=True)
        return len(keys) + len(reports)

    def _compact_reports(self, keys: Sequence[tuple[Any, ...]]) -> None:
        for start in range(0, len(keys), 50):
            self._write(functools.partial(sql_reports.compact_keys, keys=list(keys[start : start + 50])))

    def _compact_keys(self, conn: Connection, keys: list[base.AggregateKeyDay], full: bool) -> None:
        """Compact each key-day (aggregates.compaction): merge its pieces not rolled (rolled pieces stay
        as they are, and a finished month's month piece is left to :meth:`_roll_months`, so a merge
        costs what the day holds, not the month); not ``full`` (by count), a small burst apart. A few
        statements for all the keys of a project, not a few per key."""
        t = heat_aggregates.c
        names = _AGGREGATE_KEY[1:]
        for project_id, mine in itertools.groupby(sorted(keys), key=lambda key: str(key[0])):
            wanted = sorted({tuple(key[1:]) for key in mine})
            select = sa.select(*[t[name] for name in base.AggregateRow._fields]).where(
                t.project_id == project_id, t.part > ROLLED
            )
            if self.dialect in ("postgresql", "mysql"):  # a concurrent compaction leaves these alone
                select = select.with_for_update(skip_locked=True)
            groups: dict[tuple[Any, ...], list[base.AggregateRow]] = {}
            for row in select_keyed(conn, select, heat_aggregates, names, wanted):
                piece = base.AggregateRow(*row)
                groups.setdefault(tuple(getattr(piece, name) for name in names), []).append(piece)
            gone: list[tuple[Any, ...]] = []
            added: list[base.AggregateRow] = []
            for key, group in sorted(groups.items()):
                if not any(piece.part > 0 for piece in group):
                    continue  # merged meanwhile by another process
                replaced, new = compaction(group, full=full)
                gone += [(*key[:1], piece.day, *key[2:], piece.part) for piece in replaced]
                added += new
            delete_keyed(conn, heat_aggregates, project_id, (*names, "part"), gone)
            if added:
                rows = [dict(piece._asdict(), project_id=project_id) for piece in added]
                conn.execute(sa.insert(heat_aggregates), rows)

    def _roll_months(self, conn: Connection, rolls: list[tuple[Any, ...]]) -> None:
        """Roll each ``(project, path_key, type, bucket_w, bucket_h, view_w, first day)`` key-month (roll_month)."""
        t = heat_aggregates.c
        for *key, first in rolls:
            match = [t[name] == value for name, value in zip(_MONTH_KEY, key, strict=True)]
            in_month = sa.or_(
                sa.and_(t.day >= first, t.day <= month_of(first)[1], t.part < 0), t.day == month_code(first)
            )
            select = sa.select(*[t[name] for name in base.AggregateRow._fields]).where(*match, in_month)
            if self.dialect in ("postgresql", "mysql"):
                select = select.with_for_update(skip_locked=True)
            replaced, new = roll_month([base.AggregateRow(*row) for row in conn.execute(select)], first)
            for day in sorted({piece.day for piece in replaced}):
                parts = [piece.part for piece in replaced if piece.day == day]
                conn.execute(sa.delete(heat_aggregates).where(*match, t.day == day, t.part.in_(parts)))
            if new:
                conn.execute(sa.insert(heat_aggregates), [dict(piece._asdict(), project_id=key[0]) for piece in new])

    def classify_sessions(
        self, project_id: str | None, *, session_ids: list[str] | None = None, since: int | None = None
    ) -> base.ClassifyCounts:
        st, rules = self._statements, self.traffic_rules
        decided = to_bot = to_human = 0
        after: tuple[str, str] | None = None
        while True:
            if session_ids is not None and project_id is not None:  # (ingest) no lookup of the keys
                keys = [(project_id, sid) for sid in session_ids]
            else:
                keys = self._read(
                    functools.partial(
                        sql_traffic.candidates, project_id=project_id, after=after, since=since, ids=session_ids
                    )
                )
            for pid, sid in keys:  # one transaction per session: its key-days move with its class
                decided += 1
                found = self._read(functools.partial(sql_traffic.decide, project_id=pid, session_id=sid, rules=rules))
                if found is None or found[0] == found[1]:
                    continue  # (the usual case) nothing to write
                changed = self._write(
                    functools.partial(sql_traffic.apply, st=st, project_id=pid, session_id=sid, rules=rules),
                    snapshot=True,
                )
                to_bot += changed == BOT
                to_human += changed is not None and changed != BOT
            if len(keys) < sql_traffic.CHUNK or (session_ids is not None and project_id is not None):
                return base.ClassifyCounts(sessions=decided, to_bot=to_bot, to_human=to_human)
            after = keys[-1]

    def list_sessions(self, query: base.SessionQuery) -> list[base.SessionSummary]:
        clauses: list[Any] = [sessions.c.project_id == query.project_id]
        if query.user_id is not None:  # the internal id, or the one of the user with that SDK/JWT id
            by_external = sa.select(users.c.id).where(
                users.c.project_id == query.project_id, users.c.external_id == query.user_id
            )
            clauses.append(sessions.c.user_id.in_(sa.union(sa.select(sa.literal(query.user_id)), by_external)))
        if query.first_path is not None:
            clauses.append(sessions.c.first_path == query.first_path)
        if query.started_from is not None:
            clauses.append(sessions.c.started_at >= query.started_from)
        if query.last_seen_to is not None:
            clauses.append(sessions.c.last_seen_at <= query.last_seen_to)
        if query.signal is not None:
            clauses.append(sql_signals.having(query.project_id, query.signal, sessions.c.id))
        if query.traffic != "all":
            clauses.append(sessions.c.traffic == query.traffic)
        order = (
            (sessions.c.started_at.desc(), sessions.c.id.desc())
            if query.descending
            else (
                sessions.c.started_at,
                sessions.c.id,
            )
        )
        stmt = (
            sa.select(
                sessions.c.id,
                sessions.c.user_id,
                sessions.c.started_at,
                sessions.c.last_seen_at,
                sessions.c.first_path,
                sessions.c.event_count,
                sessions.c.last_path,
            )
            .where(*clauses)
            .order_by(*order)
            .limit(query.limit)
            .offset(query.offset)
        )

        def run(conn: Connection) -> list[base.SessionSummary]:
            if query.among is None:
                rows = conn.execute(stmt).all()
            else:  # the page among the set's sessions, then its rows
                page = sql_reports.page_among(conn, query.among, clauses, query)
                place = {sid: i for i, sid in enumerate(page)}
                found = conn.execute(stmt.where(sessions.c.id.in_(page)).offset(0)).all() if page else []
                rows = sorted(found, key=lambda r: place[str(r.id)])
            counts = sql_signals.session_counts(conn, query.project_id, [r.id for r in rows])
            return [
                base.SessionSummary(
                    r.id,
                    r.user_id,
                    int(r.started_at),
                    int(r.last_seen_at),
                    r.first_path,
                    int(r.event_count),
                    r.last_path,
                    counts.get(r.id, {}),
                )
                for r in rows
            ]

        return self._read(run)

    def external_user_ids(self, project_id: str, user_ids: list[str]) -> dict[str, str]:
        if not user_ids:
            return {}
        stmt = sa.select(users.c.id, users.c.external_id).where(
            users.c.project_id == project_id, users.c.id.in_(sorted(set(user_ids)))
        )
        return self._read(lambda conn: {str(r.id): str(r.external_id) for r in conn.execute(stmt)})

    def find_sessions(self, session_id: str, project_id: str | None, limit: int = 51) -> list[base.Session]:
        stmt = sa.select(sessions).where(sessions.c.id == session_id)
        if project_id is not None:
            stmt = stmt.where(sessions.c.project_id == project_id)
        else:  # every key leads with the project: probe (project, id) for each project
            stmt = stmt.where(sessions.c.project_id.in_(sa.select(projects.c.id)))
        stmt = stmt.order_by(sessions.c.started_at, sessions.c.project_id).limit(limit)
        return self._read(lambda conn: [self._session(row) for row in conn.execute(stmt)])

    @staticmethod
    def _session(row: Any) -> base.Session:
        return base.Session(
            id=row.id,
            project_id=row.project_id,
            user_id=row.user_id,
            started_at=int(row.started_at),
            last_seen_at=int(row.last_seen_at),
            first_path=row.first_path,
            user_agent=row.user_agent,
            device_json=row.device_json,
            ip_hash=row.ip_hash,
            traffic=row.traffic,
            traffic_reason=row.traffic_reason,
        )

    # -- lifecycle ----------------------------------------------------------

    def erase(self, erasure: base.Erasure, *, dry_run: bool = False) -> base.ErasedCounts:
        pid = erasure.project_id

        def targets(conn: Connection) -> tuple[list[str], list[str], list[str]]:
            uids = sql_erase.user_ids(conn, pid, erasure.user) if erasure.user is not None else []
            return uids, *sql_erase.session_ids(conn, pid, uids)

        live = 0
        if erasure.user is not None and erasure.whole_user and not dry_run:
            user = erasure.user  # first: from the commit of the mark on, no batch of the user is stored
            live = self._write(lambda conn: sql_erase.claim(conn, pid, user, _now_ms()))
        uids, sids, touched = self._read(targets)  # after the claim: what batches stored until then is found
        found = self._read(lambda conn: sql_erase.count(conn, erasure, uids, sids, touched))
        if dry_run:
            return found
        st = self._statements
        while True:  # the first chunk left is deleted with what it added up to, one transaction each
            chunk = self._read(lambda conn: next(sql_erase.erased_events(conn, erasure, uids, sids), []))
            if not chunk:
                break
            self._write(functools.partial(sql_erase.delete_chunk, st=st, project_id=pid, rows=chunk), snapshot=True)
        removed_sessions = self._write(lambda conn: sql_erase.finish(conn, erasure, uids, touched))
        left = self._read(lambda conn: sql_erase.left_over(conn, erasure, uids, sids))
        return base.ErasedCounts(users=live, sessions=removed_sessions, events=found.events, verified=not left)

    def user_data(self, project_id: str, user: str) -> base.UserData:
        def run(conn: Connection) -> base.UserData:
            uids = sql_erase.user_ids(conn, project_id, user, live=True)
            owned, touched = sql_erase.session_ids(conn, project_id, uids)
            found = (
                conn.execute(
                    sa.select(sessions)
                    .where(sessions.c.project_id == project_id, sessions.c.id.in_(touched))
                    .order_by(sessions.c.started_at, sessions.c.id)
                ).all()
                if touched
                else []
            )
            return base.UserData(
                sql_erase.user_rows(conn, project_id, uids),
                [self._session(r) for r in found],
                owned=tuple(owned),
                foreign=frozenset(str(r.id) for r in found if (r.first_user_id or r.user_id) not in uids),
            )

        return self._read(run)

    def user_events(
        self, project_id: str, data: base.UserData, after: tuple[int, int, str] | None, limit: int
    ) -> list[base.EventRow]:
        clause = sql_erase.key_columns(base.Erasure(project_id, user="-"), data.user_ids, list(data.owned))
        stmt = sa.select(*_STORED_COLUMNS).where(clause)
        if after is not None:
            stmt = stmt.where(sql_erase.after_event(after))
        stmt = stmt.order_by(events.c.ts, events.c.seq, events.c.event_id).limit(limit)
        return self._read(lambda conn: [base.EventRow(*r) for r in conn.execute(stmt)])

    def purge(
        self,
        raw_before: int | None,
        aggregates_before_day: int | None,
        *,
        dry_run: bool,
        chunk: int = 5000,
        erased_before: int | None = None,
    ) -> base.PurgeCounts:
        total = base.PurgeCounts()
        for pid in [project.id for project in self.list_projects()]:
            if erased_before is not None:
                expired = functools.partial(sql_purge.tombstones, project_id=pid, before=erased_before, dry_run=dry_run)
                total += base.PurgeCounts(users=self._read(expired) if dry_run else self._write(expired))
            if dry_run:
                total += self._read(
                    functools.partial(
                        sql_purge.count,
                        project_id=pid,
                        raw_before=raw_before,
                        aggregates_before_day=aggregates_before_day,
                    )
                )
                continue
            if raw_before is not None:  # events first: sessions and users are emptied by them
                kw: dict[str, Any] = {"project_id": pid, "before": raw_before, "chunk": chunk}
                total += base.PurgeCounts(
                    events=self._chunks(functools.partial(sql_purge.delete_events, **kw), chunk),
                    sessions=self._chunks(functools.partial(sql_purge.delete_sessions, **kw), chunk),
                    users=self._chunks(functools.partial(sql_purge.delete_users, **kw), chunk),
                )
            if aggregates_before_day is not None:
                months = functools.partial(
                    sql_compaction.drop_months_before, project_id=pid, before_day=aggregates_before_day
                )
                total += base.PurgeCounts(aggregates=self._write(months))
                step = functools.partial(
                    sql_purge.delete_aggregates, project_id=pid, before_day=aggregates_before_day, chunk=chunk
                )
                while (gone := self._write(step)) is not None:
                    total += base.PurgeCounts(aggregates=gone)
                report_step = functools.partial(step, table=heat_report_pieces)
                while self._write(report_step) is not None:
                    pass
        return total

    def _chunks(self, step: Callable[..., tuple[int, int, Any]], chunk: int) -> int:
        """Run ``step(conn, after=...)`` in one transaction each until a chunk is short; the sum of its counts."""
        done, after = 0, None
        while True:
            count, found, after = self._write(functools.partial(step, after=after))
            done += count
            if found < chunk:
                return done
            if self._sqlite_path is not None:  # flock is not fair: let the waiting batches write first
                time.sleep(0.02)

    # -- projects -----------------------------------------------------------

    @staticmethod
    def _project(row: Any) -> base.Project:
        return base.Project(id=row.id, key=row.key, name=row.name, created_at=int(row.created_at))

    @staticmethod
    def _refuse_retired(conn: Connection, key: str) -> None:
        if conn.execute(sa.select(retired_keys.c.key).where(retired_keys.c.key == key)).first() is not None:
            raise RetiredProjectKey(key)

    def create_project(self, key: str, name: str) -> base.Project:
        values = dict(id=str(uuid.uuid4()), key=key, name=name, created_at=_now_ms())

        def run(conn: Connection) -> None:
            conn.execute(sa.insert(projects).values(max_span=0, **values))
            self._refuse_retired(conn, key)  # after the insert: see RetiredProjectKey's race note

        self._write(run)
        return base.Project(**values)  # type: ignore[arg-type]

    def ensure_project(self, key: str) -> str:
        def run(conn: Connection) -> str:
            stmt = insert_ignore(self.dialect, projects, ["key"]).values(
                id=str(uuid.uuid4()), key=key, name="Default", created_at=_now_ms(), max_span=0
            )
            conn.execute(stmt)
            self._refuse_retired(conn, key)  # rolls the insert back
            return str(conn.execute(sa.select(projects.c.id).where(projects.c.key == key)).scalar_one())

        return self._write(run)

    def list_projects(self) -> list[base.Project]:
        stmt = sa.select(projects).order_by(projects.c.created_at, projects.c.id)
        return self._read(lambda conn: [self._project(r) for r in conn.execute(stmt)])

    def rotate_project_key(self, project_id: str, new_key: str) -> base.Project | None:
        def run(conn: Connection) -> base.Project | None:
            select = sa.select(projects).where(projects.c.id == project_id)
            row = conn.execute(select if self.dialect == "sqlite" else select.with_for_update()).first()
            if row is None:
                return None
            self._refuse_retired(conn, new_key)
            if new_key == row.key or conn.execute(sa.select(projects.c.id).where(projects.c.key == new_key)).first():
                raise ValueError("the new key is already a project's key")
            conn.execute(sa.insert(retired_keys).values(key=row.key, project_id=project_id, retired_at=_now_ms()))
            conn.execute(sa.update(projects).where(projects.c.id == project_id).values(key=new_key))
            return dataclasses.replace(self._project(row), key=new_key)

        return self._write(run)


_LISTED_BOTS = 500  # more bot sessions than this are named by a subquery (bound parameters stay few)


class _SqlReader(base.Reader):
    """Reads on one connection inside one transaction."""

    def __init__(self, conn: Connection, tally: base.ReadTally) -> None:
        self.conn = conn
        self.tally = tally
        self._bots: dict[str, list[str]] = {}  # the bot sessions of a project, read once per read

    def _traffic_clauses(self, project_id: str, traffic: str) -> list[Any]:
        """The rows of sessions of class ``traffic``, through a list of the project's bot sessions when
        they are few (no bot makes ``bot`` an empty answer read from no row, and ``human`` the scan it
        was), else through a subquery of them."""
        if traffic == "all":
            return []
        if project_id not in self._bots:
            found = self.conn.execute(bot_sessions(project_id).limit(_LISTED_BOTS + 1)).scalars()
            self._bots[project_id] = sorted(str(sid) for sid in found)
        bots = self._bots[project_id]
        if len(bots) > _LISTED_BOTS:
            return traffic_clauses(events.c.session_id, project_id, traffic)
        if traffic == "bot":
            return [events.c.session_id.in_(bots)]
        return [events.c.session_id.not_in(bots)] if bots else []

    def _scan_clauses(self, what: base.Scan) -> list[Any]:
        flt, ts_low, session_id = what.flt, what.ts_low, what.session_id
        clauses: list[Any] = [events.c.project_id == flt.project_id]
        if session_id is not None:
            clauses.append(events.c.session_id == session_id)
        else:
            clauses += self._traffic_clauses(flt.project_id, flt.traffic)
        ts = self._ts(what)
        clauses += path_clauses(events, flt.path_set, indexed=not self._bots_listed(what))
        if flt.types is not None and (session_id is not None or self._bots_listed(what)):
            # the session's index (or the listed bots' sessions'), not the type's
            clauses.append(session_types(*flt.types))
        elif flt.types is not None:
            clauses.append(events.c.type == flt.types[0] if len(flt.types) == 1 else events.c.type.in_(flt.types))
        if flt.other_width is not None:
            clauses.append(events.c.view_w != flt.other_width)
        if ts_low is not None:
            clauses.append(ts >= ts_low)
        if flt.ts_to is not None:
            clauses.append(ts <= flt.ts_to)
        return clauses

    @staticmethod
    def _scan_columns(what: base.Scan) -> list[Any]:
        if not what.points:
            return _COUNT_COLUMNS
        return (_TEXT_COLUMNS if what.text else _LIGHT_COLUMNS) if what.light else _STORED_COLUMNS

    def _ts(self, what: base.Scan) -> Any:
        """``ts`` as the scan's range, page key and order name it: ``ts + 0`` for the rows of a few
        listed bot sessions (after :meth:`_traffic_clauses` read them; their path is then not
        offered either), so that no planner walks the (project, ts, seq) or the path's key through
        every row instead of the session index (SQLite did, to spare a sort or when a page's start
        narrowed the range: 500 ms for 150 rows at 1M events, 2.7 s for a second page at 5M)."""
        return events.c.ts + 0 if self._bots_listed(what) else events.c.ts

    def _bots_listed(self, what: base.Scan) -> bool:
        """Whether ``what`` reads the rows of a few bot sessions named in a list (the session index's
        case)."""
        flt = what.flt
        return flt.traffic == BOT and what.session_id is None and len(self._bots[flt.project_id]) <= _LISTED_BOTS

    def scan(self, what: base.Scan, after: tuple[int, int] | None, limit: int) -> list[base.EventRow]:
        clauses = self._scan_clauses(what)
        if after is not None:
            clauses.append(after_key(after, self._ts(what)))
        stmt = sa.select(*self._scan_columns(what)).where(*clauses).order_by(self._ts(what), events.c.seq).limit(limit)
        return self.tally.add([base.EventRow(*row) for row in self.conn.execute(stmt)])

    def long_moves(self, what: base.Scan, before: int, reaching: int) -> list[base.EventRow]:
        clauses = [
            *self._scan_clauses(dataclasses.replace(what, ts_low=None)),
            crossing(what.flt.project_id, before, reaching),
        ]
        stmt = sa.select(*self._scan_columns(what)).where(*clauses).order_by(self._ts(what), events.c.seq)
        return self.tally.add([base.EventRow(*row) for row in self.conn.execute(stmt)])

    def fetch(self, project_id: str, event_ids: list[str]) -> list[base.EventRow]:
        stmt = sa.select(*_STORED_COLUMNS).where(events.c.project_id == project_id, events.c.event_id.in_(event_ids))
        return self.tally.add([base.EventRow(*row) for row in self.conn.execute(stmt)])

    def aggregates(
        self, project_id: str, path: base.PathSet, days: tuple[int, int], *, blobs: base.Blobs | None = None
    ) -> list[base.AggregateRow]:
        t = heat_aggregates.c
        wanted = [t.cells, t.depths] if blobs else [sa.null(), sa.null()]
        edges, months = piece_ranges(days)
        spans: list[Any] = [sa.and_(t.day >= lo, t.day <= hi) for lo, hi in edges]
        if months is not None:  # whole months: their month pieces and the day pieces not rolled into them
            spans.append(sa.and_(t.day >= months[0], t.day <= months[1], t.part > ROLLED))
            spans.append(sa.and_(t.day >= month_code(months[0]), t.day <= month_code(months[1])))
        stmt = sa.select(
            t.path_key, t.day, t.type, t.bucket_w, t.bucket_h, t.view_w, t.part, t.n, t.first_seq, t.max_y, *wanted
        ).where(t.project_id == project_id, sa.or_(*spans))
        stmt = stmt.where(*path_clauses(heat_aggregates, path, exact=False))
        if blobs is not None:
            types, width, view_w = blobs
            stmt = stmt.where(t.type.in_(types))
            if width is not None:
                stmt = stmt.where(t.bucket_w == width)
            if view_w is not None:
                stmt = stmt.where(t.view_w == view_w)
        return [
            base.AggregateRow(
                int(r[0]),
                int(r[1]),
                r[2],
                int(r[3]),
                int(r[4]),
                int(r[5]),
                int(r[6]),
                int(r[7]),
                None if r[8] is None else int(r[8]),
                None if r[9] is None else int(r[9]),
                r[10],
                r[11],
            )
            for r in self.conn.execute(stmt)
        ]

    def path_totals(self, project_id: str, ts_from: int | None, ts_to: int | None) -> list[base.PathTotal]:
        # Grouped by the fixed-size key, not the path itself: MariaDB sorts long VARCHAR group keys
        # on disk (106 s against 7 s for 1,000,000 rows). A key two paths share is grouped again.
        t = events.c
        where = [t.project_id == project_id, *_inside(ts_from, ts_to)]
        stmt = (
            sa.select(
                t.path_key,
                sa.func.min(t.path),
                sa.func.max(t.path),
                sa.func.sum(t.row_count),
                sa.func.count(sa.distinct(t.session_id)),
                sa.func.max(t.ts + t.span),
            )
            .where(*where)
            .group_by(t.path_key)
        )
        found: list[base.PathTotal] = []
        shared: list[int] = []
        for key, first, last, rows, sessions_, seen in self.conn.execute(stmt):
            if first == last:
                found.append(base.PathTotal(first, int(rows), int(sessions_), int(seen)))
            else:
                shared.append(int(key))
        if shared:
            again = (
                sa.select(
                    t.path,
                    sa.func.sum(t.row_count),
                    sa.func.count(sa.distinct(t.session_id)),
                    sa.func.max(t.ts + t.span),
                )
                .where(*where, t.path_key.in_(shared))
                .group_by(t.path_key, t.path)
            )
            found += [base.PathTotal(r[0], int(r[1]), int(r[2]), int(r[3])) for r in self.conn.execute(again)]
        return found

    def session_paths(
        self, project_id: str, ts_from: int | None, ts_to: int | None, session_ids: list[str]
    ) -> set[tuple[str, str]]:
        t = events.c
        stmt = (
            sa.select(t.path, t.session_id)
            .where(t.project_id == project_id, t.session_id.in_(session_ids), *_inside(ts_from, ts_to))
            .group_by(t.path_key, t.path, t.session_id)
        )
        return {(r[0], r[1]) for r in self.conn.execute(stmt)} if session_ids else set()

    def deepest_scrolls(self, flt: base.EventFilter, width: int | None) -> list[float]:
        t = events.c
        pct = sa.case((t.scroll_depth > 100, t.scroll_depth / sa.literal(100.0)), else_=t.scroll_depth)
        clauses = [t.project_id == flt.project_id, t.type == "scroll", t.scroll_depth.is_not(None)]
        clauses += path_clauses(events, flt.path_set)
        if width is not None:
            clauses.append(t.bucket_w == width)
        clauses += _inside(flt.ts_from, flt.ts_to)
        stmt = sa.select(sa.func.max(pct)).where(*clauses).group_by(t.session_id)
        return [float(r[0]) for r in self.conn.execute(stmt)]

    def rage_clicks(self, flt: base.EventFilter) -> list[base.EventRow]:
        return sql_rage.read(self.conn, flt)

    def signal_maps(
        self, project_id: str, path: base.PathSet, days: tuple[int, int], kind: str
    ) -> list[base.AggregateRow] | None:
        return sql_signals.read_maps(self.conn, project_id, path, days, kind)

    def signals(self, flt: base.EventFilter, kind: str) -> list[Signal]:
        return sql_signals.read(self.conn, flt, kind)

    def signal_path_counts(self, flt: base.EventFilter) -> dict[tuple[str, str], int]:
        return sql_signals.path_counts(self.conn, flt)

    def signal_selector_counts(self, flt: base.EventFilter, width: int | None = None) -> dict[tuple[str, str], int]:
        return sql_signals.selector_counts(self.conn, flt, width)

    def report_pieces(
        self,
        project_id: str,
        path: base.PathSet,
        days: tuple[int, int],
        *,
        selectors: bool = False,
        scroll: bool = False,
        width: int | None = None,
    ) -> list[base.ReportPiece]:
        return sql_reports.read_pieces(
            self.conn, project_id, path, days, selectors=selectors, scroll=scroll, width=width
        )

    def session_ordinals(self, project_id: str, session_ids: set[str]) -> dict[str, int]:
        return sql_reports.ordinals(self.conn, project_id, session_ids)

    def max_span(self, project_id: str) -> int:
        found = self.conn.execute(sa.select(projects.c.max_span).where(projects.c.id == project_id)).scalar()
        return int(found or 0)

    def project_found(self, project_id: str) -> bool:
        return self.conn.execute(sa.select(projects.c.id).where(projects.c.id == project_id)).first() is not None

    def last_item_ts(self, project_id: str) -> int | None:
        return sql_reports.last_item_ts(self.conn, project_id)
