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
        assert "up to date" in result.output
    assert event_count(client, project) == 2


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
    runner = CliRunner()
    result = runner.invoke(migrate_main, env=env)
    assert result.exit_code == 0, result.output
    # The schema it made serves an app that does not migrate itself, and a rerun keeps the data.
    app = make_app(auto_migrate=False)
    client = app.test_client()
    response = client.post("/ingest", json=batch(event("click")), headers=headers())
    assert response.status_code == 200, response.get_json()
    assert runner.invoke(migrate_main, env=env).exit_code == 0
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
