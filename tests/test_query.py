"""The query APIs: heatmap aggregation, events, sessions, session detail, metrics, auth."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from . import helpers
from .helpers import API, QUERY_KEY, backend_free, batch, event, headers


def ingest(
    client: FlaskClient, *events: dict[str, Any], w: int | None = None, h: int | None = None, **kwargs: Any
) -> str:
    """Post ``events`` (all on a w x h viewport when given) and return the project id."""
    if w is not None and h is not None:
        events = tuple(dict(e, viewport={"w": w, "h": h}) for e in events)
    return helpers.ingest(client, *events, **kwargs)


def get(client: FlaskClient, url: str, **params: Any) -> Any:
    return client.get(url, query_string=params, headers=API)


def heatmap(client: FlaskClient, project: str, **params: Any) -> dict[str, Any]:
    response = get(client, f"/api/projects/{project}/heatmap", **params)
    assert response.status_code == 200, response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.get_json()
    assert response.headers["X-Result-Count"] == str(body["meta"]["total"])
    assert response.headers["X-Heatmap-Point-Count"] == str(len(body["points"]))
    assert response.headers["X-Requested-Type"] == body["meta"]["requestedType"]
    assert response.headers["X-Resolved-Type"] == body["meta"]["resolvedType"]
    return body


def test_heatmap_cells_and_centres(client: FlaskClient) -> None:
    project = ingest(
        client,
        event("click", x=0, y=0),
        event("click", x=9, y=9),  # same 10x10 cell as (0, 0) at resolution 10 on 100x100
        event("click", x=55, y=95),
        event("click", x=500, y=-40),  # clamped to the last column and the first row
        w=100,
        h=100,
    )
    body = heatmap(client, project, resolution=10)
    points = {(p["x"], p["y"]): p["value"] for p in body["points"]}
    assert points == {(5, 5): 2, (55, 95): 1, (95, 5): 1}
    meta = body["meta"]
    assert meta["viewport"] == {"w": 100, "h": 100}
    assert meta["renderHeight"] == 100
    assert (meta["total"], meta["plotted"], meta["ignored"]) == (4, 4, 0)
    assert meta["bucket"] == "100x100"
    assert meta["plottableTypes"] == ["click", "move", "scroll"]
    assert meta["typeBreakdown"] == {"click": 4}
    assert "warning" not in meta


def test_heatmap_render_height_grows_with_y_and_scroll_plots_at_x0(client: FlaskClient) -> None:
    project = ingest(
        client,
        event("move", points=[{"x": 10, "y": 150, "tsOffset": 0}, {"x": 10, "y": 390, "tsOffset": 5}]),
        event("scroll", scrollDepthPct=50),
        w=100,
        h=100,
    )
    body = heatmap(client, project, type="all", resolution=8)
    meta = body["meta"]
    assert meta["renderHeight"] == 390
    # square cells of 100 / 8 = 12.5: y=150 -> row 12, y=390 -> row 31; scroll 50% -> y=195 -> row 15
    points = {(p["x"], p["y"]): p["value"] for p in body["points"]}
    assert points == {(6, 156): 1, (6, 394): 1, (6, 194): 1}
    assert meta["cell"] == {"w": 12.5, "h": 12.5}
    assert meta["plotted"] == 3 and meta["typeBreakdown"] == {"move": 2, "scroll": 1}


def test_heatmap_falls_back_to_all_only_without_type(client: FlaskClient) -> None:
    project = ingest(client, event("pageview"), event("custom"))
    body = heatmap(client, project)
    meta = body["meta"]
    assert (meta["requestedType"], meta["resolvedType"]) == ("click", "all")
    assert meta["total"] == 2 and meta["plotted"] == 0 and meta["ignored"] == 2
    assert "none are plottable" in meta["warning"]
    explicit = heatmap(client, project, type="click")["meta"]
    assert (explicit["resolvedType"], explicit["total"]) == ("click", 0)
    assert "warning" not in explicit
    assert explicit["viewport"] == {"w": 1280, "h": 720} and explicit["bucket"] == "1280x720"


@pytest.mark.parametrize(
    ("resolution", "frame", "placed"),
    [
        # side 1280 / 64 = 20 (the aggregates' cells re-binned): x 1000 of a 1320 px viewport is
        # 1000 (left), 980 (center) or 969.7 (scale) on the 1280 px frame
        (64, (10, 10), {"left": (1010, 10), "center": (990, 10), "scale": (970, 10)}),
        # side 12.8 (raw rows)
        (100, (6, 6), {"left": (1005, 6), "center": (979, 6), "scale": (966, 6)}),
    ],
)
def test_heatmap_frame_is_the_exact_width_and_the_anchor_places_other_widths(
    client: FlaskClient, resolution: int, frame: tuple[int, int], placed: dict[str, tuple[int, int]]
) -> None:
    project = ingest(client, event("click", x=0, y=0), event("click", x=3, y=2), w=1280, h=720)
    ingest(client, event("click", x=1000, y=10, w=1320, h=720))  # bucket 1300x700 too
    answers = {}
    for anchor in ("left", "center", "scale"):
        body = heatmap(client, project, resolution=resolution, anchor=anchor)
        meta = body["meta"]
        assert meta["bucket"] == "1300x700" and meta["viewport"] == {"w": 1280, "h": 700}  # the bucket's height
        assert meta["anchor"] == anchor and meta["cell"]["w"] == 1280 / resolution
        answers[anchor] = {(p["x"], p["y"]): p["value"] for p in body["points"]}
        assert answers[anchor] == {frame: 2, placed[anchor]: 1}
    assert heatmap(client, project)["meta"]["anchor"] == "left"


def test_heatmap_bucket_choice(client: FlaskClient) -> None:
    project = ingest(
        client,
        event("click", w=1190, h=810),
        event("click", w=1210, h=790),
        event("click", w=390, h=844, meta={"viewportBucket": "390x844"}),
    )
    assert heatmap(client, project)["meta"]["bucket"] == "1200x800"
    chosen = heatmap(client, project, viewportBucket="390x844")["meta"]
    assert chosen["bucket"] == "390x844" and chosen["viewport"] == {"w": 390, "h": 844}


def test_heatmap_filters_path_and_time(client: FlaskClient) -> None:
    project = ingest(
        client,
        event("click", path="/a", ts=1000),
        event("click", path="/b", ts=2000),
        event("click", path="/a", ts=3000),
    )
    assert heatmap(client, project, path="/a")["meta"]["total"] == 2
    assert heatmap(client, project, **{"from": 1500, "to": 2500})["meta"]["total"] == 1
    assert heatmap(client, project, **{"from": "1970-01-01T00:00:02Z"})["meta"]["total"] == 2


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"resolution": 7}, "invalid_query"),
        ({"resolution": 1025}, "invalid_query"),
        ({"resolution": "x"}, "invalid_query"),
        ({"type": "teleport"}, "invalid_query"),
        ({"viewportBucket": "big"}, "invalid_query"),
        ({"anchor": "right"}, "invalid_query"),
        ({"anchor": ""}, "invalid_query"),
        ({"from": "yesterday-ish"}, "invalid_from"),
        ({"to": "nope"}, "invalid_to"),
        ({"from": 5000, "to": 10}, "invalid_time_range"),
    ],
)
@backend_free
def test_heatmap_bad_params(client: FlaskClient, params: dict[str, Any], code: str) -> None:
    project = ingest(client, event("click"))
    response = get(client, f"/api/projects/{project}/heatmap", **params)
    assert response.status_code == 400
    assert response.get_json()["code"] == code


def test_events_filters_order_and_pagination(client: FlaskClient) -> None:
    project = ingest(
        client, *[event("click", ts=1000 + i, path="/p" if i % 2 else "/q") for i in range(10)], event("custom", ts=500)
    )
    response = get(client, f"/api/projects/{project}/events", limit=3, offset=2)
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert [e["ts"] for e in body["events"]] == [1001, 1002, 1003]
    assert body["meta"] == {
        "count": 3,
        "limit": 3,
        "offset": 2,
        "projectId": project,
        "requestedType": "all",
        "projectFound": True,
        "excluded": {"sessions": 0, "events": 0},
    }
    only_custom = get(client, f"/api/projects/{project}/events", type="custom").get_json()
    assert [e["type"] for e in only_custom["events"]] == ["custom"]
    on_p = get(client, f"/api/projects/{project}/events", path="/p").get_json()["events"]
    assert len(on_p) == 5
    ranged = get(client, f"/api/projects/{project}/events", **{"from": 1002, "to": 1004}).get_json()["events"]
    assert [e["ts"] for e in ranged] == [1002, 1003, 1004]
    keys = set(body["events"][0])
    assert keys == {
        "id",
        "eventId",
        "projectId",
        "sessionId",
        "userId",
        "type",
        "ts",
        "path",
        "selector",
        "x",
        "y",
        "scrollDepth",
        "metaJson",
        "data",
    }


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"offset": -1}, {"type": "x"}])
@backend_free
def test_events_bad_params(client: FlaskClient, params: dict[str, Any]) -> None:
    project = ingest(client, event("click"))
    response = get(client, f"/api/projects/{project}/events", **params)
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_query"


def test_sessions_list_with_counts_filters_and_pagination(client: FlaskClient) -> None:
    user = {"id": "u-7"}
    ingest(
        client,
        event("click"),
        event("move", points=[{"x": 1, "y": 1, "tsOffset": 0}] * 3),
        session_id="s-a",
        started_at=100,
        last_seen_at=200,
        user=user,
    )
    ingest(client, event("click", path="/other"), session_id="s-b", started_at=300, last_seen_at=400)
    project = ingest(client, event("click"), event("click"), session_id="s-c", started_at=500, last_seen_at=600)
    url = f"/api/projects/{project}/sessions"
    body = get(client, url).get_json()
    assert [(s["sessionId"], s["eventCount"]) for s in body["sessions"]] == [("s-a", 4), ("s-b", 1), ("s-c", 2)]
    # SPEC 4's fields, the SDK's user id next to the internal one (issue 12), the signal counts (SPEC 10).
    fields = {"sessionId", "userId", "externalUserId", "startedAt", "lastSeenAt", "firstPath", "eventCount", "signals"}
    assert set(body["sessions"][0]) == fields
    # s-b's lone click and s-c's two on one selector have no effect after them: dead.
    none = {"rage": 0, "dead": 0, "error": 0, "quickback": 0, "scroll": 0}
    assert [s["signals"] for s in body["sessions"][1:]] == [{**none, "dead": 1}, {**none, "dead": 2}]
    assert [s["sessionId"] for s in get(client, url, limit=1, offset=1).get_json()["sessions"]] == ["s-b"]
    assert [s["sessionId"] for s in get(client, url, path="/other").get_json()["sessions"]] == ["s-b"]
    assert [s["sessionId"] for s in get(client, url, **{"from": 300}).get_json()["sessions"]] == ["s-b", "s-c"]
    assert [s["sessionId"] for s in get(client, url, to=400).get_json()["sessions"]] == ["s-a", "s-b"]
    user_id = body["sessions"][0]["userId"]
    assert [s["sessionId"] for s in get(client, url, userId=user_id).get_json()["sessions"]] == ["s-a"]
    assert get(client, url, limit=201).status_code == 400


def test_session_detail(client: FlaskClient) -> None:
    project = ingest(client, event("click", ts=3), event("custom", ts=1), event("pageview", ts=2), session_id="s-d")
    response = get(client, "/api/sessions/s-d")
    assert response.headers["X-Session-Found"] == "1"
    body = response.get_json()
    assert set(body["session"]) == {
        "id",
        "projectId",
        "userId",
        "externalUserId",
        "startedAt",
        "lastSeenAt",
        "firstPath",
        "userAgent",
        "deviceJson",
        "ipHash",
        "traffic",
        "trafficReason",
    }
    assert (body["session"]["traffic"], body["session"]["trafficReason"]) == ("human", None)
    assert [e["type"] for e in body["events"]] == ["custom", "pageview", "click"]
    assert body["meta"] == {"found": True, "count": 3, "limit": 200, "offset": 0}
    typed = get(client, "/api/sessions/s-d", type="click", limit=1).get_json()
    assert [e["type"] for e in typed["events"]] == ["click"]
    scoped = get(client, f"/api/projects/{project}/sessions/s-d").get_json()
    assert scoped["meta"]["found"] is True
    missing = get(client, "/api/sessions/nope")
    assert missing.status_code == 200 and missing.headers["X-Session-Found"] == "0"
    assert missing.get_json() == {
        "session": None,
        "events": [],
        "meta": {"found": False, "count": 0, "limit": 200, "offset": 0},
    }
    assert get(client, "/api/projects/other/sessions/s-d").get_json()["meta"]["found"] is False
    assert get(client, "/api/sessions/s-d", limit=501).status_code == 400


def test_metrics(client: FlaskClient) -> None:
    ingest(client, event("click"))
    ingest(client, event("click"))
    response = get(client, "/api/metrics")
    body = response.get_json()
    assert response.headers["Cache-Control"] == "no-store"
    assert body["metrics"]["ingestCount"] == 2
    assert body["metrics"]["ingestErrorCount"] == 0
    assert isinstance(body["metrics"]["lastIngestMs"], int)
    assert body["requestId"] == response.headers["X-Request-Id"]
    assert body["now"] > 1_700_000_000_000


@pytest.mark.parametrize(
    "url",
    [
        "/api/metrics",
        "/api/projects/p/heatmap",
        "/api/projects/p/events",
        "/api/projects/p/sessions",
        "/api/sessions/s",
        "/api/projects/p/sessions/s",
    ],
)
@backend_free
def test_query_key_required(client: FlaskClient, url: str) -> None:
    missing = client.get(url)
    assert missing.status_code == 401 and missing.get_json()["code"] == "missing_api_key"
    wrong = client.get(url, headers={"x-api-key": "wrong"})
    assert wrong.status_code == 401 and wrong.get_json()["code"] == "invalid_api_key"
    assert client.get(url, headers={"Authorization": f"Bearer {QUERY_KEY}"}).status_code == 200
    assert client.get(url, headers={"x-api-key": QUERY_KEY}).status_code == 200


def test_query_auth_none(make_app: Any) -> None:
    client = make_app(query_auth="none", query_api_keys=[]).test_client()
    assert client.get("/api/metrics").status_code == 200


def test_unscoped_session_in_several_projects_is_a_409(client: FlaskClient) -> None:
    """A client of another project posting the same session id is never shown instead (SPEC 5)."""
    projects = []
    for key, started in (("key-a", 5_000), ("key-b", 0)):
        body = batch(event("click"), session_id="shared", started_at=started)
        response = client.post("/ingest", json=body, headers=headers(key))
        assert response.status_code == 200, response.get_json()
        projects.append(response.get_json()["projectId"])
    response = get(client, "/api/sessions/shared")
    assert response.status_code == 409
    body = response.get_json()
    assert body["code"] == "ambiguous_session" and body["details"]["projects"] == sorted(projects)
    for project in projects:
        scoped = get(client, f"/api/projects/{project}/sessions/shared").get_json()
        assert scoped["session"]["projectId"] == project and scoped["meta"]["count"] == 1
    only = client.post("/ingest", json=batch(event("click"), session_id="alone"), headers=headers("key-a"))
    assert get(client, "/api/sessions/alone").get_json()["session"]["projectId"] == only.get_json()["projectId"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/projects/p%00x/events",
        "/api/projects/p/events?path=%2Fa%00",
        "/api/projects/p/heatmap?path=%00",
        "/api/projects/p/sessions?userId=u%00",
        "/api/sessions/s%00",
        "/api/projects/p/sessions/s%00",
    ],
)
@backend_free
def test_nul_in_a_segment_or_parameter_is_a_400(client: FlaskClient, url: str) -> None:
    response = client.get(url, headers=API)
    assert response.status_code == 400 and response.get_json()["code"] == "invalid_query", url
