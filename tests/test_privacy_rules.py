"""Privacy rules applied at ingest on every backend (issue 24): query strings and fragments removed
from stored paths unless allowed, and Do Not Track / Global Privacy Control honoured."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector.errors import ConfigurationError

from .helpers import API, backend_free, batch, event, headers

SEARCH = "/search?q=ada%40example.com&page=2&token=abc#results"
CART = "/#/cart?coupon=x&page=3"


def visit(client: FlaskClient, *, extra: dict[str, str] | None = None, session_id: str = "s-1") -> dict[str, Any]:
    body = batch(
        event("pageview", path=SEARCH, to=SEARCH, **{"from": "/?utm_source=mail&page=1"}),
        event("click", path=SEARCH),
        event("pageview", path=CART, to=CART, **{"from": SEARCH}),
        session_id=session_id,
        user={"id": "ada", "traits": {"plan": "pro"}},
    )
    response = client.post("/ingest", json=body, headers=headers(**(extra or {})))
    assert response.status_code == 200, response.get_json()
    answer: dict[str, Any] = response.get_json()
    return answer


def stored(client: FlaskClient, project: str, session_id: str = "s-1") -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/api/projects/{project}/sessions/{session_id}", headers=API).get_json()
    return answer


def pageview_urls(events: list[dict[str, Any]]) -> list[tuple[str, str | None, str | None]]:
    return [(e["path"], e["data"].get("from"), e["data"].get("to")) for e in events if e["type"] == "pageview"]


def test_query_strings_and_fragments_are_removed_by_default(make_app: Callable[..., Flask]) -> None:
    client = make_app().test_client()
    project = visit(client)["projectId"]
    answer = stored(client, project)
    assert [e["path"] for e in answer["events"]] == ["/search", "/search", "/"]
    assert pageview_urls(answer["events"]) == [("/search", "/", "/search"), ("/", "/search", "/")]
    assert answer["session"]["firstPath"] == "/search"
    paths = client.get(f"/api/projects/{project}/paths", headers=API).get_json()["paths"]
    assert sorted(p["path"] for p in paths) == ["/", "/search"]


def test_allowed_parameters_and_hash_routes_are_kept(make_app: Callable[..., Flask]) -> None:
    client = make_app(path_query_allowlist=["page"], hash_routes=True).test_client()
    project = visit(client)["projectId"]
    events = stored(client, project)["events"]
    assert [e["path"] for e in events] == ["/search?page=2#results", "/search?page=2#results", "/#/cart?page=3"]
    assert pageview_urls(events)[1] == ("/#/cart?page=3", "/search?page=2#results", "/#/cart?page=3")
    heat = client.get(f"/api/projects/{project}/heatmap", query_string={"path": "/search?page=2#results"}, headers=API)
    assert heat.get_json()["meta"]["total"] == 1


@pytest.mark.parametrize("header", ["DNT", "Sec-GPC"])
def test_do_not_track_stores_no_user_traits_or_ip_hash(make_app: Callable[..., Flask], header: str) -> None:
    client = make_app().test_client()
    tracked = visit(client, session_id="tracked")
    untracked = visit(client, extra={header: "1"}, session_id="untracked")
    assert untracked["accepted"] == tracked["accepted"] == 3 and untracked["dropped"] == 0
    project = tracked["projectId"]
    kept, anon = stored(client, project, "tracked"), stored(client, project, "untracked")
    assert kept["session"]["userId"] is not None and kept["session"]["ipHash"] is not None
    assert anon["session"]["userId"] is None and anon["session"]["ipHash"] is None
    assert {e["userId"] for e in anon["events"]} == {None}
    sessions = client.get(f"/api/projects/{project}/sessions", query_string={"userId": "ada"}, headers=API)
    assert [s["sessionId"] for s in sessions.get_json()["sessions"]] == ["tracked"]


def test_do_not_track_drop_stores_nothing(make_app: Callable[..., Flask]) -> None:
    app = make_app(honor_dnt="drop")
    client = app.test_client()
    answer = visit(client, extra={"DNT": "1"}, session_id="gone")
    assert (answer["accepted"], answer["duplicates"], answer["dropped"]) == (0, 0, 3)
    project = visit(client, session_id="kept")["projectId"]
    assert stored(client, project, "gone")["meta"]["found"] is False
    assert stored(client, project, "kept")["meta"]["found"] is True
    metrics = client.get("/metrics", headers=API).get_data(as_text=True)
    assert 'heat_collector_events_dropped_total{reason="do_not_track",type="pageview"} 2.0' in metrics


def test_do_not_track_off_stores_the_batch_as_sent(make_app: Callable[..., Flask]) -> None:
    client = make_app(honor_dnt="off").test_client()
    project = visit(client, extra={"DNT": "1", "Sec-GPC": "1"})["projectId"]
    assert stored(client, project)["session"]["userId"] is not None


@backend_free
@pytest.mark.parametrize(
    ("option", "value"), [("honor_dnt", "yes"), ("path_query_allowlist", [""]), ("hash_routes", "maybe")]
)
def test_bad_privacy_settings_name_their_key(make_app: Callable[..., Flask], option: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=f"HEAT_{option.upper()}"):
        make_app(**{option: value})
