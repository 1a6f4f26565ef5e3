"""The spread-moves heatmap right after a fill through ``POST /ingest`` (issue 21, item 4).

``python -m bench.spread_ingest URI [POINTS] [COMPACT_BATCHES]``: N move points (1,000 per event,
5 events per batch) spread over 1280 x 3000 on one path are posted to ``/ingest`` in-process
(Flask's test client, responses closed as a server closes them, so the compactor runs as it
does under gunicorn); the heatmap is queried at once with no pause, then after ``flask heat compact``
(medians of 7; on SQLite and PostgreSQL a copy taken right after the fill is queried in turns with
the compacted database, so both medians see the same machine load). Prints the times and their ratio.
"""

from __future__ import annotations

import sqlite3
import statistics
import sys
import tempfile
import time
import uuid

import sqlalchemy as sa
from flask import Flask

from flask_heat_collector import HeatCollector

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
PATH = "/spread"
PER_EVENT = 1000
PER_BATCH = 5
KEY = "bench-query-key"


def _batch(first: int, per_batch: int = PER_BATCH) -> dict[str, object]:
    events = []
    for e in range(per_batch):
        base = first + e * PER_EVENT
        points = [
            {"x": (i * 7919) % 1280, "y": (i * 104729) % 3000, "tsOffset": (i - base) * 10}
            for i in range(base, base + PER_EVENT)
        ]
        events.append(
            {
                "eventId": str(uuid.uuid4()),
                "sessionId": f"ss-{first // 100_000}",
                "ts": T0 + base * 10,
                "path": PATH,
                "viewport": {"w": 1280, "h": 720},
                "device": {},
                "type": "move",
                "points": points,
            }
        )
    return {"session": {"id": f"ss-{first // 100_000}"}, "events": events}


def _app(uri: str, batches: int, seconds: int = 10) -> Flask:
    app = Flask("bench", instance_path=tempfile.mkdtemp())
    HeatCollector(
        app,
        database_uri=uri,
        query_api_keys=[KEY],
        rate_limit="1000000 per second",
        aggregate_compact_batches=batches,
        aggregate_compact_seconds=seconds,
    )
    return app


def _query_ms(app: Flask, project: str) -> tuple[float, float]:
    """The query's CPU time in this process and its wall time (ms). On a loaded machine wall time
    says little; CPU time is the whole query on SQLite, without the server's share on PostgreSQL."""
    started, wall = time.process_time(), time.perf_counter()
    response = app.test_client().get(
        f"/api/projects/{project}/heatmap", query_string={"path": PATH}, headers={"x-api-key": KEY}
    )
    assert response.status_code == 200, response.get_json()
    return (time.process_time() - started) * 1000, (time.perf_counter() - wall) * 1000


def _admin(uri: str, statement: str) -> None:
    """Run ``statement`` (``{name}``: the database of ``uri``) on the server's ``postgres`` database."""
    url = sa.make_url(uri)
    engine = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(statement.format(name=url.database))
    engine.dispose()


def _copy(app: Flask, uri: str) -> str | None:
    """A copy of the database as it is (SQLite: the backup API; PostgreSQL: a template copy)."""
    if uri.startswith("sqlite:///"):
        source = uri[len("sqlite:///") :]
        with sqlite3.connect(source) as src, sqlite3.connect(source + ".fresh") as dst:
            src.backup(dst)
        return uri + ".fresh"
    if uri.startswith("postgresql"):
        app.extensions["heat_collector"].repository.engine.dispose()  # a template has no other sessions
        copy = str(sa.make_url(uri).set(database=f"{sa.make_url(uri).database}_fresh").render_as_string(False))
        _admin(copy, "DROP DATABASE IF EXISTS {name}")
        _admin(uri, f"CREATE DATABASE {sa.make_url(copy).database} TEMPLATE {{name}}")
        return copy
    return None


def main(uri: str, points: int, batches: int) -> None:
    app = _app(uri, batches)
    client = app.test_client()
    project = ""
    started = time.perf_counter()
    for first in range(0, points, PER_EVENT * PER_BATCH):
        with client.post("/ingest", json=_batch(first), headers={"x-project-key": "bench"}) as response:
            assert response.status_code == 200, response.get_json()
            project = response.get_json()["projectId"]
    filled = time.perf_counter() - started
    fresh_app = app
    copy = _copy(app, uri)  # a copy keeps the state right after the fill: both are queried in turns
    if copy is not None:
        fresh_app = _app(copy, 0, 0)
    fresh = [_query_ms(fresh_app, project)]  # the first query right after the fill
    if copy is None:
        fresh += [_query_ms(app, project) for _ in range(6)]
    app.test_cli_runner().invoke(args=["heat", "compact"])
    compacted = []
    for _ in range(7):
        if copy is not None:
            fresh.append(_query_ms(fresh_app, project))
        compacted.append(_query_ms(app, project))
    for made in {app, fresh_app}:
        made.extensions["heat_collector"].repository.dispose()
    if copy is not None and copy.startswith("postgresql"):
        _admin(copy, "DROP DATABASE {name}")
    cpu = [statistics.median(t[0] for t in times) for times in (fresh, compacted)]
    wall = [statistics.median(t[1] for t in times) for times in (fresh, compacted)]
    print(
        f"{uri.split(':')[0]} points={points} compact_batches={batches} fill={filled:.1f}s; "
        f"first query right after the fill {fresh[0][0]:.1f} ms CPU; medians right after / after compaction: "
        f"CPU {cpu[0]:.1f} / {cpu[1]:.1f} ms (ratio {cpu[0] / cpu[1]:.2f}), "
        f"wall {wall[0]:.1f} / {wall[1]:.1f} ms (ratio {wall[0] / wall[1]:.2f})"
    )


if __name__ == "__main__":
    main(
        sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 1_000_000, int(sys.argv[3]) if len(sys.argv) > 3 else 4
    )
