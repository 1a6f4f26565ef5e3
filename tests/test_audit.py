"""The admin API's promises (SPEC 5 and 8): audit lines that cannot be skipped, parameters that cannot
be misread, every user id reachable, no key or user id in the log."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask

from flask_heat_collector.wsgi import create_app

from .helpers import API, TS, ListHandler, backend_free, batch, event, headers, ingest

ADMIN = "weak"  # an admin key short enough to guess: the log must not let anyone check a guess
ADMIN_HEADERS = {"x-api-key": ADMIN}
PACKAGE = logging.getLogger("flask_heat_collector")


@pytest.fixture
def package_logger_restored() -> Iterator[None]:
    """The package logger's level and handlers as they were (the ready app installs its handler)."""
    level, handlers = PACKAGE.level, list(PACKAGE.handlers)
    yield
    PACKAGE.setLevel(level)
    PACKAGE.handlers[:] = handlers


def _admin_app(make_app: Any, **options: Any) -> Flask:
    app: Flask = make_app(admin_api_keys=[ADMIN], **options)
    return app


def _audits(logs: ListHandler, what: str) -> list[dict[str, Any]]:
    return [r for r in logs.records() if r.get("audit") == what]


def _user_events(app: Flask, user: str, count: int = 3) -> str:
    """``count`` clicks of ``user`` in one session; the project id."""
    events = [event("click", ts=TS + i, x=i) for i in range(count)]
    return ingest(app.test_client(), *events, session_id=f"s-{count}", user={"id": user})


@pytest.mark.usefixtures("package_logger_restored")
def test_the_ready_app_writes_audit_lines_whatever_the_log_level(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    environ = {
        "HEAT_DATABASE_URI": f"sqlite:///{tmp_path / 'heat.db'}",
        "HEAT_LOG_LEVEL": "error",
        "HEAT_ADMIN_API_KEYS": ADMIN,
        "HEAT_IP_HASH_SECRET": "s",
        "HEAT_RETENTION_DAYS": "30",
    }
    app = create_app(environ)
    try:
        client = app.test_client()
        project = ingest(client, event("click"), user={"id": "ada-lovelace"})
        capsys.readouterr()
        url = f"/api/projects/{project}/users/ada-lovelace"
        assert client.get(f"{url}/export", headers=ADMIN_HEADERS).status_code == 200
        assert client.delete(url, headers=ADMIN_HEADERS).status_code == 200
        assert client.post("/api/purge", headers=ADMIN_HEADERS).status_code == 200
        assert client.get(f"/api/projects/{project}/events", headers=ADMIN_HEADERS).status_code == 401
    finally:
        app.extensions["heat_collector"].repository.dispose()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [(r["audit"], r["phase"]) for r in lines if "audit" in r] == [
        ("export", "start"),
        ("export", "end"),
        ("erase", "start"),
        ("erase", "end"),
        ("purge", "start"),
        ("purge", "end"),
    ]
    assert all(r["level"] == "info" for r in lines if "audit" in r)
    assert not [r for r in lines if "audit" not in r]  # the level still holds for the rest: no 401 warning


@backend_free
def test_audit_lines_pair_a_start_with_an_end_saying_whether_it_completed(make_app: Any, logs: ListHandler) -> None:
    app = _admin_app(make_app, retention_days=30)
    client = app.test_client()
    project = _user_events(app, "ada-lovelace")
    url = f"/api/projects/{project}/users/ada-lovelace"

    cut = client.get(f"{url}/export", headers=ADMIN_HEADERS, buffered=False)
    assert cut.status_code == 200
    assert next(iter(cut.response)).startswith(b'{"user": ')
    started = _audits(logs, "export")
    assert [r["phase"] for r in started] == ["start"]  # written before anything is read or sent
    assert started[0]["actor"].startswith("key:") and started[0]["projectId"] == project
    cut.close()  # the client goes away after the first piece
    ended = _audits(logs, "export")[1]
    assert ended["phase"] == "end" and ended["completed"] is False and ended["auditId"] == started[0]["auditId"]
    assert ended["error"] == "closed before the end" and ended["events"] == 0

    whole = json.loads(client.get(f"{url}/export", headers=ADMIN_HEADERS).get_data(as_text=True))
    assert len(whole["events"]) == 3
    full = _audits(logs, "export")[2:]
    assert [r["phase"] for r in full] == ["start", "end"] and full[0]["auditId"] == full[1]["auditId"]
    assert full[1]["completed"] is True and (full[1]["users"], full[1]["sessions"], full[1]["events"]) == (1, 1, 3)

    assert client.delete(url, headers=ADMIN_HEADERS).status_code == 200
    assert client.post("/api/purge?dryRun=true", headers=ADMIN_HEADERS).status_code == 200
    for what in ("erase", "purge"):
        start, end = _audits(logs, what)
        assert (start["phase"], end["phase"], end["completed"]) == ("start", "end", True)
        assert start["auditId"] == end["auditId"] and "events" not in start and "events" in end
    assert _audits(logs, "erase")[1]["events"] == 3
    assert "ada-lovelace" not in json.dumps([r for r in logs.records() if "audit" in r])


@backend_free
def test_boolean_parameters_take_true_false_1_or_0_only(make_app: Any) -> None:
    app = _admin_app(make_app, retention_days=1)
    client = app.test_client()
    project = _user_events(app, "ada-lovelace")
    url = f"/api/projects/{project}/users/ada-lovelace"
    for value in ("yes", "on", "y", "TRUE ", "True", "", "2", "no", "false "):
        refused = client.delete(f"{url}?dryRun={quote(value)}", headers=ADMIN_HEADERS)
        assert refused.status_code == 400 and refused.get_json()["code"] == "invalid_query", value
        refused = client.post(f"/api/purge?dryRun={quote(value)}", headers=ADMIN_HEADERS)
        assert refused.status_code == 400 and refused.get_json()["code"] == "invalid_query", value
    events = client.get(f"/api/projects/{project}/events", headers=API).get_json()["events"]
    assert len(events) == 3  # nothing erased, nothing purged (the events are years old)
    for value in ("true", "1"):
        dry = client.delete(f"{url}?dryRun={value}", headers=ADMIN_HEADERS).get_json()
        assert dry == {"found": {"users": 1, "sessions": 1, "events": 3}, "dryRun": True}
    done = client.delete(f"{url}?dryRun=0", headers=ADMIN_HEADERS).get_json()
    assert done == {"erased": {"users": 1, "sessions": 1, "events": 3}, "verified": True}


SLASHED = ("tenant/alice", "/lead", "trail/", "a//b", "x/export", "export", "50%/ü?#", "line\nbreak/")


def test_every_user_id_is_exported_and_erased_over_http(make_app: Any) -> None:
    app = _admin_app(make_app)
    client = app.test_client()
    for index, user in enumerate(SLASHED, start=1):
        project = _user_events(app, user, count=index)
    for index, user in enumerate(SLASHED, start=1):
        url = f"/api/projects/{project}/users/{quote(user, safe='')}"
        exported = client.get(f"{url}/export", headers=ADMIN_HEADERS)
        assert exported.status_code == 200, (user, exported.get_data(as_text=True)[:200])
        document = json.loads(exported.get_data(as_text=True))
        assert document["user"]["externalId"] == user and len(document["events"]) == index
        erased = client.delete(url, headers=ADMIN_HEADERS)
        assert erased.status_code == 200, (user, erased.get_data(as_text=True)[:200])
        assert erased.get_json()["erased"] == {"users": 1, "sessions": 1, "events": index}
    assert client.get(f"/api/projects/{project}/events", headers=API).get_json()["events"] == []


@backend_free
def test_the_actor_is_a_keyed_hash_of_the_admin_key(make_app: Any, logs: ListHandler) -> None:
    actors = []
    for secret in ("first-secret", "second-secret", "first-secret"):
        app = _admin_app(make_app, ip_hash_secret=secret)
        project = _user_events(app, "ada-lovelace")
        app.test_client().delete(f"/api/projects/{project}/users/ada-lovelace?dryRun=true", headers=ADMIN_HEADERS)
        actors.append(_audits(logs, "erase")[-1]["actor"])
    unsalted = hashlib.sha256(ADMIN.encode()).hexdigest()
    assert actors[0] == actors[2] != actors[1]  # stable under one secret, unknowable without it
    assert all(actor.startswith("key:") and actor[4:] not in unsalted for actor in actors)


@backend_free
def test_admin_request_lines_never_carry_the_user_id(make_app: Any, logs: ListHandler) -> None:
    app = _admin_app(make_app, log_level="debug")
    client = app.test_client()
    user = "zoe.secret-id"
    project = _user_events(app, user)
    url = f"/api/projects/{project}/users/{user}"
    assert client.get(f"{url}/export", headers=ADMIN_HEADERS).status_code == 200
    assert client.delete(f"{url}?dryRun=maybe", headers=ADMIN_HEADERS).status_code == 400
    assert client.delete(url, headers={"x-api-key": "wrong"}).status_code == 401
    assert client.delete(url, headers=ADMIN_HEADERS).status_code == 200
    lines = [r for r in logs.records() if r.get("method") in ("GET", "DELETE")]
    assert len(lines) == 4  # one line per request: completed (debug) or refused (warn)
    assert {r["path"] for r in lines} == {
        "/api/projects/<project_id>/users/<heat_user_id:user_id>",
        "/api/projects/<project_id>/users/<heat_user_id:user_id>/export",
    }
    assert user not in "\n".join(logs.lines)


@backend_free
def test_a_repeated_query_parameter_is_refused_everywhere(make_app: Any) -> None:
    app = _admin_app(make_app, retention_days=1)
    client = app.test_client()
    project = ingest(client, event("click"), session_id="s-1", user={"id": "ada-lovelace"})
    base = f"/api/projects/{project}"
    queries = [
        *(f"{base}/{name}?to=&to=1" for name in ("heatmap", "scrollmap", "elements", "paths", "events", "sessions")),
        f"{base}/sessions?limit=1&limit=2",
        f"{base}/sessions/s-1?type=click&type=click",
        "/api/sessions/s-1?limit=1&limit=1",
        "/api/metrics?x=1&x=2",
        "/metrics?x=1&x=1",
        "/api/openapi.json?x=&x=",
    ]
    for url in queries:
        refused = client.get(url, headers=API)
        assert refused.status_code == 400 and refused.get_json()["code"] == "invalid_query", url
        assert client.get(url.split("?")[0], headers=API).status_code == 200, url
    admin = [
        client.delete(f"{base}/users/ada-lovelace?dryRun=true&dryRun=false", headers=ADMIN_HEADERS),
        client.get(f"{base}/users/ada-lovelace/export?x=1&x=1", headers=ADMIN_HEADERS),
        client.post("/api/purge?dryRun=true&dryRun=true", headers=ADMIN_HEADERS),
        client.post("/ingest?v=1&v=2", json=batch(), headers=headers()),
    ]
    assert [(r.status_code, r.get_json()["code"]) for r in admin] == [(400, "invalid_query")] * 4
    assert client.get(f"{base}/events", headers=API).get_json()["meta"]["count"] == 1
