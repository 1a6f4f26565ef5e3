"""``meta.sample`` of every report (SPEC §4): the sessions and events an answer rests on, exact across
days, fresh and compacted pieces and partial days, on every backend, against tests/oracle.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from . import oracle
from .helpers import API, backend_free, ingest_all
from .test_report_pieces import DAY, MIDNIGHT, PAGES, random_sessions, windows
from .test_reports import FIXTURE

END = MIDNIGHT + 4 * DAY  # after every random row


def get(client: FlaskClient, url: str, **params: Any) -> Any:
    response = client.get(url, query_string=params, headers=API)
    assert response.status_code == 200, (url, params, response.get_json())
    return response.get_json()


def failures(client: FlaskClient, project: str, bodies: list[dict[str, Any]], seed: int) -> list[str]:
    """The reports whose ``meta.sample`` differs from the oracle's."""
    rows = oracle.stored_rows(bodies)
    found: list[str] = []

    def check(what: str, got: dict[str, Any], want: dict[str, Any]) -> None:
        want = {**want, "small": want["sessions"] < 5}  # HEAT_MIN_SAMPLE_SESSIONS=5 below
        if got != want:
            found.append(f"{what}: {got} != {want}")

    for lo, hi in windows(seed):
        span = {k: v for k, v in (("from", lo), ("to", hi)) if v is not None}
        bounds = {"from": lo if lo is not None else 0, "to": hi if hi is not None else END}
        for limit in (100, 2):
            got = get(client, f"/api/projects/{project}/paths", **span, limit=limit)["meta"]["sample"]
            listed = oracle.paths(rows, ts_from=lo, ts_to=hi, limit=limit)
            check(f"paths {span} {limit}", got, oracle.paths_sample(listed, rows, ts_from=lo, ts_to=hi))
        for path in (None, *PAGES):
            where = {"path": path} if path else {}
            around = {"path": path, "ts_from": bounds["from"], "ts_to": bounds["to"]}
            for viewports in ("width", "all"):
                for kind in (None, "move", "rageclick"):
                    typed = {"type": kind} if kind else {}
                    got = get(
                        client, f"/api/projects/{project}/heatmap", **bounds, **where, **typed, viewports=viewports
                    )
                    if kind == "rageclick":
                        frame = oracle.rage_heatmap(rows, **around, viewports=viewports)["meta"]
                    else:
                        frame = oracle.heatmap(rows, **around, type=kind, viewports=viewports)["meta"]
                    width = oracle.band_width(frame) if viewports == "width" else None
                    want = {"sessions": oracle.band_sessions(rows, **around, width=width), "events": frame["total"]}
                    check(f"heatmap {bounds} {path} {viewports} {kind}", got["meta"]["sample"], want)
                got = get(client, f"/api/projects/{project}/scrollmap", **bounds, **where, viewports=viewports)
                frame = oracle.heatmap(rows, **around, type="all", viewports=viewports)["meta"]
                width = oracle.band_width(frame) if viewports == "width" else None
                band = oracle.band_rows(rows, **around, width=width)
                want = {"sessions": len({r.session_id for r in band}), "events": len(band)}
                check(f"scrollmap {bounds} {path} {viewports}", got["meta"]["sample"], want)
                assert got["meta"]["sample"]["sessions"] == got["meta"]["sessions"]
            for viewports in ("width", "all"):
                got = get(client, f"/api/projects/{project}/elements", **span, **where, limit=1, viewports=viewports)
                near = {"path": path, "ts_from": lo, "ts_to": hi}
                listed = oracle.elements(rows, **near, limit=500, viewports=viewports)
                width = oracle.elements_band(rows, **near, viewports=viewports)
                want = {
                    "sessions": oracle.band_sessions(rows, **near, width=width),
                    "events": sum(e["clicks"] for e in listed),
                }
                check(f"elements {span} {path} {viewports}", got["meta"]["sample"], want)
    return found


def test_samples_match_the_oracle_through_compaction(make_app: Callable[..., Flask]) -> None:
    app = make_app(rate_limit="100000 per second", min_sample_sessions=5)
    client, runner = app.test_client(), app.test_cli_runner()
    bodies = [body for _, body in random_sessions(20261208, sessions=16)]
    half = len(bodies) // 2
    project = ingest_all(client, bodies[:half])
    assert failures(client, project, bodies[:half], 11) == []
    assert runner.invoke(args=["heat", "compact"]).exit_code == 0  # merged pieces: bitmaps of ordinals
    ingest_all(client, bodies[half:])  # fresh pieces of the same sessions and days beside merged ones
    assert failures(client, project, bodies, 12) == []


def test_samples_by_hand(client: FlaskClient) -> None:
    project = ingest_all(client, FIXTURE)
    url = f"/api/projects/{project}"
    # "/": desktop sessions a and c (the frame's band), mobile b; 14 clicks of every width.
    heatmap = get(client, f"{url}/heatmap", path="/")["meta"]
    assert heatmap["total"] == 14 and heatmap["sample"] == {"sessions": 2, "events": 14, "small": True}
    every = get(client, f"{url}/heatmap", path="/", viewports="all")["meta"]["sample"]
    assert every == {"sessions": 3, "events": 14, "small": True}
    # The scroll map's band on /pricing: a (1 pageview, 2 scrolls, 1 click) and c (1 + 1): 6 rows.
    scrollmap = get(client, f"{url}/scrollmap", path="/pricing")["meta"]["sample"]
    assert scrollmap == {"sessions": 2, "events": 6, "small": True}
    # Elements on "/", desktop band: the 11 clicks of a and c.
    elements = get(client, f"{url}/elements", path="/")["meta"]["sample"]
    assert elements == {"sessions": 2, "events": 11, "small": True}
    elements = get(client, f"{url}/elements", path="/", viewports="all")["meta"]["sample"]
    assert elements == {"sessions": 3, "events": 14, "small": True}
    assert get(client, f"{url}/paths")["meta"]["sample"] == {"sessions": 3, "events": 27, "small": True}
    assert get(client, f"{url}/paths", q="/pr")["meta"]["sample"] == {"sessions": 3, "events": 8, "small": True}
    empty = get(client, "/api/projects/none/heatmap")["meta"]["sample"]
    assert empty == {"sessions": 0, "events": 0, "small": True}


@backend_free
@pytest.mark.parametrize(("minimum", "small"), [(0, False), (2, False), (3, True), ("4", True)])
def test_the_small_sample_threshold(make_app: Callable[..., Flask], minimum: Any, small: bool) -> None:
    client = make_app(min_sample_sessions=minimum).test_client()
    project = ingest_all(client, FIXTURE)
    for report in ("heatmap", "scrollmap", "elements", "paths"):
        sample = get(client, f"/api/projects/{project}/{report}", path="/pricing")["meta"]["sample"]
        assert sample["sessions"] == {"paths": 3}.get(report, 2), report  # the desktop band: a and c
        assert sample["small"] is (sample["sessions"] < int(minimum)), report
