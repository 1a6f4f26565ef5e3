"""Paths, elements and scroll reach from precomputed report data (issue 21, item 1) stay exact on every backend:
sessions across midnight and across batches, fresh and compacted pieces mixed in one day, moves cut
by midnight and by the range, erase and rebuild; every answer against tests/oracle.py."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from . import oracle
from .helpers import API, batch, event, ingest_all

DAY = 86_400_000
MIDNIGHT = 20_718 * DAY  # a past UTC midnight
PAGES = ["/", "/pricing", "/docs/a"]
SELECTORS = ["#buy", "#plan", "nav a", "#dead"]
VIEWS = [{"w": 1280, "h": 800}, {"w": 390, "h": 844}, {"w": 1440, "h": 900}]


def random_sessions(seed: int, sessions: int = 24) -> list[tuple[str, dict[str, Any]]]:
    """``(user, body)`` batches: sessions of 2-4 batches spread over four days around midnights."""
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    for s in range(sessions):
        user = f"u{s % 7}"
        view = rng.choice(VIEWS)
        ts = MIDNIGHT - DAY - DAY // 2 + rng.randrange(0, 3 * DAY)
        for _ in range(rng.randint(2, 4)):
            found = []
            for _event in range(rng.randint(3, 12)):
                ts += rng.choice([40, 300, 900, 60_000, 3_600_000, 8 * 3_600_000])
                path = rng.choice(PAGES)
                kind = rng.random()
                if kind < 0.55:
                    item = event("click", ts=ts, x=rng.randrange(0, 1200), y=rng.randrange(0, 2000), path=path, **view)
                    selector = rng.choice([*SELECTORS, None])
                    if selector is None:
                        del item["selector"]
                    else:
                        item["selector"] = selector
                    found.append(item)
                elif kind < 0.75:  # points up to 40 minutes apart: some cross midnight or the range
                    offsets = sorted(rng.sample(range(0, 2_400_000), rng.randint(1, 5)))
                    points = [{"x": 5 * i, "y": 7 * i, "tsOffset": o} for i, o in enumerate(offsets)]
                    found.append(event("move", ts=ts, points=points, path=path, **view))
                elif kind < 0.9:
                    found.append(
                        event("scroll", ts=ts, scrollY=300, scrollDepthPct=rng.choice([10, 55]), path=path, **view)
                    )
                else:
                    found.append(event("pageview", ts=ts, path=path, to=path, **view))
            out.append((user, batch(*found, session_id=f"s{s}", user={"id": user})))
    rng.shuffle(out)
    return out


def windows(seed: int) -> list[tuple[int | None, int | None]]:
    rng = random.Random(seed)
    lo, hi = MIDNIGHT - 2 * DAY, MIDNIGHT + 3 * DAY
    found: list[tuple[int | None, int | None]] = [
        (None, None),
        (MIDNIGHT, MIDNIGHT + DAY - 1),  # one whole day
        (MIDNIGHT - DAY, MIDNIGHT + 2 * DAY - 1),  # three whole days
        (None, MIDNIGHT + DAY // 3),
        (MIDNIGHT - DAY // 5, None),
    ]
    # Two random windows per check: each check has its own seed, so a test still tries several.
    found += [tuple(sorted(rng.sample(range(lo, hi), 2))) for _ in range(2)]  # type: ignore[misc]
    return found


def compare(client: FlaskClient, project: str, bodies: list[dict[str, Any]], seed: int) -> list[str]:
    """The paths and elements answers that differ from the oracle's."""
    rows = oracle.stored_rows(bodies)
    failures = []
    for lo, hi in windows(seed):
        span = {k: v for k, v in (("from", lo), ("to", hi)) if v is not None}
        got = client.get(f"/api/projects/{project}/paths", query_string=span, headers=API).get_json()["paths"]
        want = oracle.paths(rows, ts_from=lo, ts_to=hi)
        if got != want:
            failures.append(f"paths {span}: {got} != {want}")
        for path in (None, *PAGES):
            where = {"path": path} if path else {}
            bounds = {"from": lo if lo is not None else 0, "to": hi if hi is not None else MIDNIGHT + 4 * DAY}
            for viewports in ("width", "all"):
                got = client.get(
                    f"/api/projects/{project}/scrollmap",
                    query_string={**bounds, **where, "viewports": viewports},
                    headers=API,
                ).get_json()
                want = oracle.scrollmap(
                    rows, path=path, ts_from=bounds["from"], ts_to=bounds["to"], viewports=viewports
                )
                if (
                    got["reach"] != pytest.approx(want["reach"])
                    or got["meta"]["sessions"] != want["meta"]["sessions"]
                    or got["meta"]["foldPct"] != pytest.approx(want["meta"]["foldPct"])
                    or got["meta"]["pageHeight"] != pytest.approx(want["meta"]["pageHeight"])
                ):
                    failures.append(f"scrollmap {bounds} {path} {viewports}: {got} != {want}")
            got = client.get(
                f"/api/projects/{project}/elements", query_string={**span, **where, "limit": 500}, headers=API
            ).get_json()["elements"]
            want = oracle.elements(rows, path=path, ts_from=lo, ts_to=hi, limit=500)
            if got != want:
                failures.append(f"elements {span} {path}: {got} != {want}")
    return failures


def test_paths_and_elements_stay_exact_through_compaction_erase_and_rebuild(make_app: Callable[..., Flask]) -> None:
    app = make_app(rate_limit="100000 per second")
    client = app.test_client()
    runner = app.test_cli_runner()
    batches = random_sessions(20261207)
    half = len(batches) // 2
    first = [body for _, body in batches[:half]]
    project = ingest_all(client, first)
    assert compare(client, project, first, 1) == []
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0  # merged pieces with bitmaps
    bodies = [body for _, body in batches]
    ingest_all(client, bodies[half:])  # fresh pieces of the same sessions and days beside merged ones
    assert compare(client, project, bodies, 2) == []
    ingest_all(client, bodies[:5])  # retried batches change nothing
    assert compare(client, project, bodies, 3) == []
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0
    assert compare(client, project, bodies, 4) == []

    erased = runner.invoke(args=["heat", "erase", "--project-id", project, "--user-id", "u3"])
    assert erased.exit_code == 0 and json.loads(erased.stdout)["verified"] is True, erased.output
    kept = [body for user, body in batches if user != "u3"]
    assert compare(client, project, kept, 5) == []
    assert runner.invoke(args=["heat", "rebuild-aggregates"]).exit_code == 0
    assert compare(client, project, kept, 6) == []
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0
    assert compare(client, project, kept, 7) == []


def test_an_erased_time_range_leaves_exact_reports(make_app: Callable[..., Flask]) -> None:
    app = make_app(rate_limit="100000 per second")
    client = app.test_client()
    runner = app.test_cli_runner()
    batches = random_sessions(7, sessions=12)
    bodies = [body for _, body in batches]
    project = ingest_all(client, bodies)
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0
    cut = MIDNIGHT + DAY // 4
    out = runner.invoke(args=["heat", "erase", "--project-id", project, "--before", str(cut)])
    assert out.exit_code == 0 and json.loads(out.stdout)["verified"] is True, out.output
    rows_kept = []
    for body in bodies:
        events = []
        for item in body["events"]:
            if item["type"] == "move":  # a move is erased when it started before the cut
                first = item["ts"] + min(p["tsOffset"] for p in item["points"])
                if first >= cut:
                    events.append(item)
            elif item["ts"] >= cut:
                events.append(item)
        if events:
            rows_kept.append(dict(body, events=events))
    assert compare(client, project, rows_kept, 8) == []


def test_report_data_made_before_the_all_band_pieces_is_made_again(
    make_app: Callable[..., Flask], backend: str
) -> None:
    """A database whose report pieces predate the all-band ones (the paths report reads those) gets
    them at migrate: the paths answer stays exact."""
    app = make_app(rate_limit="100000 per second")
    client = app.test_client()
    bodies = [body for _, body in random_sessions(11, sessions=10)]
    project = ingest_all(client, bodies)
    repo: Any = app.extensions["heat_collector"].repository
    if backend.startswith("mongodb"):
        repo.db["heat_report_pieces"].delete_many({"bucketW": -1})
        repo.db["heat_migrations"].delete_one({"_id": "report-pieces-2"})
    else:
        with repo.engine.begin() as conn:
            conn.exec_driver_sql("DELETE FROM heat_report_pieces WHERE bucket_w = -1")
    assert client.get(f"/api/projects/{project}/paths", headers=API).get_json()["paths"] == []
    assert app.test_cli_runner().invoke(args=["heat", "migrate"]).exit_code == 0
    assert compare(client, project, bodies, 9) == []
