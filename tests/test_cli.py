"""``flask heat migrate`` and ``heat-collector-migrate``: repeatable, keeping data."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from flask_heat_collector.cli import migrate_main, uri_from_environ
from flask_heat_collector.errors import ConfigurationError

from .helpers import QUERY_KEY, batch, event, headers


def event_count(client: Any, project: str) -> int:
    response = client.get(f"/api/projects/{project}/events", headers={"x-api-key": QUERY_KEY})
    return len(response.get_json()["events"])


def test_flask_heat_migrate_is_repeatable_and_keeps_data(make_app: Any) -> None:
    app = make_app(auto_migrate=True)
    client = app.test_client()
    project = client.post("/ingest", json=batch(event("click"), event("scroll")), headers=headers()).get_json()[
        "projectId"
    ]
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["heat", "migrate"])
        assert result.exit_code == 0, result.output
    assert "already up to date" in result.output
    assert event_count(client, project) == 2


def test_flask_heat_migrate_settles_the_pending_sessions(make_app: Any) -> None:
    """A migration that adds the signal tables marks every session: the command settles them, so the
    first report does not while a client waits."""
    app = make_app()
    client = app.test_client()
    for i in range(3):
        client.post("/ingest", json=batch(event("click"), session_id=f"s-{i}"), headers=headers())
    repository = app.extensions["heat_collector"].repository
    repository.mark_rage(None)  # what migrate() does when the signal tables are new
    result = app.test_cli_runner().invoke(args=["heat", "migrate"])
    assert result.exit_code == 0, result.output
    assert "settled the signals of 3 pending session(s)" in result.output
    assert repository.settle_rage(None) == 0


def empty_database(backend: str, backend_name: str) -> None:
    """No table at all (the server databases of the suite keep their tables between tests)."""
    if backend_name in ("postgresql", "mysql"):
        from flask_heat_collector.repositories.sql_schema import metadata

        engine = sa.create_engine(backend)
        metadata.drop_all(engine)
        engine.dispose()


def stored_names(backend_name: str) -> list[str]:
    """The tables (collections) a new database gets, as the migrate commands name them."""
    if backend_name == "mongodb":
        from flask_heat_collector.repositories.mongo import INDEXES

        return sorted({collection for collection, *_ in INDEXES})
    from flask_heat_collector.repositories.sql_schema import metadata

    return [table.name for table in metadata.sorted_tables]


@pytest.mark.parametrize("auto_migrate", [False, True])
def test_flask_heat_migrate_says_what_it_did(
    backend: str, backend_name: str, make_app: Any, auto_migrate: bool
) -> None:
    empty_database(backend, backend_name)
    runner = make_app(auto_migrate=auto_migrate).test_cli_runner()
    first = runner.invoke(args=["heat", "migrate"])
    assert first.exit_code == 0, first.output
    assert "created a new database" in first.output and "up to date" not in first.output
    assert all(name in first.output for name in stored_names(backend_name)), first.output
    # With HEAT_AUTO_MIGRATE the app made them as it started, and the command says so.
    assert ("at start (HEAT_AUTO_MIGRATE)" in first.output) is auto_migrate
    again = runner.invoke(args=["heat", "migrate"])
    assert again.exit_code == 0, again.output
    assert again.output == "heat-collector: database already up to date (layout 2), nothing to do\n"


def test_heat_collector_migrate_from_original_variables(
    backend: str, backend_name: str, make_app: Any, tmp_path: Any
) -> None:
    url = sa.make_url(backend) if not backend.startswith("mongodb") else None
    if backend_name == "sqlite":
        assert url is not None
        env = {"HEAT_DIALECT": "sqlite", "SQLITE_FILE": str(url.database)}
    elif backend_name == "postgresql":
        assert url is not None
        native = url.set(drivername="postgres").render_as_string(hide_password=False)
        env = {"HEAT_DIALECT": "pg", "DATABASE_URL": native}
    elif backend_name == "mysql":
        assert url is not None
        native = url.set(drivername="mysql").render_as_string(hide_password=False)
        env = {"HEAT_DIALECT": "mysql", "DATABASE_URL": native}
    else:
        env = {"HEAT_DIALECT": "mongodb", "DATABASE_URL": backend}
    empty_database(backend, backend_name)
    runner = CliRunner()
    result = runner.invoke(migrate_main, env=env)
    assert result.exit_code == 0, result.output
    assert "heat-collector-migrate: created a new database" in result.output
    assert all(name in result.output for name in stored_names(backend_name))
    # The schema it made serves an app that does not migrate itself, and a rerun keeps the data.
    app = make_app(auto_migrate=False)
    client = app.test_client()
    response = client.post("/ingest", json=batch(event("click")), headers=headers())
    assert response.status_code == 200, response.get_json()
    again = runner.invoke(migrate_main, env=env)
    assert again.exit_code == 0, again.output
    assert again.output == "heat-collector-migrate: database already up to date (layout 2), nothing to do\n"
    assert event_count(client, response.get_json()["projectId"]) == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HEAT_DIALECT": "pg", "DATABASE_URL": "postgres://u:p@h:5432/d"}, "postgresql+psycopg2://u:p@h:5432/d"),
        ({"HEAT_DIALECT": "pg", "DATABASE_URL": "postgresql://h/d"}, "postgresql+psycopg2://h/d"),
        ({"HEAT_DIALECT": "pg", "DATABASE_URL": "postgresql+psycopg2://h/d"}, "postgresql+psycopg2://h/d"),
        ({"HEAT_DIALECT": "mysql", "DATABASE_URL": "mysql://root@h/d"}, "mysql+pymysql://root@h/d"),
        ({"HEAT_DIALECT": "mysql", "DATABASE_URL": "mysql+pymysql://root@h/d"}, "mysql+pymysql://root@h/d"),
    ],
)
def test_uri_from_environ(env: dict[str, str], expected: str) -> None:
    assert uri_from_environ(env) == (expected, None)


@pytest.mark.parametrize(
    "env",
    [{}, {"HEAT_DIALECT": "oracle"}, {"HEAT_DIALECT": "pg"}, {"HEAT_DIALECT": "pg", "DATABASE_URL": "mysql://h/d"}],
)
def test_uri_from_environ_errors(env: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError):
        uri_from_environ(env)
    result = CliRunner().invoke(migrate_main, env={"HEAT_DIALECT": "", "DATABASE_URL": "", **env})
    assert result.exit_code != 0
    assert "HEAT_DIALECT" in result.output or "DATABASE_URL" in result.output
