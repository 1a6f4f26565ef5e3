"""Aggregates and migrations never change an answer: pieces, compacted, rebuilt, moved forward."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector.ingest import viewport_bucket
from flask_heat_collector.report_pieces import ALL_WIDTHS

from .helpers import API, batch, event, headers, ingest

DAY = 86_400_000
T0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY  # a midnight UTC
QUERIES: list[dict[str, Any]] = [
    {},
    {"type": "all"},
    {"type": "move", "resolution": 64},
    {"type": "all", "resolution": 100},
    {"type": "all", "viewports": "all"},
    {"type": "scroll", "resolution": 8},
    {"type": "all", "from": T0 + DAY // 2, "to": T0 + 2 * DAY + 5},
    {"type": "move", "from": T0 + DAY // 2, "to": T0 + DAY // 2 + 3, "resolution": 16},
    {"type": "all", "from": T0, "to": T0 + 2 * DAY - 1, "path": "/a"},
    {"type": "all", "viewportBucket": "400x800"},
]


def _fill(client: FlaskClient) -> str:
    """Three days of events on two paths and two widths, over several batches (several pieces per key)."""
    project = ""
    for day in range(3):
        for n in range(4):
            ts = T0 + day * DAY + n * 3_600_000 + 17
            path = "/a" if n % 2 else "/b"
            width = 400 if n == 3 else 1200
            project = ingest(
                client,
                event("click", ts=ts, x=10 * n + day, y=30 * n, path=path, w=width),
                event(
                    "move",
                    ts=ts + 1,
                    path=path,
                    w=width,
                    points=[{"x": 7 * i + n, "y": 11 * i + day, "tsOffset": 3 * i} for i in range(5)],
                ),
                event("scroll", ts=ts + 2, scrollDepthPct=10 * n + day, path=path, w=width),
                event("pageview", ts=ts + 3, path=path, w=width),
                session_id=f"s-{day}",
                user={"id": f"u-{n % 2}"} if n else None,
            )
    # A move whose points straddle the ``from`` of a query below (and whose first point precedes its ts).
    points = [{"x": 40 + i, "y": 50 + i, "tsOffset": 4 * i - 8} for i in range(6)]
    ingest(client, event("move", ts=T0 + DAY // 2 + 2, path="/b", w=1200, points=points), session_id="s-0")
    return project


def _heatmaps(client: FlaskClient, project: str, queries: Iterable[dict[str, Any]]) -> list[Any]:
    """The project's heatmap answers to ``queries``, each of them a 200."""
    out: list[Any] = []
    for params in queries:
        response = client.get(f"/api/projects/{project}/heatmap", query_string=params, headers=API)
        assert response.status_code == 200, (params, response.get_json())
        out.append(response.get_json())
    return out


def _answers(client: FlaskClient, project: str) -> list[Any]:
    out = _heatmaps(client, project, QUERIES)
    for params in ({"limit": 1000}, {"path": "/a", "type": "move", "offset": 3, "limit": 7}):
        response = client.get(f"/api/projects/{project}/events", query_string=params, headers=API)
        out.append(response.get_json()["events"])
    sessions = client.get(f"/api/projects/{project}/sessions", headers=API).get_json()["sessions"]
    out.append(sessions)
    out.append(client.get(f"/api/projects/{project}/sessions/s-1", headers=API).get_json())
    return out


def test_compaction_and_rebuild_change_no_answer(app: Flask, client: FlaskClient) -> None:
    project = _fill(client)
    before = _answers(client, project)
    assert before[0]["meta"]["total"] > 0
    runner = app.test_cli_runner()
    result = runner.invoke(args=["heat", "compact"])
    assert result.exit_code == 0, result.output
    assert _answers(client, project) == before
    result = runner.invoke(args=["heat", "rebuild-aggregates"])
    assert result.exit_code == 0 and "from 49 stored event(s)" in result.output, result.output
    assert _answers(client, project) == before
    ingest(client, event("click", ts=T0 + 5, x=1, y=1, path="/b", w=1200), session_id="s-0")
    after = _answers(client, project)
    assert after[1]["meta"]["total"] == before[1]["meta"]["total"] + 1


def test_huge_coordinates_at_the_highest_resolution(client: FlaskClient) -> None:
    # 10^7 x 1024 does not fit a 32-bit integer: the binning must not overflow.
    project = ingest(client, event("click", x=9_999_999, y=9_999_999), event("click", x=-5, y=3))
    response = client.get(f"/api/projects/{project}/heatmap", query_string={"resolution": 1024}, headers=API)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["meta"]["plotted"] == 2
    assert {p["value"] for p in body["points"]} == {1}


LEGACY = sa.MetaData()
LEGACY_EVENTS = sa.Table(
    "events",
    LEGACY,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True),
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
    sa.Index("ix_events_project_ts", "project_id", "ts"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)


LEGACY_USERS = sa.Table(  # keyed by id alone
    "users",
    LEGACY,
    sa.Column("id", sa.String(36), primary_key=True),
    sa.Column("project_id", sa.String(36), nullable=False),
    sa.Column("external_id", sa.String(128), nullable=False),
    sa.Column("traits_json", sa.Text),
    sa.Column("created_at", sa.BigInteger, nullable=False),
    sa.UniqueConstraint("project_id", "external_id", name="uq_users_project_external"),
    mysql_charset="utf8mb4",
    mysql_collate="utf8mb4_bin",
)


def _legacy_rows(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first layout's rows (one per move point) of the events API's items."""
    rows = []
    for item in items:
        meta = json.loads(item["metaJson"])
        viewport = meta["viewport"]
        bw, bh = viewport_bucket(meta["meta"], viewport["w"], viewport["h"])
        event_id, index = item["id"].rsplit(":", 1)
        rows.append(
            {
                "project_id": item["projectId"],
                "event_id": event_id,
                "point_index": int(index),
                "session_id": item["sessionId"],
                "user_id": item["userId"],
                "type": item["type"],
                "ts": item["ts"],
                "path": item["path"],
                "selector": item["selector"],
                "x": item["x"],
                "y": item["y"],
                "scroll_depth": item["scrollDepth"],
                "viewport_w": viewport["w"],
                "viewport_h": viewport["h"],
                "bucket_w": bw,
                "bucket_h": bh,
                "meta_json": item["metaJson"],
                "data_json": json.dumps(item["data"]) if item["data"] is not None else None,
            }
        )
    return rows


def _to_first_layout(app: Flask, backend_name: str, rows: list[dict[str, Any]]) -> None:
    """Replace the events by the same events in the first release's layout, counters reset."""
    repo = app.extensions["heat_collector"].repository
    if backend_name == "mongodb":
        db = repo.db
        db.events.drop()
        db.heat_aggregates.drop()
        db.sessions.update_many({}, {"$unset": {"eventCount": "", "lastPath": "", "lastTs": ""}})
        db.projects.update_many({}, {"$unset": {"maxSpan": ""}})
        db.events.create_index(
            [("projectId", 1), ("eventId", 1), ("pointIndex", 1)], unique=True, name="uq_events_project_event_point"
        )
        camel = {"project_id": "projectId", "event_id": "eventId", "point_index": "pointIndex"}
        docs = [
            {camel.get(k, "".join(w.title() if i else w for i, w in enumerate(k.split("_")))): v for k, v in r.items()}
            for r in rows
        ]
        db.events.insert_many(docs)
        return
    with repo.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE events")
        conn.exec_driver_sql("DROP TABLE heat_aggregates")
        conn.exec_driver_sql("UPDATE sessions SET event_count = 0, last_path = NULL, last_ts = NULL")
        conn.exec_driver_sql("UPDATE projects SET max_span = 0")
        users = [dict(r._mapping) for r in conn.exec_driver_sql("SELECT * FROM users")]
        conn.exec_driver_sql("DROP TABLE users")
        LEGACY.create_all(conn)
        conn.execute(sa.insert(LEGACY_EVENTS), rows)
        conn.execute(sa.insert(LEGACY_USERS), users)


def _migrate_twice(app: Flask, answers: Callable[[], list[Any]], before: list[Any]) -> list[str]:
    """``flask heat migrate`` twice (it is repeatable), ``answers()`` still ``before`` after each run;
    what each run said."""
    said = []
    for _ in range(2):
        result = app.test_cli_runner().invoke(args=["heat", "migrate"])
        assert result.exit_code == 0, result.output
        assert answers() == before
        said.append(result.output)
    return said


def test_migrate_moves_the_first_layout_forward(app: Flask, client: FlaskClient, backend_name: str) -> None:
    """A database of the first release (a row per move point) answers the same after `flask heat migrate`."""
    project = _fill(client)
    before = _answers(client, project)
    items = client.get(f"/api/projects/{project}/events", query_string={"limit": 1000}, headers=API).get_json()
    _to_first_layout(app, backend_name, _legacy_rows(items["events"]))
    said = _migrate_twice(app, lambda: _answers(client, project), before)
    assert said[0].startswith("heat-collector: migrated the database from layout 1 to layout 2"), said[0]
    assert "already up to date" in said[1]


@pytest.mark.parametrize("backend", ["postgresql", "mysql"], indirect=True)  # server databases only
def test_concurrent_migrations_of_an_empty_database(backend: str, backend_name: str) -> None:
    """Gunicorn workers all migrate at start; on a new database they must not race on CREATE TABLE."""
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from flask_heat_collector.repositories.sql import SqlRepository
    from flask_heat_collector.repositories.sql_schema import metadata

    engine = sa.create_engine(backend)
    metadata.drop_all(engine)
    engine.dispose()
    barrier = Barrier(4)

    def migrate() -> None:
        repo = SqlRepository(backend)
        barrier.wait()
        try:
            repo.migrate()
        finally:
            repo.dispose()

    with ThreadPoolExecutor(4) as pool:
        for future in [pool.submit(migrate) for _ in range(4)]:
            future.result()


def test_compaction_during_ingest_keeps_every_count(app: Flask) -> None:
    """Batches stored while compactions run: the pieces still add up to exactly the stored rows."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    repo = app.extensions["heat_collector"].repository
    done = threading.Event()

    def compact_until_done() -> int:
        runs = 0
        while not done.is_set():
            repo.compact()
            runs += 1
        return runs

    def send(worker: int) -> None:
        client = app.test_client()
        for n in range(12):
            ts = T0 + (n % 3) * DAY + worker * 1000 + n
            moves = [{"x": 5 * i + worker, "y": 7 * i + n, "tsOffset": i} for i in range(4)]
            body = batch(
                event("click", ts=ts, x=worker * 10 + n, y=n * 3, path="/c", w=1200),
                event("move", ts=ts + 1, path="/c", w=1200, points=moves),
                session_id=f"w-{worker}",
            )
            response = client.post("/ingest", json=body, headers=headers())
            assert response.status_code == 200, response.get_json()

    with ThreadPoolExecutor(max_workers=5) as pool:
        compactor = pool.submit(compact_until_done)
        for future in [pool.submit(send, worker) for worker in range(4)]:
            future.result()
        done.set()
        assert compactor.result() > 0
    client = app.test_client()
    project = client.post("/ingest", json=batch(event("pageview", ts=T0)), headers=headers()).get_json()["projectId"]
    params = {"type": "all", "path": "/c", "from": T0, "to": T0 + 3 * DAY - 1}
    url = f"/api/projects/{project}/heatmap"
    merged = client.get(url, query_string=params, headers=API).get_json()
    assert merged["meta"]["total"] == 4 * 12 * 5
    repo.rebuild_aggregates()  # the oracle: every piece computed again from the stored rows
    assert client.get(url, query_string=params, headers=API).get_json() == merged


@pytest.mark.parametrize("backend", ["mongo"], indirect=True)
def test_a_mongo_merge_stopped_halfway_changes_no_answer(app: Flask, client: FlaskClient) -> None:
    """MongoDB merges without a transaction: the merged piece is written first, naming what it replaces."""
    from flask_heat_collector.aggregates import merge_pieces
    from flask_heat_collector.repositories.mongo import _piece, _piece_doc

    project = _fill(client)
    before = _answers(client, project)
    db = app.extensions["heat_collector"].repository.db
    fields = ("projectId", "pathKey", "day", "type", "bucketW", "bucketH", "viewW")
    key = db.heat_aggregates.find_one({"part": {"$gt": 0}, "type": "click"}, {"_id": 0, **dict.fromkeys(fields, 1)})
    docs = list(db.heat_aggregates.find(key))
    assert len(docs) > 1
    # The state after the merged pieces were inserted and before the replaced ones were deleted.
    merged = [
        dict(_piece_doc(p, project), replaces=[d["_id"] for d in docs]) for p in merge_pieces([_piece(d) for d in docs])
    ]
    db.heat_aggregates.insert_many(merged)
    assert _answers(client, project) == before
    assert app.test_cli_runner().invoke(args=["heat", "compact"]).exit_code == 0
    assert _answers(client, project) == before
    assert db.heat_aggregates.count_documents({"_id": {"$in": [d["_id"] for d in docs]}}) == 0


def _pieces(app: Flask, project: str, days: tuple[int, int], path: str | None = None) -> list[Any]:
    """The aggregate pieces a heatmap over ``days`` reads (with their cells)."""
    repo = app.extensions["heat_collector"].repository
    return list(repo.read(lambda reader: reader.aggregates(project, path, days, blobs=(("click", "move"), 1200, None))))


def test_a_burst_of_batches_leaves_few_pieces_to_read(make_app: Any) -> None:
    """Compaction runs every few batches as well as by time: a read right after a burst of ingest
    merges a bounded number of pieces per key-day, and still answers exactly."""
    app = make_app(aggregate_compact_seconds=0, aggregate_compact_batches=4)
    client = app.test_client()
    project = ""
    for n in range(30):
        points = [{"x": 13 * i + n, "y": 17 * i, "tsOffset": i} for i in range(20)]
        body = batch(event("move", ts=T0 + 1000 * n, path="/p", points=points), session_id=f"s-{n}")
        with client.post("/ingest", json=body, headers=headers()) as response:  # closed: as a server does
            assert response.status_code == 200, response.get_json()
            project = response.get_json()["projectId"]
    pieces = _pieces(app, project, (T0 // DAY, T0 // DAY))
    assert 1 <= len(pieces) <= 4, [piece.part for piece in pieces]
    repo = app.extensions["heat_collector"].repository
    day = (T0 // DAY, T0 // DAY)
    for width in (None, ALL_WIDTHS):  # the report pieces (per band, and every band) by count too
        found = repo.read(lambda reader, w=width: reader.report_pieces(project, None, day, width=w))
        assert 1 <= len(found) <= 4, [piece.part for piece in found]
    url = f"/api/projects/{project}/heatmap"
    params = {"type": "move", "from": T0, "to": T0 + DAY - 1}
    before = client.get(url, query_string=params, headers=API).get_json()
    assert before["meta"]["total"] == 30 * 20
    app.extensions["heat_collector"].repository.rebuild_aggregates()
    assert client.get(url, query_string=params, headers=API).get_json() == before
    paths = client.get(f"/api/projects/{project}/paths", query_string=params, headers=API).get_json()["paths"]
    assert [(p["path"], p["events"], p["sessions"]) for p in paths] == [("/p", 30 * 20, 30)]


def test_a_timed_compaction_that_rolls_no_month_merges_report_pieces(make_app: Any) -> None:
    """The worker's timed pass (most of them roll no month) merges the report pieces too."""
    app = make_app(aggregate_compact_seconds=0, aggregate_compact_batches=0)
    client = app.test_client()
    project = ""
    for n in range(6):
        project = ingest(client, event("click", ts=T0 + 1000 * n, x=n, y=n, path="/p"), session_id=f"s-{n}")
    repo = app.extensions["heat_collector"].repository
    day = (T0 // DAY, T0 // DAY)

    def pieces() -> list[int]:
        return [len(repo.read(lambda r, w=w: r.report_pieces(project, None, day, width=w))) for w in (None, ALL_WIDTHS)]

    assert pieces() == [6, 6]
    repo.compact(1000, roll=False, full=False)
    assert pieces() == [1, 1]


def _day_ms(year: int, month: int, day: int) -> int:
    import datetime

    return int(datetime.datetime(year, month, day, tzinfo=datetime.timezone.utc).timestamp()) * 1000


MONTHS_FROM = _day_ms(2024, 1, 15)
MONTH_RANGES = [
    (0, _day_ms(2025, 1, 1) - 1),  # every month
    (_day_ms(2024, 2, 1), _day_ms(2024, 3, 1) - 1),  # one whole month
    (_day_ms(2024, 1, 20), _day_ms(2024, 4, 10) - 1),  # whole months between partial ones
    (_day_ms(2024, 1, 20) + 5_000, _day_ms(2024, 3, 1) + 7_000),  # and raw edges
    (_day_ms(2024, 2, 3), _day_ms(2024, 2, 20) - 1),  # days of one month
]


def _month_answers(client: FlaskClient, project: str) -> list[Any]:
    kinds: list[dict[str, Any]] = [{"type": "all"}, {"type": "move", "resolution": 32}, {"path": "/m"}]
    queries = [{**params, "from": ts_from, "to": ts_to} for ts_from, ts_to in MONTH_RANGES for params in kinds]
    return _heatmaps(client, project, queries)


def test_month_pieces_keep_every_answer_through_erase_and_purge(make_app: Any) -> None:
    """Compaction rolls finished months into month pieces: a year reads at most 12 + 31 pieces per
    key; answers stay those of the raw rows through compaction, erase and purge."""
    app = make_app(aggregate_compact_seconds=0, aggregate_compact_batches=0)
    client = app.test_client()
    project = ""
    for n in range(100):  # one batch a day, 2024-01-15 .. 2024-04-23
        ts = MONTHS_FROM + n * DAY + 3_600_000 * (n % 24)
        points = [{"x": 9 * i + n, "y": 5 * i + n, "tsOffset": 600 * i} for i in range(4)]
        project = ingest(
            client,
            event("click", ts=ts, x=n * 7 % 1200, y=n * 11, path="/m"),
            event("move", ts=ts + 1, path="/m", points=points),
            event("scroll", ts=ts + 2, scrollDepthPct=n % 100, path="/m"),
            session_id=f"s-{n % 2}-{n % 7}",
            user={"id": f"u-{n % 2}"},
        )
    before = _month_answers(client, project)
    assert before[0]["meta"]["total"] == 100 * 6
    runner = app.test_cli_runner()
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0
    assert _month_answers(client, project) == before
    year = (_day_ms(2024, 1, 1) // DAY, _day_ms(2025, 1, 1) // DAY - 1)
    read = _pieces(app, project, year, "/m")
    per_key: dict[tuple[str, int], int] = {}
    for piece in read:
        per_key[(piece.type, piece.bucket_w)] = per_key.get((piece.type, piece.bucket_w), 0) + 1
    assert per_key and max(per_key.values()) <= 12 + 31, per_key

    erased = runner.invoke(args=["heat", "erase", "--project-id", project, "--user-id", "u-1"])
    assert erased.exit_code == 0, erased.output
    after_erase = _month_answers(client, project)
    assert after_erase[0]["meta"]["total"] == 50 * 6
    app.extensions["heat_collector"].repository.rebuild_aggregates()  # the oracle: pieces from the rows
    assert _month_answers(client, project) == after_erase
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0
    assert _month_answers(client, project) == after_erase

    cut = _day_ms(2024, 2, 10)
    app.extensions["heat_collector"].repository.purge(None, cut // DAY, dry_run=False)
    end = _day_ms(2024, 6, 1) - 1
    url = f"/api/projects/{project}/heatmap"
    everything = client.get(url, query_string={"type": "all", "from": 0, "to": end}, headers=API).get_json()
    kept = client.get(url, query_string={"type": "all", "from": cut, "to": end}, headers=API).get_json()
    assert everything == kept
    assert 0 < kept["meta"]["total"] < after_erase[0]["meta"]["total"]


@pytest.mark.parametrize("backend", ["mongo"], indirect=True)
def test_a_mongo_month_roll_stopped_halfway_changes_no_answer(app: Flask, client: FlaskClient) -> None:
    """MongoDB rolls a month without a transaction: the month piece is written first, naming the day
    pieces it covers; a roll stopped there is finished by the next compaction."""
    project = _fill(client)
    runner = app.test_cli_runner()
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0  # the month of T0 is over: rolled
    ingest(client, event("click", ts=T0 + 5, x=3, y=4, path="/b", w=1200), session_id="s-0")
    repo = app.extensions["heat_collector"].repository
    fields = ("projectId", "pathKey", "day", "type", "bucketW", "bucketH", "viewW")
    doc = repo.db.heat_aggregates.find_one({"part": {"$gt": 0}})
    repo.compact(1, keys=[tuple(doc[name] for name in fields)])  # merged, not rolled yet
    before = _answers(client, project)
    settle = repo._settle_month
    calls: list[int] = []

    def stopping(*args: Any) -> None:
        calls.append(1)
        if len(calls) == 2:  # the month piece is written; the day pieces are not marked yet
            raise RuntimeError("stopped")
        settle(*args)

    repo._settle_month = stopping
    with pytest.raises(RuntimeError):
        repo.compact()
    del repo._settle_month
    assert repo.db.heat_aggregates.count_documents({"covers": {"$exists": True}}) == 1
    assert _answers(client, project) == before
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0
    assert repo.db.heat_aggregates.count_documents({"covers": {"$exists": True}}) == 0
    assert repo.db.heat_aggregates.count_documents({"part": {"$gt": -(2**62), "$lt": 0}}) == 0  # all rolled
    assert _answers(client, project) == before


WIDTH_QUERIES: list[dict[str, Any]] = [
    {"type": "all"},
    {"type": "click", "anchor": "center"},
    {"type": "all", "anchor": "scale", "resolution": 64},
    {"type": "all", "anchor": "center", "resolution": 100},
    {"type": "all", "anchor": "scale", "viewports": "all"},
    {"type": "move", "anchor": "center", "from": T0 + DAY // 2, "to": T0 + 2 * DAY + 5},
]


def _fill_widths(client: FlaskClient) -> str:
    """Two days of clicks, moves and scrolls of three exact widths in band 1300 and one in band 1400."""
    project = ""
    widths = (1280, 1280, 1300, 1320, 1366)
    for day in range(2):
        for n, width in enumerate(widths):
            ts = T0 + day * DAY + n * 3_600_000 + 11
            project = ingest(
                client,
                event("click", ts=ts, x=37 * n + 400 * day + 3, y=20 * n + 5, w=width),
                event("click", ts=ts + 1, x=width - 1 - n, y=9 * n, w=width),
                event(
                    "move",
                    ts=ts + 2,
                    w=width,
                    points=[{"x": 101 * i + n, "y": 13 * i + day, "tsOffset": 2 * i} for i in range(6)],
                ),
                event("scroll", ts=ts + 3, scrollDepthPct=15 * n + day, w=width),
                session_id=f"s-{day}-{n}",
            )
    return project


def _width_answers(client: FlaskClient, project: str) -> list[Any]:
    return _heatmaps(client, project, WIDTH_QUERIES)


def _to_bucket_keyed(app: Flask, backend_name: str) -> None:
    """Make the database what a release before the exact width had: events without it, aggregates
    keyed by bucket only (their pieces left stale: migrate must make them again)."""
    repo = app.extensions["heat_collector"].repository
    if backend_name == "mongodb":
        db = repo.db
        db.events.update_many({}, {"$unset": {"viewW": ""}})
        db.heat_aggregates.update_many({}, {"$unset": {"viewW": ""}})
        db.heat_aggregates.drop_index("uq_heat_aggregates_key_w")
        key = ("projectId", "pathKey", "day", "type", "bucketW", "bucketH", "part")
        db.heat_aggregates.create_index([(k, 1) for k in key], name="uq_heat_aggregates_key")
        db.heat_migrations.delete_one({"_id": "aggregates-by-view-width"})
        return
    columns = "project_id, path_key, day, type, bucket_w, bucket_h, part, n, first_seq, max_y, cells, depths"
    with repo.engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE old_aggregates AS SELECT {columns} FROM heat_aggregates")
        conn.exec_driver_sql("DROP TABLE heat_aggregates")
        conn.exec_driver_sql("ALTER TABLE old_aggregates RENAME TO heat_aggregates")
        conn.exec_driver_sql("ALTER TABLE events DROP COLUMN view_w")


def test_migrate_keys_aggregates_of_an_older_database_by_exact_width(
    app: Flask, client: FlaskClient, backend_name: str
) -> None:
    """A database made before the exact viewport width was kept answers like a fresh one after
    `flask heat migrate`: the width comes from the stored meta, the aggregates are made again."""
    project = _fill_widths(client)
    before = _width_answers(client, project)
    assert before[0]["meta"]["viewport"]["w"] == 1280 and before[0]["meta"]["bucket"].startswith("1300x")
    assert {answer["meta"]["anchor"] for answer in before} == {"left", "center", "scale"}
    _to_bucket_keyed(app, backend_name)
    said = _migrate_twice(app, lambda: _width_answers(client, project), before)
    assert "heatmap aggregates by exact viewport width" in said[0], said[0]
    assert "already up to date" in said[1], said[1]
    result = app.test_cli_runner().invoke(args=["heat", "compact"])
    assert result.exit_code == 0 and _width_answers(client, project) == before


def test_only_rows_of_other_exact_widths_are_read_raw(app: Flask, client: FlaskClient) -> None:
    """Over whole days the rows as wide as the frame come from the aggregates: a map reads raw only
    the plotted rows of the band's other exact widths (the anchor places them)."""
    tally = app.extensions["heat_collector"].repository.tally
    project = ingest(client, *[event("click", ts=T0 + n, x=5 * n, y=n, w=1280, h=720) for n in range(6)])
    ingest(client, event("pageview", ts=T0 + 50, w=1320), event("scroll", ts=T0 + 51, scrollDepthPct=30, w=1320))
    url = f"/api/projects/{project}/heatmap"
    whole_day = {"from": T0, "to": T0 + DAY - 1, "resolution": 64}
    for anchor in ("left", "center", "scale"):
        before = tally.events
        body = client.get(url, query_string={**whole_day, "anchor": anchor}, headers=API).get_json()
        assert body["meta"]["viewport"]["w"] == 1280 and body["meta"]["plotted"] == 6
        assert tally.events == before  # no click of another width: nothing read raw
    ingest(client, event("click", ts=T0 + 60, x=700, y=7, w=1320), event("click", ts=T0 + 61, x=9, y=9, w=1320))
    for anchor in ("left", "center", "scale"):
        before = tally.events
        body = client.get(url, query_string={**whole_day, "anchor": anchor}, headers=API).get_json()
        assert body["meta"]["viewport"]["w"] == 1280 and body["meta"]["plotted"] == 8
        assert tally.events - before == 2  # the two 1320 px clicks, not the 1280 px ones
