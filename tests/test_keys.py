"""Project keys and query keys: new projects per IP, key rotation, scoped query keys, query CORS."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector import HeatCollector
from flask_heat_collector.errors import ConfigurationError

from .helpers import QUERY_KEY, ListHandler, batch, event, headers


def post(client: FlaskClient, body: dict[str, Any], key: str, ip: str = "203.0.113.7") -> Any:
    return client.post("/ingest", json=body, headers=headers(key), environ_base={"REMOTE_ADDR": ip})


def projects_of(app: Flask) -> list[list[str]]:
    """``flask heat project list`` as rows of (id, key, name)."""
    result = app.test_cli_runner().invoke(args=["heat", "project", "list"])
    assert result.exit_code == 0, result.output
    return [line.split("\t") for line in result.output.splitlines() if line]


def cli(app: Flask, *args: str) -> Any:
    return app.test_cli_runner().invoke(args=["heat", "project", *args])


def code_of(response: Any) -> str:
    body = response.get_json()
    assert body is not None, response.data
    return str(body["code"])


# -- new projects per client IP -------------------------------------------------------------------


def test_rotating_project_keys_cannot_make_unbounded_projects(make_app: Callable[..., Flask]) -> None:
    app = make_app(rate_limit="10 per 10 seconds")
    client = app.test_client()
    answers = [post(client, batch(), key=f"rotating-{i}") for i in range(40)]
    assert [a.status_code for a in answers[:10]] == [200] * 10
    refused = answers[10:]
    assert {a.status_code for a in refused} == {429}
    assert {code_of(a) for a in refused} == {"too_many_new_projects"}
    assert all(int(a.headers["Retry-After"]) >= 1 for a in refused)
    assert len(projects_of(app)) == 10  # the default HEAT_NEW_PROJECTS_PER_IP, "10 per hour"

    # Known keys keep working from that IP; another IP may still make projects.
    assert post(client, batch(), key="rotating-3").status_code == 200
    assert post(client, batch(), key="from-elsewhere", ip="198.51.100.9").status_code == 200
    assert len(projects_of(app)) == 11


def test_new_projects_per_ip_is_configurable(make_app: Callable[..., Flask]) -> None:
    app = make_app(new_projects_per_ip="2 per minute")
    client = app.test_client()
    statuses = [post(client, batch(), key=f"k-{i}").status_code for i in range(4)]
    assert statuses == [200, 200, 429, 429]


# -- key rotation -----------------------------------------------------------------------------------


@pytest.mark.parametrize("registered_only", [False, True])
def test_rotated_key_is_refused_at_once_by_every_worker(make_app: Callable[..., Flask], registered_only: bool) -> None:
    # Two apps on one database stand for two gunicorn workers; both used the key just before.
    worker_a = make_app(registered_projects_only=registered_only)
    worker_b = make_app(registered_projects_only=registered_only)
    created = cli(worker_a, "create", "--key", "old-key", "--name", "Shop")
    assert created.exit_code == 0, created.output
    project_id = created.output.split("\t")[0]
    for worker in (worker_a, worker_b):
        assert post(worker.test_client(), batch(event("click")), key="old-key").status_code == 200

    rotated = cli(worker_a, "rotate-key", project_id, "--key", "new-key")
    assert rotated.exit_code == 0, rotated.output
    assert rotated.output.split("\t")[:2] == [project_id, "new-key"]

    for worker in (worker_b, worker_a):
        client = worker.test_client()
        for _ in range(3):
            refused = post(client, batch(event("click")), key="old-key")
            assert refused.status_code == 403
            assert code_of(refused) == "retired_project_key"
        ok = post(client, batch(event("click")), key="new-key")
        assert ok.status_code == 200
        assert ok.get_json()["projectId"] == project_id
    # No project "Default" was made from the old key: the data stays in one project.
    assert [row[:3] for row in projects_of(worker_b)] == [[project_id, "new-key", "Shop"]]
    events = worker_b.test_client().get(f"/api/projects/{project_id}/events", headers={"x-api-key": QUERY_KEY})
    assert events.get_json()["meta"]["count"] == 4


def test_a_retired_key_never_names_a_project_again(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client = app.test_client()
    first = post(client, batch(), key="k-1").get_json()["projectId"]
    other = post(client, batch(), key="k-other").get_json()["projectId"]
    assert cli(app, "rotate-key", first, "--key", "k-2").exit_code == 0
    assert cli(app, "rotate-key", first, "--key", "k-3").exit_code == 0

    for retired in ("k-1", "k-2"):
        assert code_of(post(client, batch(), key=retired)) == "retired_project_key"
        made = cli(app, "create", "--key", retired)
        assert made.exit_code != 0 and "retired" in made.output
        reused = cli(app, "rotate-key", other, "--key", retired)
        assert reused.exit_code != 0 and "retired" in reused.output
    taken = cli(app, "rotate-key", other, "--key", "k-3")  # another project's key
    assert taken.exit_code != 0
    missing = cli(app, "rotate-key", "no-such-project")
    assert missing.exit_code != 0 and "no project" in missing.output
    assert sorted(row[1] for row in projects_of(app)) == ["k-3", "k-other"]
    assert post(client, batch(), key="k-3").get_json()["projectId"] == first


# -- scoped query keys ------------------------------------------------------------------------------


def _two_projects(app: Flask) -> tuple[str, str]:
    """Projects P1 and P2, each with a session "shared" holding one click."""
    client = app.test_client()
    p1 = post(client, batch(event("click"), session_id="shared"), key="key-1").get_json()["projectId"]
    p2 = post(client, batch(event("click"), session_id="shared"), key="key-2").get_json()["projectId"]
    return p1, p2


def test_query_keys_scoped_to_projects(make_app: Callable[..., Flask]) -> None:
    probe = make_app()
    p1, p2 = _two_projects(probe)
    app = make_app(query_api_keys=["all-key", f"one-key@{p1}", f"two-key@{p1}", f"two-key@{p2}"])
    client = app.test_client()

    def get(url: str, key: str) -> Any:
        return client.get(url, headers={"Authorization": f"Bearer {key}"})

    for endpoint in ("heatmap", "events", "sessions", "sessions/shared"):
        assert get(f"/api/projects/{p1}/{endpoint}", "one-key").status_code == 200
        refused = get(f"/api/projects/{p2}/{endpoint}", "one-key")
        assert refused.status_code == 403 and code_of(refused) == "forbidden_project"
        assert get(f"/api/projects/{p2}/{endpoint}", "two-key").status_code == 200
        assert get(f"/api/projects/{p2}/{endpoint}", "all-key").status_code == 200
    # Totals over every project need a key that may read every project.
    metrics = get("/api/metrics", "two-key")
    assert metrics.status_code == 403 and code_of(metrics) == "forbidden_project"
    assert get("/api/metrics", "all-key").status_code == 200

    # The unscoped session endpoint never mixes projects: the one the key may read, or 409.
    only = get("/api/sessions/shared", "one-key").get_json()
    assert only["session"]["projectId"] == p1 and only["meta"]["count"] == 1
    for key in ("two-key", "all-key"):
        ambiguous = get("/api/sessions/shared", key)
        assert ambiguous.status_code == 409 and code_of(ambiguous) == "ambiguous_session"
        assert ambiguous.get_json()["details"]["projects"] == sorted([p1, p2])
    assert get("/api/sessions/nobody", "one-key").get_json()["meta"]["found"] is False


def _local_app(tmp_path: Path, **options: Any) -> Flask:
    """An app on a private SQLite file, for tests whose outcome no backend changes."""
    app = Flask("heat_keys", instance_path=str(tmp_path / "instance"))
    settings: dict[str, Any] = {"database_uri": f"sqlite:///{tmp_path / 'keys.db'}", "ip_hash_secret": "s"}
    HeatCollector(app, **(settings | options))
    return app


@pytest.mark.parametrize("entry", ["@project", "key@", "@"])
def test_malformed_scoped_key_is_refused_at_start(tmp_path: Path, entry: str) -> None:
    with pytest.raises(ConfigurationError, match="HEAT_QUERY_API_KEYS"):
        _local_app(tmp_path, query_api_keys=["fine", entry])


def test_no_query_key_configured_is_said_at_start_and_in_the_answer(tmp_path: Path, logs: ListHandler) -> None:
    app = _local_app(tmp_path)
    warnings = [r["msg"] for r in logs.records() if r["level"] == "warn"]
    assert any("HEAT_QUERY_API_KEYS is empty" in msg for msg in warnings), warnings
    answer = app.test_client().get("/api/projects/p/events", headers={"x-api-key": "anything"})
    assert answer.status_code == 401
    assert "No query API key is configured" in answer.get_json()["message"]


# -- CORS for dashboards on other origins -----------------------------------------------------------

DASHBOARD = "https://dash.example.com"


def test_query_cors_for_listed_origins_only(tmp_path: Path) -> None:
    app = _local_app(tmp_path, query_api_keys=[QUERY_KEY], query_allowed_origins=[DASHBOARD])
    client = app.test_client()
    url = "/api/projects/p1/heatmap"
    preflight = client.options(
        url,
        headers={
            "Origin": DASHBOARD,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, x-api-key",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == DASHBOARD
    allowed = {h.strip().lower() for h in preflight.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "x-api-key"} <= allowed
    assert "Access-Control-Allow-Credentials" not in preflight.headers

    answer = client.get(url, headers={"Origin": DASHBOARD, "x-api-key": QUERY_KEY})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "Origin" in answer.headers["Vary"]
    assert "X-Result-Count" in answer.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in answer.headers
    # An error (wrong key) is readable by the dashboard too, so it can say why.
    wrong = client.get(url, headers={"Origin": DASHBOARD, "x-api-key": "wrong"})
    assert wrong.status_code == 401 and wrong.headers["Access-Control-Allow-Origin"] == DASHBOARD

    for origin in ("https://evil.example.com", "null"):
        other = client.get(url, headers={"Origin": origin, "x-api-key": QUERY_KEY})
        assert "Access-Control-Allow-Origin" not in other.headers
        pre = client.options(url, headers={"Origin": origin, "Access-Control-Request-Method": "GET"})
        assert "Access-Control-Allow-Origin" not in pre.headers
        assert "Access-Control-Allow-Headers" not in pre.headers


def test_query_cors_is_off_by_default(tmp_path: Path) -> None:
    client = _local_app(tmp_path, query_api_keys=[QUERY_KEY]).test_client()
    answer = client.get("/api/projects/p1/events", headers={"Origin": DASHBOARD, "x-api-key": QUERY_KEY})
    assert answer.status_code == 200
    assert "Access-Control-Allow-Origin" not in answer.headers
    pre = client.options(
        "/api/projects/p1/events", headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "GET"}
    )
    assert "Access-Control-Allow-Origin" not in pre.headers


@pytest.mark.parametrize("origins", [["*"], ["https://dash.example.com/"], ["dash.example.com"]])
def test_query_cors_wildcards_and_malformed_origins_are_refused(tmp_path: Path, origins: list[str]) -> None:
    with pytest.raises(ConfigurationError, match="HEAT_QUERY_ALLOWED_ORIGINS"):
        _local_app(tmp_path, query_allowed_origins=origins)


def test_query_cors_from_the_environment(tmp_path: Path) -> None:
    from flask_heat_collector.wsgi import create_app

    app = create_app(
        {
            "HEAT_DATABASE_URI": f"sqlite:///{tmp_path / 'env.db'}",
            "HEAT_QUERY_API_KEYS": f"{QUERY_KEY},scoped@p9",
            "HEAT_QUERY_ALLOWED_ORIGINS": f"{DASHBOARD}, https://other.example.org",
        }
    )
    client = app.test_client()
    answer = client.get(
        "/api/projects/p9/events", headers={"Origin": "https://other.example.org", "x-api-key": "scoped"}
    )
    assert answer.status_code == 200, json.loads(answer.data)
    assert answer.headers["Access-Control-Allow-Origin"] == "https://other.example.org"
    assert code_of(client.get("/api/projects/p8/events", headers={"x-api-key": "scoped"})) == "forbidden_project"
