"""Setting it up: database URI schemes and drivers, misspelt settings, a database unreachable at start."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask

from flask_heat_collector import ConfigurationError, HeatCollector
from flask_heat_collector.cli import migrate_main, uri_from_environ
from flask_heat_collector.wsgi import create_app

from .helpers import API, Apps, ListHandler, batch, event, free_port, headers

PASSWORD = "s3cret-pw"
# The schemes each backend of the fixture is also reached by: plain ones get the installed driver.
ALIASES = {
    "sqlite": ["sqlite"],
    "postgresql": ["postgres", "postgresql", "postgresql+psycopg2"],
    "mysql": ["mysql", "mariadb", "mariadb+pymysql", "mysql+pymysql"],
    "mongodb": ["mongodb"],
}


@pytest.fixture
def apps() -> Iterator[Apps]:
    """Build apps with HeatCollector(app, **options); their repositories are disposed afterwards."""
    made = Apps("heat_setup")
    yield made
    made.dispose()


def stored_event_ids(app: Flask, project_id: str) -> set[str]:
    response = app.test_client().get(f"/api/projects/{project_id}/events", headers=API)
    assert response.status_code == 200, response.get_json()
    return {e["eventId"] for e in response.get_json()["events"]}


def ingest(app: Flask, *events: dict[str, Any]) -> Any:
    return app.test_client().post("/ingest", json=batch(*events), headers=headers())


# -- 9. schemes and drivers -------------------------------------------------------------------


def test_every_scheme_of_the_backend_stores_and_reads(backend: str, tmp_path: Path, apps: Any) -> None:
    scheme, rest = backend.split("://", 1)
    family = scheme.split("+", 1)[0]
    for alias in ALIASES[family]:
        app = apps(tmp_path / alias, database_uri=f"{alias}://{rest}")
        sent = event("click")
        response = ingest(app, sent)
        assert response.status_code == 200, (alias, response.get_json())
        assert sent["eventId"] in stored_event_ids(app, response.get_json()["projectId"]), alias


@pytest.mark.parametrize("uri", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_keeps_what_was_ingested(uri: str, tmp_path: Path, apps: Any) -> None:
    app = apps(tmp_path, database_uri=uri)
    sent = [event("click"), event("scroll")]
    response = ingest(app, *sent)
    assert response.status_code == 200, response.get_json()
    assert stored_event_ids(app, response.get_json()["projectId"]) == {e["eventId"] for e in sent}


@pytest.mark.parametrize(
    ("uri", "hidden", "module", "extra"),
    [
        ("postgresql+psycopg://u@127.0.0.1/d", "psycopg", "psycopg", "postgres"),
        ("postgresql://u@127.0.0.1/d", "psycopg2 psycopg", "psycopg2", "postgres"),
        ("postgres://u@127.0.0.1/d", "psycopg2 psycopg", "psycopg2", "postgres"),
        ("postgresql+psycopg2://u@127.0.0.1/d", "psycopg2", "psycopg2", "postgres"),
        ("mysql+mysqldb://u@127.0.0.1/d", "MySQLdb", "MySQLdb", "mysql"),
        ("mysql://u@127.0.0.1/d", "pymysql MySQLdb", "pymysql", "mysql"),
        ("mariadb://u@127.0.0.1/d", "pymysql MySQLdb", "pymysql", "mysql"),
        ("mongodb://127.0.0.1/d", "pymongo", "pymongo", "mongo"),
    ],
)
def test_missing_driver_is_one_configuration_error_at_init_app(
    uri: str, hidden: str, module: str, extra: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in hidden.split():
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    app = Flask("heat_setup", instance_path=str(tmp_path))
    with pytest.raises(ConfigurationError) as info:
        HeatCollector(app, database_uri=uri, auto_migrate=False)
    message = str(info.value)
    assert "HEAT_DATABASE_URI" in message and repr(module) in message
    assert f"pip install 'flask-heat-collector[{extra}]'" in message
    assert "heat_collector" not in app.extensions


@pytest.mark.parametrize(
    ("uri", "words"),
    [
        ("postgresql+nodriver://u@h/d", "nodriver"),
        ("postgresql+asyncpg://u@h/d", "asyncio"),
        ("oracle://u@h/d", "'oracle'"),
        ("u:pw@h/d", "no scheme"),
    ],
)
def test_unknown_or_unusable_driver_is_refused_at_init_app(uri: str, words: str, tmp_path: Path) -> None:
    app = Flask("heat_setup", instance_path=str(tmp_path))
    with pytest.raises(ConfigurationError) as info:
        HeatCollector(app, database_uri=uri, auto_migrate=False)
    assert "HEAT_DATABASE_URI" in str(info.value) and words in str(info.value)
    assert "pw" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"HEAT_DIALECT": "mysql", "DATABASE_URL": "mariadb+pymysql://root@h/d"}, "mysql+pymysql://root@h/d"),
        ({"HEAT_DIALECT": "mysql", "DATABASE_URL": "mariadb://root@h/d"}, "mysql+pymysql://root@h/d"),
    ],
)
def test_heat_collector_migrate_maps_schemes_as_the_extension(env: dict[str, str], expected: str) -> None:
    assert uri_from_environ(env) == (expected, None)


def test_heat_collector_migrate_names_a_missing_driver(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    env = {"HEAT_DIALECT": "pg", "DATABASE_URL": "postgresql+psycopg://u@127.0.0.1/d"}
    result = CliRunner().invoke(migrate_main, env=env)
    assert result.exit_code == 1
    assert "DATABASE_URL" in result.output and "'psycopg'" in result.output and "[postgres]" in result.output


# -- 10. misspelt settings ------------------------------------------------------------------


def warnings_about(logs: ListHandler, name: str) -> list[dict[str, Any]]:
    return [r for r in logs.records() if r["level"] == "warn" and name in r["msg"]]


def test_unknown_heat_names_in_app_config_warn_once_with_the_closest(tmp_path: Path, logs: ListHandler) -> None:
    app = Flask("heat_setup", instance_path=str(tmp_path))
    app.config.update(
        HEAT_RATE_LIMITS="1 per second",
        HEAT_QUERY_API_KEY="k",
        HEAT_ZZZ_NOTHING_LIKE_IT="1",
        HEAT_TEST_POSTGRES="reserved for the test suite",
        HEAT_DIALECT="pg",  # heat-collector-migrate's
        HEAT_RATE_LIMIT="5 per second",
    )
    HeatCollector(app, database_uri=f"sqlite:///{tmp_path / 'heat.db'}", ip_hash_secret="x", query_api_keys=["q"])
    app.extensions["heat_collector"].repository.dispose()
    warned = {r["setting"]: r for r in logs.records() if r["level"] == "warn" and "setting" in r}
    assert sorted(warned) == ["HEAT_QUERY_API_KEY", "HEAT_RATE_LIMITS", "HEAT_ZZZ_NOTHING_LIKE_IT"]
    assert len(warnings_about(logs, "HEAT_RATE_LIMITS")) == 1
    for name, closest in [("HEAT_RATE_LIMITS", "HEAT_RATE_LIMIT"), ("HEAT_QUERY_API_KEY", "HEAT_QUERY_API_KEYS")]:
        assert f"did you mean {closest}?" in warned[name]["msg"] and warned[name]["suggestion"] == closest
    assert "did you mean" not in warned["HEAT_ZZZ_NOTHING_LIKE_IT"]["msg"]


def test_unknown_heat_variables_in_the_environment_warn(tmp_path: Path, logs: ListHandler) -> None:
    environ = {
        "HEAT_DATABASE_URI": f"sqlite:///{tmp_path / 'heat.db'}",
        "HEAT_IP_HASH_SECRET": "x",
        "HEAT_QUERY_API_KEYS": "q",
        "HEAT_RATE_LIMITS": "1 per second",
        "HEAT_QUERY_API_KEY": "k",
        "HEAT_TEST_MONGO": "mongodb://127.0.0.1",
        "PATH": "/usr/bin",
    }
    app = create_app(environ)
    app.extensions["heat_collector"].repository.dispose()
    assert [r["setting"] for r in logs.records() if r["level"] == "warn" and "setting" in r] == [
        "HEAT_QUERY_API_KEY",
        "HEAT_RATE_LIMITS",
    ]
    assert "did you mean HEAT_RATE_LIMIT?" in warnings_about(logs, "HEAT_RATE_LIMITS")[0]["msg"]


# -- 12. database unreachable at start ------------------------------------------------------


def unreachable_uri(backend: str, tmp_path: Path) -> tuple[str, str]:
    """A URI of the backend's kind that cannot be reached, and the place the log line should name."""
    if backend.startswith("sqlite"):
        path = tmp_path / "not-yet" / "heat.db"
        return f"sqlite:///{path}", str(path)
    port = free_port()
    if backend.startswith("mongodb"):
        return f"mongodb://heat:{PASSWORD}@127.0.0.1:{port}/heat_test", f"127.0.0.1:{port}"
    url = sa.make_url(backend).set(username="heat", password=PASSWORD, host="127.0.0.1", port=port)
    return url.render_as_string(hide_password=False), f"127.0.0.1:{port}"


def test_unreachable_database_at_start_logs_one_line_and_answers_503(
    backend: str, tmp_path: Path, logs: ListHandler, apps: Any
) -> None:
    uri, place = unreachable_uri(backend, tmp_path)
    app = apps(tmp_path / "instance", database_uri=uri)  # does not raise
    errors = [r for r in logs.records() if r["level"] == "error"]
    assert len(errors) == 1, errors
    assert place in errors[0]["msg"] and "unreachable at start" in errors[0]["msg"]
    assert "storage_unavailable" in errors[0]["msg"]
    assert PASSWORD not in "\n".join(logs.lines)
    client = app.test_client()
    for response in (
        client.post("/ingest", json=batch(), headers=headers()),
        client.get("/api/projects/p/events", headers=API),
    ):
        assert response.status_code == 503
        assert response.get_json()["code"] == "storage_unavailable"
        assert int(response.headers["Retry-After"]) > 0
    assert client.options("/ingest").status_code == 204  # preflights need no database


class OffsetClock:
    """time.monotonic() plus an offset the test moves forward: backoff without sleeping."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


def test_migration_is_retried_with_backoff_until_the_database_is_there(
    tmp_path: Path, logs: ListHandler, apps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "later"
    app = apps(tmp_path / "instance", database_uri=f"sqlite:///{folder / 'heat.db'}")
    state = app.extensions["heat_collector"]
    clock = OffsetClock()
    state.pending_migration.clock = clock
    calls: list[int] = []
    migrate = state.repository.migrate

    def counted_migrate() -> None:
        calls.append(1)
        migrate()

    monkeypatch.setattr(state.repository, "migrate", counted_migrate)
    sent = event("click")

    def status() -> int:
        return int(ingest(app, sent).status_code)

    assert (status(), len(calls)) == (503, 0)  # not due: 1 s after the failure at start
    clock.offset = 1.0
    assert (status(), len(calls)) == (503, 1)  # due, retried, still unreachable: next one in 2 s
    folder.mkdir()
    clock.offset = 2.5
    assert (status(), len(calls)) == (503, 1)  # there now, but not due yet
    clock.offset = 3.1
    response = ingest(app, sent)
    assert response.status_code == 200, response.get_json()
    assert len(calls) == 2
    assert stored_event_ids(app, response.get_json()["projectId"]) == {sent["eventId"]}
    assert len(calls) == 2  # migrated once: later requests never retry
    done = [r for r in logs.records() if r["level"] == "info" and "migration done" in r["msg"]]
    assert len(done) == 1 and str(folder) in done[0]["msg"]


def test_backoff_doubles_up_to_a_minute(tmp_path: Path, apps: Any) -> None:
    app = apps(tmp_path / "instance", database_uri=f"sqlite:///{tmp_path / 'never' / 'heat.db'}")
    pending = app.extensions["heat_collector"].pending_migration
    clock = OffsetClock()
    pending.clock = clock
    waits = []
    for _ in range(9):
        clock.offset += pending.due - clock()  # jump to the moment the retry is due
        assert ingest(app).status_code == 503
        waits.append(round(pending.due - clock()))
    assert waits == [2, 4, 8, 16, 32, 60, 60, 60, 60]


def test_one_thread_retries_while_the_others_answer_503(
    tmp_path: Path, apps: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "later"
    app = apps(tmp_path / "instance", database_uri=f"sqlite:///{folder / 'heat.db'}")
    folder.mkdir()
    state = app.extensions["heat_collector"]
    clock = OffsetClock()
    state.pending_migration.clock = clock
    clock.offset = 1.0
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []
    migrate = state.repository.migrate

    def slow_migrate() -> None:
        calls.append(1)
        started.set()
        release.wait(5)
        migrate()

    monkeypatch.setattr(state.repository, "migrate", slow_migrate)
    statuses: list[int] = []
    retrying = threading.Thread(target=lambda: statuses.append(ingest(app).status_code))
    retrying.start()
    assert started.wait(5)
    assert ingest(app).status_code == 503  # while the retry runs: no second one
    release.set()
    retrying.join(5)
    assert len(calls) == 1 and statuses == [200]


def test_flask_heat_migrate_works_when_the_start_found_no_database(tmp_path: Path, apps: Any) -> None:
    folder = tmp_path / "later"
    app = apps(tmp_path / "instance", database_uri=f"sqlite:///{folder / 'heat.db'}")
    folder.mkdir()
    result = app.test_cli_runner().invoke(args=["heat", "migrate"])
    assert result.exit_code == 0, result.output
    assert "created a new database" in result.output
