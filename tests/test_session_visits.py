"""The sessions list on the map's slice (issue 23, SPEC §4): ``visitedPath`` and the width band
(``viewportWidth``/``viewportBucket``) of ``GET /sessions``, combined with from/to, userId, path,
signal, order and pagination, exact against tests/oracle.py on every backend: sessions across UTC
midnight and across bands, fresh and compacted report pieces, ranges with partial days."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector.repositories import session_sets

from . import oracle
from .helpers import API, backend_free, batch, event, ingest, ingest_all
from .test_report_pieces import DAY, MIDNIGHT, windows

PAGES = ["/", "/pricing", "/docs/a"]
# Bucket widths 1300, 400, 1400 and 800 (an explicit bucket).
VIEWS: list[dict[str, Any]] = [
    {"w": 1280, "h": 800},
    {"w": 390, "h": 844},
    {"w": 1440, "h": 900},
    {"w": 800, "h": 600, "meta": {"viewportBucket": "800x600"}},
]
WIDTHS = [1300, 400, 1400, 800, 1000]  # 1000: a band nobody had
USERS = ["u0", "u1", "u2"]
KINDS = ("rage", "dead", "error", "quickback", "scroll")


def random_bodies(seed: int, sessions: int = 18) -> list[dict[str, Any]]:
    """Batches of sessions spread over four days around midnights; some change band between batches,
    some have rage bursts; posted shuffled (a session's first posted batch gives its firstPath)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for s in range(sessions):
        user = {"id": rng.choice(USERS)} if rng.random() < 0.8 else None
        view = rng.choice(VIEWS)
        start = ts = MIDNIGHT - DAY - DAY // 2 + rng.randrange(0, 3 * DAY)
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.3:  # rotated, resized: another band
                view = rng.choice(VIEWS)
            found = []
            last = ts
            for _event in range(rng.randint(2, 8)):
                ts += rng.choice([40, 900, 60_000, 3_600_000, 8 * 3_600_000])
                path = rng.choice(PAGES)
                kind = rng.random()
                if kind < 0.5:
                    x, y = rng.randrange(0, 1200), rng.randrange(0, 2000)
                    burst = 3 if rng.random() < 0.15 else 1
                    for i in range(burst):
                        found.append(event("click", ts=ts + 100 * i, x=x, y=y, path=path, selector="#b", **view))
                    last = max(last, ts + 100 * (burst - 1))
                elif kind < 0.7:  # points up to 40 minutes apart: some cross midnight or the range
                    offsets = sorted(rng.sample(range(0, 2_400_000), rng.randint(1, 4)))
                    points = [{"x": 5 * i, "y": 7 * i, "tsOffset": o} for i, o in enumerate(offsets)]
                    found.append(event("move", ts=ts, points=points, path=path, **view))
                    last = max(last, ts + offsets[-1])
                elif kind < 0.85:
                    found.append(event("scroll", ts=ts, scrollY=300, scrollDepthPct=55, path=path, **view))
                else:
                    found.append(event("pageview", ts=ts, path=path, to=path, **view))
                last = max(last, ts)
            out.append(batch(*found, session_id=f"s{s}", user=user, started_at=start, last_seen_at=last))
    rng.shuffle(out)
    return out


def listed(client: FlaskClient, project: str, **params: Any) -> list[str]:
    response = client.get(f"/api/projects/{project}/sessions", query_string=params, headers=API)
    assert response.status_code == 200, (params, response.get_json())
    body = response.get_json()
    assert body["meta"]["count"] == len(body["sessions"]) == int(response.headers["X-Total-Count"])
    return [s["sessionId"] for s in body["sessions"]]


def failures(client: FlaskClient, project: str, bodies: list[dict[str, Any]], seed: int) -> list[str]:
    """The sessions lists that differ from the oracle's."""
    rows = oracle.stored_rows(bodies)
    signalled = {"rage": oracle.rage_rows(rows), **oracle.signals(rows)}
    with_signal = {kind: {r.session_id for r in signalled[kind]} for kind in KINDS}
    rng = random.Random(seed)
    found: list[str] = []
    for lo, hi in windows(seed):
        span = {k: v for k, v in (("from", lo), ("to", hi)) if v is not None}
        for visited in (None, *PAGES):
            for width in (None, *WIDTHS):
                if visited is None and width is None:
                    continue
                among = oracle.visited_sessions(rows, path=visited, ts_from=lo, ts_to=hi, width=width)
                params: dict[str, Any] = dict(span)
                if visited is not None:
                    params["visitedPath"] = visited
                if width is not None:  # the band as a width, or as a bucket of that width
                    band = {"viewportWidth": width} if rng.random() < 0.6 else {"viewportBucket": f"{width}x700"}
                    params.update(band)
                # Every session of the slice, in pages of 3, both orders.
                for descending in (False, True):
                    order = {"order": "desc"} if descending else {}
                    want = oracle.sessions_list(bodies, ts_from=lo, ts_to=hi, among=among, descending=descending)
                    got: list[str] = []
                    for offset in range(0, len(want) + 3, 3):
                        got += listed(client, project, **params, **order, limit=3, offset=offset)
                    if got != want:
                        found.append(f"{params} {order}: {got} != {want}")
                # One more filter, a random page.
                extra: dict[str, Any] = rng.choice(
                    [
                        {"userId": rng.choice(USERS)},
                        {"path": rng.choice(PAGES)},
                        {"signal": rng.choice(("rage", "dead", "quickback"))},
                        {"signal": "dead", "userId": rng.choice(USERS)},
                    ]
                )
                page = {"limit": rng.randint(1, 4), "offset": rng.randint(0, 3)}
                descending = rng.random() < 0.5
                narrowed = among & with_signal[extra["signal"]] if "signal" in extra else among
                want = oracle.sessions_list(
                    bodies,
                    ts_from=lo,
                    ts_to=hi,
                    user=extra.get("userId"),
                    first_path=extra.get("path"),
                    among=narrowed,
                    descending=descending,
                    **page,
                )
                order = {"order": "desc"} if descending else {}
                got = listed(client, project, **params, **extra, **page, **order)
                if got != want:
                    found.append(f"{params} {extra} {page} {order}: {got} != {want}")
    return found


def test_visited_path_and_band_match_the_oracle_through_compaction(
    make_app: Callable[..., Flask], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Sets of a few names per query: every list is merged from several chunks (ordinals and ids).
    monkeypatch.setattr(session_sets, "CHUNK", 3)
    app = make_app(rate_limit="100000 per second")
    client, runner = app.test_client(), app.test_cli_runner()
    bodies = random_bodies(20261207)
    half = len(bodies) // 2
    project = ingest_all(client, bodies[:half])  # fresh pieces only: each names its session
    assert failures(client, project, bodies[:half], 31) == []
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0  # merged pieces: bitmaps of ordinals
    ingest_all(client, bodies[half:])  # fresh pieces of the same sessions and days beside merged ones
    assert failures(client, project, bodies, 32) == []


def test_visited_path_by_hand(client: FlaskClient) -> None:
    """A session that crossed midnight on the path is listed once; ``path`` stays the first path."""
    night = MIDNIGHT - 60_000
    ingest(
        client,
        event("pageview", ts=night, path="/", to="/"),
        event("click", ts=night + 1000, path="/pricing", w=390, h=844),
        event("click", ts=MIDNIGHT + 1000, path="/pricing", w=390, h=844),
        session_id="s-night",
        started_at=night,
        last_seen_at=MIDNIGHT + 1000,
    )
    project = ingest(
        client,
        event("click", ts=MIDNIGHT + 5000, path="/pricing", w=1280, h=800),
        session_id="s-desk",
        started_at=MIDNIGHT + 5000,
        last_seen_at=MIDNIGHT + 5000,
    )
    assert listed(client, project, visitedPath="/pricing") == ["s-night", "s-desk"]
    assert listed(client, project, visitedPath="/pricing", order="desc") == ["s-desk", "s-night"]
    assert listed(client, project, path="/pricing") == ["s-desk"]  # the first path, as the original
    assert listed(client, project, visitedPath="/") == ["s-night"]
    assert listed(client, project, visitedPath="/", path="/pricing") == []
    assert listed(client, project, visitedPath="/pricing", viewportWidth=400) == ["s-night"]
    assert listed(client, project, visitedPath="/pricing", viewportBucket="1300x800") == ["s-desk"]
    assert listed(client, project, viewportWidth=1200) == ["s-night"]  # its pageview, at 1200x800
    assert listed(client, project, viewportWidth=1300) == ["s-desk"]
    # The visit must lie in the range too: s-night's rows on /pricing before midnight + 2 s.
    assert listed(client, project, visitedPath="/pricing", to=MIDNIGHT + 2000) == ["s-night"]
    assert listed(client, project, visitedPath="/", **{"from": MIDNIGHT - 1000}) == []
    assert listed(client, project, visitedPath="/nowhere") == []
    assert listed(client, project, visitedPath="/pricing", limit=1, offset=1) == ["s-desk"]


@backend_free
@pytest.mark.parametrize(
    "params",
    [
        {"viewportWidth": 0},
        {"viewportWidth": "wide"},
        {"viewportWidth": 1_000_000},
        {"viewportBucket": "wide"},
        {"viewportBucket": "1300"},
        {"viewportBucket": "1300x800x2"},
        {"visitedPath": "/" + "a" * 1024},
    ],
)
def test_bad_band_and_visited_path_are_400(client: FlaskClient, params: dict[str, Any]) -> None:
    project = ingest(client, event("click"))
    for endpoint in ("sessions", "heatmap"):  # the heatmap's codes for the same band parameters
        if endpoint == "heatmap" and "visitedPath" in params:
            continue
        response = client.get(f"/api/projects/{project}/{endpoint}", query_string=params, headers=API)
        assert response.status_code == 400, (endpoint, params)
        assert response.get_json()["code"] == "invalid_query"
