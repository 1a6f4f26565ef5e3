"""Event pages on moves of every size: exact against tests/oracle.py, and bounded by the page (the
rows before it are counted from the stored row counts, their points never read)."""

from __future__ import annotations

import random
from typing import Any

from flask import Flask

from . import oracle
from .helpers import API, batch, event, ingest_all

T0 = 1_790_000_000_000
EVENT_FIELDS = ("id", "eventId", "sessionId", "type", "ts", "path", "selector", "x", "y", "scrollDepth", "data")


def _move(ts: int, points: int, step: int, *, start: int = 0, path: str = "/p") -> dict[str, Any]:
    return event(
        "move",
        ts=ts,
        path=path,
        points=[{"x": i % 97, "y": i % 89, "tsOffset": start + i * step} for i in range(points)],
    )


def _page(client: Any, project: str, **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"/api/projects/{project}/events", query_string=params, headers=API)
    assert response.status_code == 200, response.get_json()
    return [
        {k: (e.get(k) or None) if k == "data" else e.get(k) for k in EVENT_FIELDS}
        for e in response.get_json()["events"]
    ]


def test_pages_are_exact_and_read_no_points_before_them(app: Flask) -> None:
    """40 moves of 500 points: the page at offset 15,100 reads the points of the move it shows, not
    those of the 30 moves before it. Then on another path, moves of 1 to 400 points crossing each
    other, ``from`` and ``to``, among clicks sharing their ts: every page equals the oracle's."""
    client = app.test_client()
    bodies = [batch(_move(T0 + n * 10_000, 500, 10)) for n in range(40)]
    project = ingest_all(client, bodies)
    tally = app.extensions["heat_collector"].repository.tally
    before = tally.points
    got = _page(client, project, path="/p", limit=200, offset=15_100, **{"from": T0 - 1, "to": T0 + 10**9})
    assert [e["id"] for e in got] == [f"{bodies[30]['events'][0]['eventId']}:{i}" for i in range(100, 300)]
    assert tally.points - before <= 3 * 500

    rng = random.Random(7)
    bodies = []
    for n in range(24):
        events = [
            _move(
                T0 + rng.randrange(0, 20_000),
                rng.choice([1, 3, 60, 400]),
                rng.choice([1, 7, 40]),
                start=rng.choice([0, -900]),
                path="/q",
            )
        ]
        events += [event("click", ts=T0 + rng.randrange(0, 20_000), path="/q") for _ in range(rng.randrange(0, 4))]
        events.append(event("click", ts=events[0]["ts"], path="/q"))
        bodies.append(batch(*events, session_id=f"s{n % 3}"))
    project = ingest_all(client, bodies)
    rows = oracle.stored_rows(bodies)
    windows: list[dict[str, Any]] = [{}, {"from": T0 + 3_000, "to": T0 + 15_000}, {"from": T0 + 9_999}]
    for window in windows:
        total = len(oracle.events_page(rows, ts_from=window.get("from"), ts_to=window.get("to"), limit=10**6))
        for offset in [0, 1, 5, *range(37, total + 40, 211), total - 3, total]:
            for limit in (37, 400):
                want = oracle.events_page(
                    rows, ts_from=window.get("from"), ts_to=window.get("to"), limit=limit, offset=max(offset, 0)
                )
                got = _page(client, project, path="/q", limit=limit, offset=max(offset, 0), **window)
                assert got == want, (window, offset, limit)
