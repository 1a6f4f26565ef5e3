"""The faster heatmap paths answer exactly what the plain repository queries answer."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector.repositories.base import EventFilter, Repository

from .conftest import QUERY_KEY
from .helpers import batch, event, headers

API = {"x-api-key": QUERY_KEY}


def _post(client: FlaskClient, *events: dict[str, Any], session_id: str = "s-1") -> str:
    response = client.post("/ingest", json=batch(*events, session_id=session_id), headers=headers())
    assert response.status_code == 200, response.get_json()
    project: str = response.get_json()["projectId"]
    return project


def test_summary_matches_count_and_frame(app: Flask, client: FlaskClient) -> None:
    # Two buckets with the same number of rows: the one stored first wins the tie.
    project = _post(
        client,
        event("click", x=5, y=900, w=1200, h=800),
        event("move", w=390, h=844, points=[{"x": 1, "y": 2, "tsOffset": 0}]),
        event("scroll", w=390, h=844, scrollDepthPct=40),
        event("click", x=7, y=30, w=1200, h=800),
        event("pageview", w=1920, h=1080),
        event("scroll", scrollDepthPct=5000, meta={"viewportBucket": "640x480"}),
    )
    repo: Repository = app.extensions["heat_collector"].repository
    base = EventFilter(project_id=project)
    for types in (None, ("click",), ("scroll",), ("move", "pageview"), ("keyboard",)):
        flt = replace(base, types=types)
        fast = repo.heatmap_summary(flt)
        slow = Repository.heatmap_summary(repo, flt)  # count_by_type + heatmap_frame
        assert fast == slow, types


def test_huge_coordinates_at_the_highest_resolution(client: FlaskClient) -> None:
    # 10^7 x 1024 does not fit a 32-bit integer: the binning must not overflow.
    project = _post(client, event("click", x=9_999_999, y=9_999_999), event("click", x=-5, y=3))
    response = client.get(f"/api/projects/{project}/heatmap", query_string={"resolution": 1024}, headers=API)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["meta"]["plotted"] == 2
    assert {p["value"] for p in body["points"]} == {1}


def test_migrate_adds_the_heatmap_index_to_older_tables(make_app: Any, backend_name: str) -> None:
    app = make_app()
    client = app.test_client()
    project = _post(client, event("click", x=10, y=20))
    repo = app.extensions["heat_collector"].repository
    if backend_name not in ("sqlite", "postgresql", "mysql"):
        pytest.skip("SQL schema only")
    engine = repo.engine
    with engine.begin() as conn:  # the schema of the first release
        if backend_name == "mysql":
            conn.exec_driver_sql("DROP INDEX ix_events_heatmap_key ON events")
            conn.exec_driver_sql("ALTER TABLE events DROP COLUMN path_key")
        else:
            conn.exec_driver_sql("DROP INDEX ix_events_heatmap")
            conn.exec_driver_sql("CREATE INDEX ix_events_project_path_type_ts ON events (project_id, path, type, ts)")
    repo.migrate()
    repo.migrate()  # repeatable
    with engine.connect() as conn:
        indexes = {ix["name"] for ix in sa.inspect(conn).get_indexes("events")}
    if backend_name == "mysql":
        assert {"ix_events_heatmap_key", "ix_events_project_path_type_ts"} <= indexes
    else:
        assert "ix_events_heatmap" in indexes and "ix_events_project_path_type_ts" not in indexes
    heatmap = client.get(f"/api/projects/{project}/heatmap", query_string={"path": "/"}, headers=API).get_json()
    assert heatmap["meta"]["plotted"] == 1


def test_concurrent_migrations_of_an_empty_database(backend: str, backend_name: str) -> None:
    """Gunicorn workers all migrate at start; on a new database they must not race on CREATE TABLE."""
    if backend_name not in ("postgresql", "mysql"):
        pytest.skip("server databases only")
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
