"""Bring a SQL database to the current layout: tables, columns, indexes, collations, and the data of
the first layout (one row per move point) moved forward; aggregates rebuilt from the events."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import groupby
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..aggregates import rebuild_pieces
from ..ingest import pack_points, path_key, view_width
from ..report_pieces import ALL_WIDTHS
from . import sql_rage, sql_reports, sql_signals
from .base import LONG_MOVE_MS, STORED_FIELDS, EventRow, Migration
from .sql_ingest import IngestStatements, after_key, executemany, long_move_params
from .sql_schema import (
    LEGACY_EVENTS,
    LEGACY_MARKER,
    ROLLUP_FIELDS,
    events,
    heat_aggregates,
    heat_rage_clicks,
    heat_report_pieces,
    heat_signal_cells,
    heat_signal_counts,
    heat_signals,
    long_moves,
    metadata,
    projects,
    sessions,
    traffic_clauses,
    users,
)

_CHUNK = 5000
_OBSOLETE_INDEXES = {"sessions": ("ix_sessions_id",)}  # an index must lead with the project


def migrate_schema(conn: Connection, st: IngestStatements) -> Migration:
    """Create what is missing and move older layouts forward; repeatable, keeps data."""
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names())
    before = tables & set(metadata.tables)
    created = tuple(t.name for t in metadata.sorted_tables if t.name not in tables)
    added: list[str] = []
    if "events" in tables and LEGACY_MARKER in {c["name"] for c in inspector.get_columns("events")}:
        _rename(conn, "events", LEGACY_EVENTS)
        tables.add(LEGACY_EVENTS)
    users_v1 = "users" in tables and inspector.get_pk_constraint("users")["constrained_columns"] == ["id"]
    if users_v1:
        _project_leading_users_key(conn)
    # Aggregates made before they were keyed by the exact viewport width: made again (below), on
    # a table keyed the new way.
    by_bucket = heat_aggregates.name in tables and "view_w" not in _columns(inspector, heat_aggregates.name)
    widthless = "events" in tables and "view_w" not in _columns(inspector, "events")
    if by_bucket:
        conn.exec_driver_sql(f"DROP TABLE {heat_aggregates.name}")
    metadata.create_all(conn, checkfirst=True)
    if "events" in tables and ("heat_rage_pending" not in tables or "heat_signals" not in tables):
        # rage clicks and signals are decided from now on
        sql_rage.mark_all(conn)
    # report data of the events stored so far (again if made before the all-band pieces), once the
    # events have every column
    reports = "events" in tables and ("heat_report_pieces" not in tables or _lacks_all_widths(conn))
    if users_v1 and conn.dialect.name == "sqlite":
        old = {c["name"] for c in sa.inspect(conn).get_columns("users_v1")}  # columns added since are new
        names = ", ".join(c.name for c in users.columns if c.name in old)
        conn.exec_driver_sql(f"INSERT INTO users ({names}) SELECT {names} FROM users_v1")
        conn.exec_driver_sql("DROP TABLE users_v1")
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        present = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in present:
                spec = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {spec}")
                added.append(f"column {table.name}.{column.name}")
        existing = {ix["name"] for ix in inspector.get_indexes(table.name)}
        for name in _OBSOLETE_INDEXES.get(table.name, ()):
            if name in existing:
                conn.exec_driver_sql(
                    f"DROP INDEX {name}" + (f" ON {table.name}" if conn.dialect.name == "mysql" else "")
                )
        for index in table.indexes:
            if index.name not in existing:
                index.create(conn)
                added.append(f"index {index.name}")
    if conn.dialect.name == "mysql":
        _no_pad_collation(conn)
    if widthless:  # (checked once, when the column is added: the scan reads every event)
        _fill_view_widths(conn)
    if LEGACY_EVENTS in tables:
        _move_legacy_events(conn, st)
        rebuild_aggregates(conn, st)
        conn.exec_driver_sql(f"DROP TABLE {LEGACY_EVENTS}")
    elif by_bucket:
        rebuild_aggregates(conn, st)  # the report data too
        added.append("heatmap aggregates by exact viewport width")
    elif reports:
        for project_id in list(conn.execute(sa.select(projects.c.id)).scalars()):
            sql_reports.rebuild_all(conn, project_id, _project_rows(conn, project_id, json=True))
    counted = (heat_signal_counts.name, heat_signal_cells.name, heat_signals.name, heat_rage_clicks.name)
    if "events" in tables and not tables.issuperset(counted):  # the counts of the signals stored so far
        for project_id in list(conn.execute(sa.select(projects.c.id)).scalars()):
            sql_signals.rebuild_counts(conn, project_id)
    if long_moves.name not in tables:  # a database of the layout before the long-move index
        _index_long_moves(conn, st)
    legacy = LEGACY_EVENTS in tables or users_v1
    return Migration(new=not before, created=created, added=tuple(added), from_layout=1 if legacy else None)


def _columns(inspector: Any, table: str) -> set[str]:
    return {c["name"] for c in inspector.get_columns(table)}


def _fill_view_widths(conn: Connection) -> None:
    """Give the events stored before the exact viewport width was kept their ``view_w``, from the
    ``viewport.w`` of their meta JSON (rounded as ingest rounds it)."""
    t = events.c
    update = (
        sa.update(events)
        .where(
            t.project_id == sa.bindparam("p"),
            t.ts == sa.bindparam("t"),
            t.seq == sa.bindparam("s"),
            t.event_id == sa.bindparam("e"),
        )
        .values(view_w=sa.bindparam("w"))
    )
    while True:
        stmt = sa.select(t.project_id, t.ts, t.seq, t.event_id, t.meta_json, t.bucket_w).where(t.view_w.is_(None))
        chunk = conn.execute(stmt.limit(_CHUNK)).all()
        if not chunk:
            return
        params = [
            {"p": r.project_id, "t": r.ts, "s": r.seq, "e": r.event_id, "w": view_width(r.meta_json, int(r.bucket_w))}
            for r in chunk
        ]
        conn.execute(update, params)


def _lacks_all_widths(conn: Connection) -> bool:
    """Whether the report pieces were made before the all-band ones (``ALL_WIDTHS``) existed."""
    t = heat_report_pieces.c
    some = conn.execute(sa.select(t.day).limit(1)).first() is not None
    return some and conn.execute(sa.select(t.day).where(t.bucket_w == ALL_WIDTHS).limit(1)).first() is None


def _index_long_moves(conn: Connection, st: IngestStatements) -> None:
    """Add the long-move index entries of the stored moves, in chunks of (project, event) order."""
    t = events.c
    after: tuple[str, str] | None = None
    while True:
        stmt = sa.select(t.project_id, t.event_id, t.ts, t.span).where(t.span > LONG_MOVE_MS)
        if after is not None:
            stmt = stmt.where(sa.tuple_(t.project_id, t.event_id) > sa.tuple_(*after))
        chunk = conn.execute(stmt.order_by(t.project_id, t.event_id).limit(_CHUNK)).all()
        entries = [entry for r in chunk for entry in long_move_params(str(r.project_id), [r])]
        if entries:
            executemany(conn, st.long_moves_sql, entries)
        if len(chunk) < _CHUNK:
            return
        after = (str(chunk[-1].project_id), str(chunk[-1].event_id))


def _project_leading_users_key(conn: Connection) -> None:
    """The first layout keyed users by id alone: key them by (project_id, id) like every table."""
    dialect = conn.dialect.name
    if dialect == "postgresql":
        name = sa.inspect(conn).get_pk_constraint("users")["name"]
        conn.exec_driver_sql(f'ALTER TABLE users DROP CONSTRAINT "{name}", ADD PRIMARY KEY (project_id, id)')
    elif dialect == "mysql":
        conn.exec_driver_sql("ALTER TABLE users DROP PRIMARY KEY, ADD PRIMARY KEY (project_id, id)")
    else:  # SQLite cannot change a key: the table is made again (create_all, then copied back)
        conn.exec_driver_sql("ALTER TABLE users RENAME TO users_v1")


def _rename(conn: Connection, old: str, new: str) -> None:
    conn.exec_driver_sql(f"ALTER TABLE {old} RENAME TO {new}")
    if conn.dialect.name == "postgresql":
        # Index names (the primary key's too) are per schema there: free them for the new table.
        names = conn.exec_driver_sql(f"SELECT indexname FROM pg_indexes WHERE tablename = '{new}'").scalars()
        for name in list(names):
            conn.exec_driver_sql(f'ALTER INDEX "{name}" RENAME TO "{new}_{name}"'[:200])


def _no_pad_collation(conn: Connection) -> None:
    """Binary NO PAD collation on MySQL/MariaDB: ``'a '`` and ``'a'`` are different ids and paths."""
    wanted = "utf8mb4_nopad_bin" if getattr(conn.dialect, "is_mariadb", False) else "utf8mb4_0900_bin"
    if conn.exec_driver_sql(f"SHOW COLLATION LIKE '{wanted}'").first() is None:
        return  # an old server without one: utf8mb4_bin (PAD SPACE) stays
    current: dict[str, str] = dict(
        conn.exec_driver_sql(
            "SELECT table_name, table_collation FROM information_schema.tables WHERE table_schema = DATABASE()"
        ).all()
    )
    for table in metadata.sorted_tables:
        if current.get(table.name) != wanted:
            conn.exec_driver_sql(f"ALTER TABLE {table.name} CONVERT TO CHARACTER SET utf8mb4 COLLATE {wanted}")


_LEGACY_COLUMNS = (
    "project_id, event_id, point_index, id, session_id, user_id, type, ts, path, selector, x, y, "
    "scroll_depth, bucket_w, bucket_h, meta_json, data_json"
)


def _legacy_rows(conn: Connection) -> Iterator[Any]:
    """The first layout's rows in (project, event, point) order, read in chunks."""
    last: tuple[Any, ...] | None = None
    while True:
        where = "" if last is None else " WHERE (project_id, event_id, point_index) > (:p, :e, :i)"
        params = {} if last is None else {"p": last[0], "e": last[1], "i": last[2]}
        chunk = conn.execute(
            sa.text(
                f"SELECT {_LEGACY_COLUMNS} FROM {LEGACY_EVENTS}{where} "
                f"ORDER BY project_id, event_id, point_index LIMIT {_CHUNK}"
            ),
            params,
        ).all()
        yield from chunk
        if len(chunk) < _CHUNK:
            return
        last = (chunk[-1].project_id, chunk[-1].event_id, chunk[-1].point_index)


def _event_row(group: list[Any]) -> EventRow:
    """One stored event from its first-layout rows (several for a move: one per point)."""
    first = group[0]
    if first.type == "move":
        ts, span, points = pack_points([(int(r.ts), int(r.x), int(r.y)) for r in group])
        x = y = None
    else:
        ts, span, points, x, y = int(first.ts), 0, None, first.x, first.y
    return EventRow(
        event_id=first.event_id,
        seq=min(int(r.id) for r in group),
        session_id=first.session_id,
        type=first.type,
        ts=ts,
        span=span,
        path=first.path,
        path_key=path_key(first.path),
        selector=first.selector,
        x=x,
        y=y,
        scroll_depth=first.scroll_depth,
        bucket_w=int(first.bucket_w),
        bucket_h=int(first.bucket_h),
        view_w=view_width(first.meta_json, int(first.bucket_w)),
        row_count=len(group) if first.type == "move" else 1,
        points=points,
        meta_json=first.meta_json,
        data_json=first.data_json,
    )


def _move_legacy_events(conn: Connection, st: IngestStatements) -> None:
    """Copy the first layout's events into the current one, with session counters and spans."""
    counters: dict[tuple[str, str], list[Any]] = {}  # (project, session) -> [items, last_ts, seq, path]
    spans: dict[str, int] = {}
    out: list[tuple[Any, ...]] = []
    for _, rows in groupby(_legacy_rows(conn), key=lambda r: (r.project_id, r.event_id)):
        group = list(rows)
        row = _event_row(group)
        project, user = group[0].project_id, group[0].user_id
        out += st.events_params(project, user, [row])
        spans[project] = max(spans.get(project, 0), row.span)
        entry = counters.setdefault((project, row.session_id), [0, None, 0, None])
        entry[0] += row.row_count
        end = (row.ts + row.span, row.seq)
        if entry[1] is None or end >= (entry[1], entry[2]):
            entry[1], entry[2], entry[3] = end[0], end[1], row.path
        if len(out) >= _CHUNK:
            executemany(conn, st.events_sql, out)
            out.clear()
    if out:
        executemany(conn, st.events_sql, out)
    update = (
        sa.update(sessions)
        .where(sessions.c.project_id == sa.bindparam("p"), sessions.c.id == sa.bindparam("s"))
        .values(event_count=sa.bindparam("n"), last_ts=sa.bindparam("t"), last_path=sa.bindparam("path"))
    )
    params = [{"p": p, "s": s, "n": n, "t": t, "path": path} for (p, s), (n, t, _, path) in counters.items()]
    if params:
        conn.execute(update, params)
    for project, span in spans.items():
        conn.execute(sa.update(projects).where(projects.c.id == project).values(max_span=span))


def rebuild_aggregates(conn: Connection, st: IngestStatements) -> int:
    """Replace every aggregate by one computed from the stored events; the events read."""
    conn.execute(sa.delete(heat_aggregates))
    conn.execute(sa.delete(heat_rage_clicks))
    sql_rage.mark_all(conn)
    read = 0
    for project_id in list(conn.execute(sa.select(projects.c.id)).scalars()):
        merged, count = rebuild_pieces(_project_rows(conn, project_id))
        read += count
        if merged:
            executemany(conn, st.pieces_sql, st.pieces_params(project_id, merged))
        sql_reports.rebuild_all(conn, project_id, _project_rows(conn, project_id, json=True))
        sql_signals.rebuild_counts(conn, project_id)  # the signals' (the rage clicks are settled again)
    return read


def _project_rows(conn: Connection, project_id: str, *, json: bool = False) -> Iterator[EventRow]:
    """The project's events (without their JSON unless ``json``), in (ts, seq) order, read in chunks."""
    after: tuple[int, int] | None = None
    columns = [events.c[name] for name in STORED_FIELDS] if json else ROLLUP_FIELDS
    while True:
        stmt = sa.select(*columns).where(
            events.c.project_id == project_id, *traffic_clauses(events.c.session_id, project_id, "human")
        )
        if after is not None:
            stmt = stmt.where(after_key(after))
        chunk = [EventRow(*r) for r in conn.execute(stmt.order_by(events.c.ts, events.c.seq).limit(_CHUNK))]
        yield from chunk
        if len(chunk) < _CHUNK:
            return
        after = (chunk[-1].ts, chunk[-1].seq)
