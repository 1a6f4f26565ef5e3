"""GET /api/projects and meta.projectFound (SPEC §4), on every backend, through HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from . import oracle
from .helpers import API, QUERY_KEY, backend_free, batch, event, ingest_all

DAY = 86_400_000
T = 20_718 * DAY + 3_600_000  # a past instant, one hour after a UTC midnight
DASHBOARD = "https://dash.example.com"


def bodies_a() -> list[dict[str, Any]]:
    """Two sessions over three days; the latest item is a move's last point, after its event ts."""
    points = [{"x": 1, "y": 2, "tsOffset": -500}, {"x": 3, "y": 4, "tsOffset": 4_000}]
    return [
        batch(event("click", ts=T), event("scroll", ts=T + 3_000), session_id="a1", user={"id": "ua"}),
        batch(
            event("pageview", ts=T + 2 * DAY, path="/late"),
            event("move", ts=T + 2 * DAY + 100, points=points, path="/late"),
            session_id="a2",
            user={"id": "ub"},
        ),
    ]


def get(client: FlaskClient, url: str, **params: Any) -> Any:
    response = client.get(url, query_string=params, headers=API)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    return response.get_json()


def test_projects_list_every_project_with_its_last_event(make_app: Callable[..., Flask]) -> None:
    app = make_app()
    client, runner = app.test_client(), app.test_cli_runner()
    empty = client.get("/api/projects", headers=API)
    assert empty.status_code == 200 and empty.get_json() == {"projects": []}
    assert empty.headers["Cache-Control"] == "no-store" and empty.headers["X-Total-Count"] == "0"

    bodies = bodies_a()
    a = ingest_all(client, bodies, key="key-a")
    b = ingest_all(client, [batch(event("click", ts=T - DAY), session_id="b1")], key="key-b")
    made = runner.invoke(args=["heat", "project", "create", "--name", "Shop", "--key", "key-c"])
    assert made.exit_code == 0, made.output
    c = made.stdout.split("\t")[0]

    want_last = {a: max(r.ts for r in oracle.stored_rows(bodies)), b: T - DAY, c: None}
    assert want_last[a] == T + 2 * DAY + 4_100

    tally = app.extensions["heat_collector"].repository.tally

    def check() -> None:
        read = tally.events
        found = get(client, "/api/projects")["projects"]
        assert tally.events == read  # lastEventAt reads no event
        assert {p["id"]: p["lastEventAt"] for p in found} == want_last
        assert {p["id"]: p["name"] for p in found} == {a: "Default", b: "Default", c: "Shop"}
        assert [(p["createdAt"], p["id"]) for p in found] == sorted((p["createdAt"], p["id"]) for p in found)
        assert all(isinstance(p["createdAt"], int) for p in found)

    check()
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0  # merged pieces
    check()
    # Erasing the user of the latest rows moves lastEventAt back to what is left.
    erased = runner.invoke(args=["heat", "erase", "--project-id", a, "--user-id", "ub"])
    assert erased.exit_code == 0 and json.loads(erased.stdout)["verified"] is True, erased.output
    want_last[a] = T + 3_000
    check()


def test_a_scoped_key_lists_its_projects_only(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    a = ingest_all(client, bodies_a(), key="key-a")
    ingest_all(client, [batch(event("click", ts=T), session_id="b1")], key="key-b")
    scoped = make_app(query_api_keys=[QUERY_KEY, f"scoped@{a}", "scoped@no-such-project"]).test_client()
    found = scoped.get("/api/projects", headers={"Authorization": "Bearer scoped"})
    assert found.status_code == 200
    assert [p["id"] for p in found.get_json()["projects"]] == [a]
    assert len(get(scoped, "/api/projects")["projects"]) == 2  # the unscoped key reads both


@backend_free
def test_projects_needs_a_key_and_answers_cors(make_app: Callable[..., Flask]) -> None:
    client = make_app(query_allowed_origins=[DASHBOARD]).test_client()
    assert client.get("/api/projects").get_json()["code"] == "missing_api_key"
    wrong = client.get("/api/projects", headers={"x-api-key": "nope"})
    assert wrong.status_code == 401 and wrong.get_json()["code"] == "invalid_api_key"
    answer = client.get("/api/projects", headers={"Origin": DASHBOARD, **API})
    assert answer.status_code == 200 and answer.headers["Access-Control-Allow-Origin"] == DASHBOARD
    assert "X-Total-Count" in answer.headers["Access-Control-Expose-Headers"]
    pre = client.options("/api/projects", headers={"Origin": DASHBOARD, "Access-Control-Request-Method": "GET"})
    assert pre.status_code == 204 and pre.headers["Access-Control-Allow-Origin"] == DASHBOARD
    twice = client.get("/api/projects?x=1&x=2", headers=API)
    assert twice.status_code == 400 and twice.get_json()["code"] == "invalid_query"
    document = client.get("/api/openapi.json").get_json()
    assert "/api/projects" in document["paths"]
    assert document["components"]["schemas"]["Projects"]["required"] == ["projects"]


@backend_free
def test_projects_without_query_auth(make_app: Callable[..., Flask]) -> None:
    client = make_app(query_auth="none").test_client()
    ingest_all(client, [batch(event("click", ts=T))])
    assert len(client.get("/api/projects").get_json()["projects"]) == 1


PROJECT_ENDPOINTS = ("heatmap", "scrollmap", "elements", "paths", "events", "sessions", "sessions/a1")


def test_meta_says_whether_the_project_exists(client: FlaskClient) -> None:
    a = ingest_all(client, bodies_a(), key="key-a")
    for endpoint in PROJECT_ENDPOINTS:
        assert get(client, f"/api/projects/{a}/{endpoint}")["meta"]["projectFound"] is True, endpoint
        missing = get(client, f"/api/projects/no-such-project/{endpoint}")
        assert missing["meta"]["projectFound"] is False, endpoint
    # Unknown: answered as before, empty.
    assert get(client, "/api/projects/no-such-project/events")["events"] == []
    assert get(client, "/api/projects/no-such-project/sessions/a1")["session"] is None
    heatmap = client.get("/api/projects/no-such-project/heatmap", headers=API)
    assert heatmap.get_json()["points"] == [] and heatmap.headers["X-Result-Count"] == "0"
    # A project that exists but has no such session: found, no session.
    body = get(client, f"/api/projects/{a}/sessions/nobody")
    assert body["session"] is None and body["meta"]["projectFound"] is True
    assert "projectFound" not in get(client, "/api/sessions/a1")["meta"]  # no project named


@backend_free
def test_the_session_detail_of_a_scoped_key_needs_its_project(make_app: Callable[..., Flask]) -> None:
    scoped = make_app(query_api_keys=["scoped@p1"]).test_client()
    other = scoped.get("/api/projects/elsewhere/sessions/a1", headers={"x-api-key": "scoped"})
    assert other.status_code == 403 and other.get_json()["code"] == "forbidden_project"
    listed = scoped.get("/api/projects", headers={"x-api-key": "scoped"})
    assert listed.status_code == 200 and listed.get_json() == {"projects": []}  # p1 does not exist
