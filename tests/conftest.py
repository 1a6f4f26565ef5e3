"""One shared suite: the ``backend`` fixture runs each test on every database.

A backend whose server is unreachable skips locally and fails when ``CI=true``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from .helpers import Apps, ListHandler, Server
from .mongo_server import MongoServer

PG_ADMIN = os.environ.get("HEAT_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
MYSQL_ADMIN = os.environ.get("HEAT_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/test")
SQL_BACKENDS = ["sqlite", "postgresql", "mysql"]
BACKENDS = [*SQL_BACKENDS, "mongo"]
# A running MongoDB to test against instead of a SecantusDB subprocess.
MONGO_EXTERNAL = os.environ.get("HEAT_TEST_MONGO")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# SecantusDB answers one command at a time: while a long one runs (a purge under a loaded CI), the
# driver's heartbeat waits, and after connectTimeoutMS (the collector's default is 2 s) pymongo marks
# the server unknown and cancels the command. Real MongoDB answers heartbeats meanwhile.
SECANTUS_OPTIONS = "connectTimeoutMS=20000"


def unavailable(reason: str) -> None:
    """Fail in CI, skip locally."""
    if IN_CI:
        pytest.fail(f"backend unavailable in CI: {reason}")
    pytest.skip(reason)


class SqlServer:
    """A throw-away database on a real server, emptied after each test."""

    def __init__(self, admin_uri: str) -> None:
        self.admin = sa.make_url(admin_uri)
        self.name = f"heat_test_{uuid.uuid4().hex[:10]}"
        self.engine: sa.Engine | None = None
        self.error: str | None = None
        try:
            admin = sa.create_engine(self.admin, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.exec_driver_sql(f"CREATE DATABASE {self.name}")
            admin.dispose()
            self.uri = self.admin.set(database=self.name).render_as_string(hide_password=False)
            self.engine = sa.create_engine(self.uri)
        except Exception as exc:  # noqa: BLE001 - reported as skip/fail by the fixture
            self.error = f"{self.admin.get_backend_name()}: {exc}"

    def clean(self) -> None:
        from flask_heat_collector.repositories.sql_schema import metadata

        assert self.engine is not None
        with self.engine.begin() as conn:
            existing = sa.inspect(conn).get_table_names()
            for table in reversed(metadata.sorted_tables):
                if table.name in existing:
                    conn.execute(table.delete())

    def drop(self) -> None:
        if self.engine is None:
            return
        self.engine.dispose()
        admin = sa.create_engine(self.admin, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name}")
        admin.dispose()


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[SqlServer]:
    server = SqlServer(PG_ADMIN)
    yield server
    server.drop()


@pytest.fixture(scope="session")
def mysql_server() -> Iterator[SqlServer]:
    server = SqlServer(MYSQL_ADMIN)
    yield server
    server.drop()


@pytest.fixture(scope="session")
def mongo_server() -> Iterator[MongoServer]:
    server = MongoServer(external=MONGO_EXTERNAL)
    yield server
    server.stop()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """The database URI of one backend, empty at the start of the test."""
    name = request.param
    if name == "memory":  # tests.helpers.backend_free: tests that never depend on the database
        yield "sqlite://"
        return
    if name == "sqlite":
        yield f"sqlite:///{tmp_path / 'heat.db'}"
        return
    if name == "mongo":
        mongo: MongoServer = request.getfixturevalue("mongo_server")
        if mongo.error:
            unavailable(mongo.error)
        database = f"heat_test_{uuid.uuid4().hex}"
        yield f"{mongo.uri}/{database}?{SECANTUS_OPTIONS}"
        mongo.drop(database)
        return
    server: SqlServer = request.getfixturevalue(f"{name}_server")
    if server.error:
        unavailable(server.error)
    server.clean()
    yield server.uri
    server.clean()


@pytest.fixture
def backend_name(backend: str) -> str:
    return backend.split(":", 1)[0].split("+", 1)[0]


@pytest.fixture
def make_app(backend: str, tmp_path: Any) -> Iterator[Callable[..., Flask]]:
    """Build an app on the test's backend; overrides are HeatCollector options."""
    apps = Apps("heat_test", testing=True)
    yield lambda **overrides: apps(tmp_path / "instance", **{"database_uri": backend, **overrides})
    apps.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def logs() -> Iterator[ListHandler]:
    """Records of the ``flask_heat_collector`` logger, formatted as the JSON lines it writes."""
    handler = ListHandler()
    import logging

    logger = logging.getLogger("flask_heat_collector")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless (Playwright cannot download browsers here); one per test session.

    One Playwright for the whole session: a second sync Playwright started while one runs fails.
    """
    from .e2e.support import CHROMIUM, CHROMIUM_ARGS

    if not os.access(CHROMIUM, os.X_OK):
        unavailable(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("Playwright for Python is not installed (scripts/ensure-venv, or pip install --group test)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def live_server() -> Iterator[Callable[[Flask], Server]]:
    """Serve an app over real HTTP on a free loopback port (threaded)."""
    servers: list[Server] = []

    def start(app: Flask) -> Server:
        server = Server(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
