"""Rage clicks, scroll reach, elements and paths (SPEC §4): hand-computed fixtures on every backend,
then random data against the plain reference in tests/oracle.py."""

from __future__ import annotations

import random
from typing import Any

import pytest
from flask.testing import FlaskClient

from . import oracle
from .helpers import API, backend_free, batch, event, ingest_all

T = 1_790_000_000_000  # a fixed past instant; every event is within a minute of it
DESKTOP = {"w": 1280, "h": 800, "meta": {"viewportBucket": "1280x800"}}
MOBILE = {"w": 390, "h": 844}  # bucket 400x800 (rounded to 100 px)


def click(ts: int, x: int, y: int, selector: str, path: str = "/", **view: Any) -> dict[str, Any]:
    return event("click", ts=T + ts, x=x, y=y, selector=selector, path=path, **(view or DESKTOP))


def scroll(ts: int, depth: float, path: str = "/pricing", **view: Any) -> dict[str, Any]:
    return event("scroll", ts=T + ts, scrollY=int(depth * 10), scrollDepthPct=depth, path=path, **(view or DESKTOP))


def pageview(ts: int, path: str, **view: Any) -> dict[str, Any]:
    return event("pageview", ts=T + ts, path=path, to=path, **(view or DESKTOP))


def move(ts: int, offsets: list[int], path: str = "/") -> dict[str, Any]:
    points = [{"x": 10 + i, "y": 20 + i, "tsOffset": off} for i, off in enumerate(offsets)]
    return event("move", ts=T + ts, points=points, path=path, **DESKTOP)


# Session a (desktop): four clicks on the dead button within 600 ms and 12 px of the first: rage.
# Session b (mobile): two clicks on it (too few), one on #buy.
# Session c (desktop): three on #buy, the third 50 px away (a burst of two and one alone), then
# three on #x, the third 1,200 ms after the first (a burst of two and one alone).
FIXTURE = [
    batch(
        pageview(0, "/"),
        click(0, 100, 100, "#dead"),
        click(200, 105, 102, "#dead"),
        click(400, 98, 99, "#dead"),
        click(600, 110, 100, "#dead"),
        click(5_000, 300, 300, "#buy"),
        move(20_000, [0, 500, 1_000]),
        pageview(30_000, "/pricing"),
        scroll(30_100, 30),
        scroll(30_200, 80),
        click(30_300, 640, 1_600, "#plan", path="/pricing"),
        session_id="a",
        user={"id": "user-a"},
    ),
    batch(
        pageview(0, "/", **MOBILE),
        click(100, 100, 100, "#dead", **MOBILE),
        click(300, 100, 100, "#dead", **MOBILE),
        click(2_000, 200, 400, "#buy", **MOBILE),
        pageview(40_000, "/pricing", **MOBILE),
        scroll(40_100, 100, **MOBILE),
        session_id="b",
    ),
    batch(
        click(0, 300, 300, "#buy"),
        click(100, 300, 300, "#buy"),
        click(200, 350, 300, "#buy"),
        click(10_000, 500, 500, "#x"),
        click(10_500, 500, 500, "#x"),
        click(11_200, 500, 500, "#x"),
        pageview(50_000, "/pricing"),
        scroll(50_100, 5_000),  # above 100: hundredths of a percent, 50 %
        session_id="c",
    ),
]


def get(client: FlaskClient, url: str, **params: Any) -> dict[str, Any]:
    response = client.get(url, query_string=params, headers=API)
    assert response.status_code == 200, (url, params, response.get_json())
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.get_json()
    return body


@pytest.fixture
def project(client: FlaskClient) -> str:
    return ingest_all(client, FIXTURE)


def test_elements_by_hand(client: FlaskClient, project: str) -> None:
    url = f"/api/projects/{project}/elements"
    every = {"viewports": "all"}  # every width, as the map of all widths
    body = get(client, url, path="/", **every)
    assert body["elements"] == [
        {"selector": "#dead", "clicks": 6, "sessions": 2, "rageClicks": 4, "deadClicks": 6, "errorClicks": 0},
        {"selector": "#buy", "clicks": 5, "sessions": 3, "rageClicks": 0, "deadClicks": 5, "errorClicks": 0},
        {"selector": "#x", "clicks": 3, "sessions": 1, "rageClicks": 0, "deadClicks": 3, "errorClicks": 0},
    ]  # every click is dead: nothing but clicks on the same selector (or nothing) follows within 1.5 s
    assert body["meta"]["count"] == 3 and body["meta"]["limit"] == 50 and body["meta"]["requestedType"] == "click"
    assert body["meta"]["viewports"] == "all" and body["meta"]["otherViewports"] == {}
    rage = get(client, url, path="/", type="rageclick", **every)
    assert rage["elements"] == [
        {"selector": "#dead", "clicks": 6, "sessions": 2, "rageClicks": 4, "deadClicks": 6, "errorClicks": 0}
    ]
    assert get(client, url, path="/", limit=1, **every)["elements"][0]["selector"] == "#dead"
    # Without a path every page's clicks count. Rage is decided once per session over all its
    # clicks: a range that cuts the burst of four keeps the rage clicks inside it (three, then two).
    everywhere = get(client, url, **every)["elements"]
    assert [(e["selector"], e["clicks"]) for e in everywhere] == [("#dead", 6), ("#buy", 5), ("#x", 3), ("#plan", 1)]
    cut = get(client, url, path="/", to=T + 400, **every)["elements"]
    assert cut[0] == {
        "selector": "#dead",
        "clicks": 5,
        "sessions": 2,
        "rageClicks": 3,
        "deadClicks": 5,
        "errorClicks": 0,
    }
    cut = get(client, url, path="/", to=T + 399, **every)["elements"]
    assert {e["selector"]: e["rageClicks"] for e in cut} == {"#dead": 2, "#buy": 0}


def test_elements_count_in_the_band_of_the_map(client: FlaskClient, project: str) -> None:
    url = f"/api/projects/{project}/elements"
    # The default band is the map's: the desktop frame of "/" (sessions a and c); b's phone clicks
    # are not counted, neither as clicks nor as rage clicks.
    # Every click of the fixture is dead (see test_elements_by_hand), in every band.
    desktop = get(client, url, path="/")
    assert desktop["elements"] == [
        {"selector": "#buy", "clicks": 4, "sessions": 2, "rageClicks": 0, "deadClicks": 4, "errorClicks": 0},
        {"selector": "#dead", "clicks": 4, "sessions": 1, "rageClicks": 4, "deadClicks": 4, "errorClicks": 0},
        {"selector": "#x", "clicks": 3, "sessions": 1, "rageClicks": 0, "deadClicks": 3, "errorClicks": 0},
    ]
    meta = desktop["meta"]
    assert meta["viewport"] == {"w": 1280, "h": 800} and meta["bucket"] == "1280x800"
    assert meta["viewports"] == "width" and meta["otherViewports"] == {"400": 4}
    assert get(client, url, path="/", viewportBucket="1280x800")["elements"] == desktop["elements"]
    # The phone band: the desktop-only #x is not there, and b's two clicks on #dead are no rage.
    mobile = get(client, url, path="/", viewportWidth=400)
    assert mobile["elements"] == [
        {"selector": "#dead", "clicks": 2, "sessions": 1, "rageClicks": 0, "deadClicks": 2, "errorClicks": 0},
        {"selector": "#buy", "clicks": 1, "sessions": 1, "rageClicks": 0, "deadClicks": 1, "errorClicks": 0},
    ]
    assert mobile["meta"]["viewport"] == {"w": 400, "h": 800} and mobile["meta"]["otherViewports"] == {"1280": 15}
    assert get(client, url, path="/", viewportWidth=400, type="rageclick")["elements"] == []
    assert get(client, url, path="/", viewportWidth=1440)["elements"] == []  # a width nobody had


def test_rageclick_heatmap_by_hand(client: FlaskClient, project: str) -> None:
    response = client.get(
        f"/api/projects/{project}/heatmap", query_string={"path": "/", "type": "rageclick"}, headers=API
    )
    assert response.status_code == 200
    body = response.get_json()
    meta = body["meta"]
    assert meta["requestedType"] == meta["resolvedType"] == "rageclick"
    assert response.headers["X-Resolved-Type"] == "rageclick"
    assert meta["total"] == meta["plotted"] == 4 and meta["typeBreakdown"] == {"rageclick": 4}
    assert meta["viewport"] == {"w": 1280, "h": 800} and meta["otherViewports"] == {}
    # Side 10 px: (98, 99) -> cell (9, 9); (100, 100) and (105, 102) -> (10, 10); (110, 100) -> (10, 11).
    assert body["points"] == [
        {"x": 95, "y": 95, "value": 1},
        {"x": 105, "y": 105, "value": 2},
        {"x": 115, "y": 105, "value": 1},
    ]
    none = get(client, f"/api/projects/{project}/heatmap", path="/pricing", type="rageclick")
    assert none["points"] == [] and none["meta"]["total"] == 0


def test_scrollmap_by_hand(client: FlaskClient, project: str) -> None:
    url = f"/api/projects/{project}/scrollmap"
    body = get(client, url, path="/pricing")
    # Desktop band (frame 1280x800): sessions a and c. Reach is the viewport's bottom edge: a scrolled
    # to 30 % (y=300: page 300*100/30+800 = 1,800 px, reach 1,100/1,800 = 61 %) and 80 % (y=800: page
    # 1,800, reach 89 %); c to 50 % (a depth above 100 is hundredths; y=50,000: page 100,800, reach
    # 50.4 %). Median page 1,800, fold 800/1,800 = 44.4 %: every depth up to it counts both sessions.
    meta = body["meta"]
    assert meta["sessions"] == 2 and meta["viewport"] == {"w": 1280, "h": 800}
    assert meta["pageHeight"] == 1800 and meta["foldPct"] == pytest.approx(100 * 800 / 1800)
    reach = {r["depth"]: (r["sessions"], r["pct"]) for r in body["reach"]}
    assert sorted(reach) == list(range(0, 101, 5))
    assert all(reach[d] == (2, 100) for d in range(0, 51, 5))
    assert all(reach[d] == (1, 50) for d in range(55, 86, 5))
    assert all(reach[d] == (0, 0) for d in range(90, 101, 5))
    every = get(client, url, path="/pricing", viewports="all")
    # Session b (phone, 844 px, scrolled to the end: reach 100 %) joins; median page (1,800+1,844)/2.
    assert every["meta"]["sessions"] == 3 and every["meta"]["pageHeight"] == 1822
    reach = {r["depth"]: r["sessions"] for r in every["reach"]}
    assert (reach[40], reach[50], reach[55], reach[85], reach[90], reach[100]) == (3, 3, 2, 2, 1, 1)
    assert every["reach"][-1]["pct"] == pytest.approx(100 / 3)
    mobile = get(client, url, path="/pricing", viewportWidth=400)
    assert mobile["meta"]["viewport"] == {"w": 400, "h": 800} and mobile["meta"]["sessions"] == 1
    assert all(r["sessions"] == 1 and r["pct"] == 100 for r in mobile["reach"])
    # A session that never scrolled counts at the fold: on / (no scroll rows) every depth up to
    # frame height / render height counts both desktop sessions of the band.
    home = get(client, url, path="/")
    assert home["meta"]["sessions"] == 2 and home["meta"]["foldPct"] == pytest.approx(
        100 * 800 / home["meta"]["renderHeight"]
    )
    assert {r["sessions"] for r in home["reach"] if r["depth"] <= home["meta"]["foldPct"]} == {2}
    empty = get(client, url, path="/nowhere")
    assert empty["meta"]["sessions"] == 0 and all(r["sessions"] == 0 and r["pct"] == 0 for r in empty["reach"])


def test_paths_by_hand(client: FlaskClient, project: str) -> None:
    url = f"/api/projects/{project}/paths"
    body = get(client, url)
    # "/": a 1 pageview + 5 clicks + 3 move points, b 1 + 3 clicks, c 6 clicks = 19 rows of 3 sessions.
    # "/pricing": a 1 + 2 scrolls + 1 click, b 1 + 1, c 1 + 1 = 8 rows of 3 sessions.
    # Signals (SPEC §10): a's four rage clicks; every click dead (14 on "/", #plan on "/pricing").
    none = {"quickBacks": 0, "excessiveScrolls": 0}
    assert body["paths"] == [
        {"path": "/", "events": 19, "sessions": 3, "lastSeenAt": T + 21_000, "rageClicks": 4, "deadClicks": 14, **none},
        {"path": "/pricing", "events": 8, "sessions": 3, "lastSeenAt": T + 50_100, "rageClicks": 0, "deadClicks": 1}
        | none,
    ]
    assert get(client, url, q="/pr")["paths"] == body["paths"][1:]
    assert get(client, url, limit=1)["paths"] == body["paths"][:1]
    assert get(client, url, q="/nothing")["paths"] == []
    # A range that starts inside the move counts its later points only; the first 100 ms hold the
    # pageviews of a and b and the first clicks of a and c.
    late = get(client, url, **{"from": T + 20_400, "to": T + 21_000})
    zero = {"rageClicks": 0, "deadClicks": 0, **none}
    assert late["paths"] == [{"path": "/", "events": 2, "sessions": 1, "lastSeenAt": T + 21_000, **zero}]
    # a's move is cut by `to` (one point inside) and a has a click inside too: a counts once.
    cut = get(client, url, **{"from": T + 5_000, "to": T + 20_400})
    assert cut["paths"] == [
        {"path": "/", "events": 5, "sessions": 2, "lastSeenAt": T + 20_000, **zero, "deadClicks": 4}
    ]
    early = get(client, url, **{"from": T, "to": T + 99})
    # a's first #dead (rage, dead) and c's first #buy (dead; c's burst of two is no rage).
    signals = {**none, "rageClicks": 1, "deadClicks": 2}
    assert early["paths"] == [{"path": "/", "events": 4, "sessions": 3, "lastSeenAt": T, **signals}]


def test_sessions_newest_first_with_sdk_user_id(client: FlaskClient, project: str) -> None:
    body = get(client, f"/api/projects/{project}/sessions", order="desc", limit=2)
    assert [s["sessionId"] for s in body["sessions"]] == ["c", "b"]
    rest = get(client, f"/api/projects/{project}/sessions", order="desc", limit=2, offset=2)
    assert [(s["sessionId"], s["externalUserId"]) for s in rest["sessions"]] == [("a", "user-a")]


# Random data against the oracle: clicks in clusters so that bursts of every size happen.
PAGES = ("/", "/pricing", "/pricing/team", "/docs")
SELECTORS = ("#a", "#b", "button.c", "#d")
VIEWS = [
    DESKTOP,
    MOBILE,
    {"w": 1280, "h": 720, "meta": {"viewportBucket": "1280x720"}},
    {"w": 800, "h": 600},
    {"w": 1320, "h": 790},  # band 1300 (bucket 1300x800) again, another exact width: placed by the anchor
    {"w": 1310, "h": 820},
]


ANCHORS = ("left", "center", "scale")


def random_bodies(seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    bodies = []
    for s in range(12):
        view = rng.choice(VIEWS)
        ts = rng.randint(0, 60_000)
        found = []
        for _ in range(rng.randint(5, 40)):
            ts += rng.choice([50, 150, 300, 450, 700, 1_100, 3_000])
            path = rng.choice(PAGES)
            kind = rng.random()
            if kind < 0.6:
                x, y = rng.choice([(100, 100), (120, 110), (400, 300), (5, 900)])
                for _ in range(rng.choice([1, 1, 2, 3, 4, 5])):  # bursts of every size, some too wide
                    ts += rng.choice([0, 100, 250, 400])
                    jitter = rng.choice([5, 20, 40])
                    found.append(
                        click(
                            ts,
                            x + rng.randint(-jitter, jitter),
                            y + rng.randint(-jitter, jitter),
                            rng.choice(SELECTORS),
                            path,
                            **view,
                        )
                    )
            elif kind < 0.8:
                found.append(scroll(ts, rng.choice([0, 12.5, 40, 55.5, 99.6, 100, 2_500, 7_500]), path, **view))
            elif kind < 0.9:
                found.append(
                    dict(
                        move(ts, sorted(rng.sample(range(0, 2_000), 3)), path),
                        viewport={"w": view["w"], "h": view["h"]},
                    )
                )
            else:
                found.append(pageview(ts, path, **view))
        bodies.append(batch(*found, session_id=f"r{s}"))
    return bodies


def test_reports_match_oracle(client: FlaskClient) -> None:
    bodies = random_bodies(20261129)
    project = ingest_all(client, bodies)
    rows = oracle.stored_rows(bodies)
    assert len(oracle.rage_rows(rows)) >= 10  # the data holds rage bursts
    end = max(r.ts for r in rows)
    rng = random.Random(7)
    windows = [(None, None), (T, end)] + [tuple(sorted(rng.sample(range(T, end + 1), 2))) for _ in range(4)]
    failures = []
    for lo, hi in windows:
        span: dict[str, Any] = {k: v for k, v in (("from", lo), ("to", hi)) if v is not None}
        for path in (None, *PAGES):
            where = {"path": path} if path else {}
            bands: list[dict[str, Any]] = [{}, {"viewports": "all"}, {"viewportWidth": 400}, {"viewportWidth": 800}]
            for kind in ("click", "rageclick"):
                for band in bands:
                    got = get(client, f"/api/projects/{project}/elements", **span, **where, type=kind, **band)
                    want = oracle.elements(
                        rows,
                        path=path,
                        ts_from=lo,
                        ts_to=hi,
                        type=kind,
                        viewports=band.get("viewports", "width"),
                        viewport_width=band.get("viewportWidth"),
                    )
                    if got["elements"] != want:
                        failures.append(f"elements {span} {path} {kind} {band}: {got} != {want}")
            hm_range = {"ts_from": lo or 0, "ts_to": hi or end + 1}
            hm_span = {"from": lo or 0, "to": hi or end + 1}
            for viewports, anchor in zip(("width", "all") * 3, ANCHORS * 2, strict=True):
                got = get(
                    client,
                    f"/api/projects/{project}/heatmap",
                    **hm_span,
                    **where,
                    type="rageclick",
                    viewports=viewports,
                    resolution=64,
                    anchor=anchor,
                )
                want = oracle.rage_heatmap(
                    rows, path=path, **hm_range, viewports=viewports, resolution=64, anchor=anchor
                )
                if got["points"] != want["points"] or any(
                    got["meta"][k] != want["meta"][k]
                    for k in ("total", "plotted", "viewport", "otherViewports", "renderHeight", "anchor")
                ):
                    failures.append(f"rage heatmap {span} {path} {viewports} {anchor}: {got} != {want}")
                got = get(client, f"/api/projects/{project}/scrollmap", **hm_span, **where, viewports=viewports)
                want = oracle.scrollmap(rows, path=path, **hm_range, viewports=viewports)
                if (
                    got["reach"] != pytest.approx(want["reach"])
                    or got["meta"]["sessions"] != want["meta"]["sessions"]
                    or got["meta"]["foldPct"] != pytest.approx(want["meta"]["foldPct"])
                ):
                    failures.append(f"scrollmap {span} {path} {viewports}: {got} != {want}")
        for q in (None, "/pricing", "/d"):
            got = get(client, f"/api/projects/{project}/paths", **span, **({"q": q} if q else {}))["paths"]
            want = oracle.paths(rows, ts_from=lo, ts_to=hi, q=q)
            if got != want:
                failures.append(f"paths {span} {q}: {got} != {want}")
    assert not failures, "\n".join(failures[:5])


@backend_free
@pytest.mark.parametrize(
    ("endpoint", "params", "code"),
    [
        ("elements", {"limit": 0}, "invalid_query"),
        ("elements", {"limit": 501}, "invalid_query"),
        ("elements", {"type": "move"}, "invalid_query"),
        ("elements", {"from": "yesterday-ish"}, "invalid_from"),
        ("elements", {"from": 10, "to": 5}, "invalid_time_range"),
        ("paths", {"limit": 501}, "invalid_query"),
        ("paths", {"q": "/" * 1025}, "invalid_query"),
        ("paths", {"to": "nope"}, "invalid_to"),
        ("scrollmap", {"viewports": "some"}, "invalid_query"),
        ("scrollmap", {"viewportWidth": 0}, "invalid_query"),
        ("scrollmap", {"viewportBucket": "wide"}, "invalid_query"),
        ("scrollmap", {"from": 10, "to": 5}, "invalid_time_range"),
        ("heatmap", {"type": "rage"}, "invalid_query"),
        ("heatmap", {"viewportWidth": "x"}, "invalid_query"),
    ],
)
def test_bad_parameters(client: FlaskClient, endpoint: str, params: dict[str, Any], code: str) -> None:
    response = client.get(f"/api/projects/p/{endpoint}", query_string=params, headers=API)
    assert response.status_code == 400
    assert response.get_json()["code"] == code


@backend_free
@pytest.mark.parametrize("endpoint", ["elements", "paths", "scrollmap"])
def test_new_endpoints_need_the_key(client: FlaskClient, endpoint: str) -> None:
    assert client.get(f"/api/projects/p/{endpoint}").get_json()["code"] == "missing_api_key"
    wrong = client.get(f"/api/projects/p/{endpoint}", headers={"x-api-key": "nope"})
    assert wrong.status_code == 401 and wrong.get_json()["code"] == "invalid_api_key"


@backend_free
def test_unknown_project_answers_empty(client: FlaskClient) -> None:
    assert get(client, "/api/projects/none/elements")["elements"] == []
    assert get(client, "/api/projects/none/paths")["paths"] == []
    reach = get(client, "/api/projects/none/scrollmap")
    assert reach["meta"]["sessions"] == 0 and len(reach["reach"]) == 21
