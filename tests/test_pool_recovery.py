"""A pooled connection the server has closed is replaced without failing the request."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from .helpers import QUERY_KEY, batch, event, headers

OWN_ID = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
KILL = {"postgresql": "SELECT pg_terminate_backend({})", "mysql": "KILL {}"}


def _kill_pooled_connection(app: Flask, uri: str, dialect: str) -> None:
    """Close, from the server side, the one connection the app's pool holds."""
    engine = app.extensions["heat_collector"].repository.engine
    with engine.connect() as conn:
        own = int(conn.exec_driver_sql(OWN_ID[dialect]).scalar_one())
    admin = sa.create_engine(uri, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(KILL[dialect].format(own))
    admin.dispose()


def _one_click_then_killed(make_app: Callable[..., Flask], uri: str, dialect: str) -> tuple[FlaskClient, str]:
    """A new app with one click stored, then its pooled connection closed by the server; a client of
    the app and the click's project id."""
    app = make_app()
    client = app.test_client()
    first = client.post("/ingest", json=batch(event("click")), headers=headers())
    assert first.status_code == 200
    project: str = first.get_json()["projectId"]
    _kill_pooled_connection(app, uri, dialect)
    return client, project


@pytest.mark.parametrize("backend", list(KILL), indirect=True)  # the database servers
def test_dead_pooled_connection_is_replaced(make_app: Callable[..., Flask], backend: str, backend_name: str) -> None:
    client, project = _one_click_then_killed(make_app, backend, backend_name)
    again = client.post("/ingest", json=batch(event("click")), headers=headers())
    assert again.status_code == 200, again.get_data(as_text=True)
    _kill_pooled_connection(client.application, backend, backend_name)
    rows = client.get(f"/api/projects/{project}/events", headers={"x-api-key": QUERY_KEY})
    assert rows.status_code == 200 and rows.get_json()["meta"]["count"] == 2


@pytest.mark.parametrize("backend", list(KILL), indirect=True)  # the database servers
def test_dead_pooled_connection_is_replaced_for_a_report(
    make_app: Callable[..., Flask], backend: str, backend_name: str
) -> None:
    """A report's read sets its isolation level first: on PostgreSQL that is the first thing to meet
    the dead connection (in the driver, outside a statement), and must be retried as a statement is."""
    client, project = _one_click_then_killed(make_app, backend, backend_name)
    heatmap = client.get(f"/api/projects/{project}/heatmap?path=/", headers={"x-api-key": QUERY_KEY})
    assert heatmap.status_code == 200, heatmap.get_data(as_text=True)
    assert heatmap.get_json()["meta"]["total"] == 1
