"""What every repository returns alike: plain Python values, insertion-order ties, batch duplicates."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector.listing import event_page
from flask_heat_collector.repositories.base import EventFilter, Repository, Scan, SessionQuery

from .helpers import API, batch, event, headers

PLAIN = (str, int, float, bool, type(None))


def assert_plain(value: Any, where: str = "value") -> None:
    """Only built-in types all the way down (no ObjectId, datetime, Int64, Decimal, Row...)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            assert_plain(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, tuple) and hasattr(value, "_fields"):  # the NamedTuple records
        for name in value._fields:
            assert_plain(getattr(value, name), f"{where}.{name}")
    elif type(value) in (list, tuple):
        for i, item in enumerate(value):
            assert_plain(item, f"{where}[{i}]")
    elif type(value) is dict:
        for key, item in value.items():
            assert type(key) is str and key != "_id", f"{where} has key {key!r}"
            assert_plain(item, f"{where}.{key}")
    else:
        assert type(value) in PLAIN, f"{where} is {type(value).__name__}"


def repo_of(app: Flask) -> Repository:
    repository: Repository = app.extensions["heat_collector"].repository
    return repository


def post(client: FlaskClient, *events: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    response = client.post("/ingest", json=batch(*events, **kwargs), headers=headers())
    assert response.status_code == 200, response.get_json()
    body: dict[str, Any] = response.get_json()
    return body


def test_repository_returns_plain_values(app: Flask, client: FlaskClient) -> None:
    project = post(
        client,
        event("click", x=5, y=7),
        event("move", points=[{"x": 1, "y": 2, "tsOffset": 0}, {"x": 3, "y": 4, "tsOffset": 0}]),
        event("scroll", scrollDepthPct=33),
        event("custom", props={"n": 1, "nested": {"ok": True}}),
        user={"id": "u-1", "traits": {"plan": "pro"}},
    )["projectId"]
    repo = repo_of(app)
    flt = EventFilter(project_id=project)
    session = repo.get_session("s-1", project)
    assert session is not None
    events = event_page(repo, flt, 100, 0)
    assert [e.id for e in events][:3] == [
        f"{events[0].event_id}:0",
        f"{events[1].event_id}:0",
        f"{events[1].event_id}:1",
    ]
    stored, pieces, blobs, span = repo.read(
        lambda reader: (
            reader.scan(Scan(flt, None), None, 100),
            reader.aggregates(project, None, (0, 10**9)),
            reader.aggregates(project, None, (0, 10**9), blobs=(("click", "move", "scroll"), 1200, 1200)),
            reader.max_span(project),
        )
    )
    results: list[Any] = [
        events,
        event_page(repo, flt, 100, 0, session_id="s-1"),
        session,
        repo.list_sessions(SessionQuery(project_id=project)),
        repo.list_projects(),
        stored,
        pieces,
        blobs,
        span,
        repo.rotate_project_key(project, "rotated-key"),
        repo.create_project("another-key", "Other"),
    ]
    for i, result in enumerate(results):
        assert_plain(result, f"result[{i}]")
    assert len(stored) == 4 and sum(e.row_count for e in stored) == 5
    assert sum(p.n for p in pieces) == 5
    assert {p.type for p in blobs} == {"click", "move", "scroll"}
    assert repo.list_sessions(SessionQuery(project_id=project))[0].event_count == 5


def test_same_ts_keeps_insertion_order(client: FlaskClient) -> None:
    ids = ["e-9", "e-1", "e-5", "e-3"]
    project = post(client, *[event("click", eventId=i, ts=1000) for i in ids[:2]])["projectId"]
    post(client, *[event("click", eventId=i, ts=1000) for i in ids[2:]], event("click", eventId="early", ts=999))
    body = client.get(f"/api/projects/{project}/events", headers=API).get_json()
    assert [e["eventId"] for e in body["events"]] == ["early", *ids]
    detail = client.get("/api/sessions/s-1", headers=API).get_json()
    assert [e["eventId"] for e in detail["events"]] == ["early", *ids]


def test_bucket_tie_goes_to_the_earliest_row(client: FlaskClient) -> None:
    def heat_bucket(project: str) -> str:
        meta = client.get(f"/api/projects/{project}/heatmap", headers=API).get_json()["meta"]
        bucket: str = meta["bucket"]
        return bucket

    first = post(client, event("click", w=800, h=600), event("click", w=1200, h=900), session_id="a")
    assert heat_bucket(first["projectId"]) == "800x600"
    response = client.post(
        "/ingest",
        json=batch(event("click", w=1200, h=900), event("click", w=800, h=600)),
        headers=headers("second-key"),
    )
    assert heat_bucket(response.get_json()["projectId"]) == "1200x900"


def test_duplicates_inside_one_batch(client: FlaskClient) -> None:
    same = event("click", eventId="twice")
    body = post(client, same, dict(same), event("move", eventId="m", points=[{"x": 1, "y": 1, "tsOffset": 0}] * 2))
    assert (body["accepted"], body["duplicates"]) == (3, 1)
    again = post(client, same, event("move", eventId="m", points=[{"x": 1, "y": 1, "tsOffset": 0}] * 3))
    assert (again["accepted"], again["duplicates"]) == (1, 3)


def test_racing_first_batches_of_new_projects_and_users(app: Flask) -> None:
    """Eight batches at once for a key, user and session never seen before: all stored, one of each."""
    rounds, threads = 6, 8

    def send(key: str, n: int) -> tuple[int, dict[str, Any]]:
        body = batch(event("click", eventId=f"{key}-{n}"), session_id=f"s-{key}", user={"id": f"u-{key}"})
        response = app.test_client().post("/ingest", json=body, headers=headers(key))
        return response.status_code, response.get_json()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        for r in range(rounds):
            key = f"race-{r}"
            answers = list(pool.map(lambda n: send(key, n), range(threads)))  # noqa: B023 - used at once
            assert [status for status, _ in answers] == [200] * threads, answers
            assert len({body["projectId"] for _, body in answers}) == 1
            (summary,) = repo_of(app).list_sessions(SessionQuery(project_id=answers[0][1]["projectId"]))
            assert summary.event_count == threads and summary.user_id is not None
    assert len(repo_of(app).list_projects()) == rounds
