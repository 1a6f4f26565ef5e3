"""One long move costs only its own rows: ranged queries read the same rows with or without it
(counted by the repository's ReadTally), answers stay exact, and the long-move index follows
ingest, erase, purge and migration."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from . import oracle
from .helpers import API, batch, event, ingest_all

HOUR = 3_600_000
DAY = 24 * HOUR
T0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY  # a midnight UTC
LO, HI = T0 + DAY + DAY // 2, T0 + 2 * DAY + DAY // 2  # half days at both edges


def _day(day: int) -> dict[str, Any]:
    """One batch of a day's events on /a: clicks, scrolls and 3-point moves every 12 minutes."""
    events = []
    for n in range(120):
        ts = T0 + day * DAY + n * 12 * 60_000
        points = [{"x": 10 + i, "y": 20 + n, "tsOffset": i * 700} for i in range(3)]
        events += [
            event("click", ts=ts, path="/a", x=n, y=2 * n),
            event("move", ts=ts + 5, path="/a", points=points),
            event("scroll", ts=ts + 9, path="/a"),
        ]
    return batch(*events, session_id=f"d{day}")


LONG = batch(
    event(
        "move",
        ts=T0 + 2 * DAY,
        path="/a",
        points=[{"x": 1, "y": 2, "tsOffset": -DAY}, {"x": 3, "y": 4, "tsOffset": DAY}],
    ),
    session_id="long",
)
QUERIES: list[tuple[str, dict[str, Any]]] = [
    ("heatmap", {"type": "all"}),
    ("heatmap", {"type": "move", "resolution": 100}),
    ("heatmap", {"type": "scroll"}),
    ("events", {"offset": 10, "limit": 50}),
    ("events", {"offset": 300, "limit": 50, "type": "move"}),
    ("paths", {}),
]


def _answers(client: FlaskClient, project: str) -> list[Any]:
    out = []
    for endpoint, params in QUERIES:
        query = {"path": "/a", **params} if endpoint != "paths" else params
        response = client.get(
            f"/api/projects/{project}/{endpoint}", query_string={"from": LO, "to": HI, **query}, headers=API
        )
        assert response.status_code == 200, response.get_json()
        out.append(response.get_json())
    return out


def _events_read(app: Flask, client: FlaskClient, project: str) -> int:
    tally = app.extensions["heat_collector"].repository.tally
    before = tally.events
    _answers(client, project)
    return int(tally.events - before)


def _index_entries(app: Flask) -> int:
    repo = app.extensions["heat_collector"].repository
    if hasattr(repo, "db"):
        return int(repo.db.heat_long_moves.count_documents({"projectId": {"$ne": ""}}))  # not the "filled" mark
    with repo.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM heat_long_moves")).scalar_one())


def _check_oracle(client: FlaskClient, project: str, bodies: list[dict[str, Any]]) -> None:
    rows = oracle.stored_rows(bodies)
    answers = _answers(client, project)
    for (endpoint, params), body in zip(QUERIES, answers, strict=True):
        if endpoint == "events":
            want = oracle.events_page(
                rows,
                path="/a",
                ts_from=LO,
                ts_to=HI,
                type=params.get("type"),
                **{k: params[k] for k in ("offset", "limit")},
            )
            assert [e["id"] for e in body["events"]] == [e["id"] for e in want]
        elif endpoint == "paths":
            want_paths = oracle.paths(rows, ts_from=LO, ts_to=HI)
            assert [(p["path"], p["events"], p["sessions"]) for p in body["paths"]] == [
                (p["path"], p["events"], p["sessions"]) for p in want_paths
            ]
        else:
            extra = {"resolution": params["resolution"]} if "resolution" in params else {}
            want_map = oracle.heatmap(rows, path="/a", ts_from=LO, ts_to=HI, type=params["type"], **extra)
            assert body["points"] == want_map["points"]
            assert body["meta"]["total"] == want_map["meta"]["total"]


def test_a_48_hour_move_costs_ranged_queries_only_its_own_rows(app: Flask, client: FlaskClient) -> None:
    """A 2-point move spanning 48 h changes the rows read by ranged heatmaps, event pages and paths by
    at most 1.2x, and every answer stays the oracle's."""
    bodies = [_day(day) for day in range(4)]
    project = ingest_all(client, bodies)
    baseline = _events_read(app, client, project)
    assert baseline > 100
    ingest_all(client, [LONG])
    bodies.append(LONG)
    assert _events_read(app, client, project) <= 1.2 * baseline
    assert _index_entries(app) == 3  # one entry per UTC day the move's rows fall on
    _check_oracle(client, project, bodies)


def test_long_move_index_follows_migrate_erase_and_purge(make_app: Any) -> None:
    """A database of the layout without the index gets it from `flask heat migrate`; erasing the
    move's session and purging take its entries away, and the answers stay exact."""
    app = make_app(retention_days=30)
    client = app.test_client()
    bodies = [_day(day) for day in range(4)] + [LONG]
    project = ingest_all(client, bodies)
    with_index = _events_read(app, client, project)
    repo = app.extensions["heat_collector"].repository
    if hasattr(repo, "db"):
        repo.db.heat_long_moves.drop()
    else:
        with repo.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE heat_long_moves")
    runner = app.test_cli_runner()
    for _ in range(2):  # repeatable
        result = runner.invoke(args=["heat", "migrate"])
        assert result.exit_code == 0, result.output
        assert _index_entries(app) == 3
    assert _events_read(app, client, project) == with_index
    _check_oracle(client, project, bodies)

    result = runner.invoke(args=["heat", "erase", "--project-id", project, "--session-id", "long"])
    assert result.exit_code == 0, result.output
    assert _index_entries(app) == 0
    _check_oracle(client, project, bodies[:-1])

    ingest_all(client, [LONG])
    assert _index_entries(app) == 3
    result = runner.invoke(args=["heat", "purge"])  # T0 is long before 30 days ago: everything goes
    assert result.exit_code == 0, result.output
    assert _index_entries(app) == 0
