"""``GET /api/projects/<projectId>/compare`` (SPEC §10, docs/compare.md): both sides and their
per-session differences against the plain reference in tests/oracle.py on random data (every
backend), the minimum-data gate, the tests on hand-computed numbers, and the invalid slices."""

from __future__ import annotations

import math
import random
import re
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from flask_heat_collector import schemas, slices
from flask_heat_collector.compare import p_two_sided, z_poisson_rates, z_two_proportions
from flask_heat_collector.slices import SLICE_PATTERN, InvalidSlice, parse_segment, parse_slice

from . import oracle
from .helpers import API, backend_free, batch, event, ingest_all

DAY = 86_400_000
T0 = 1_790_000_000_000 // DAY * DAY  # a UTC midnight in the past
END = T0 + 3 * DAY - 1
VIEWS = [
    {"w": 1280, "h": 800, "meta": {"viewportBucket": "1280x800"}},
    {"w": 390, "h": 844},
    {"w": 1280, "h": 720, "meta": {"viewportBucket": "1280x720"}},
]
PATHS = ("/product/1", "/product/2", "/product/3/", "/about", "/")
SELECTORS = ("#buy", "#a", "button.c")
TAGS = (
    {"name": "experiment", "props": {"variant": "A"}},
    {"name": "experiment", "props": {"variant": "B"}},
    {"name": "experiment", "props": {"variant": 2}},
    {"name": "experiment", "props": {"other": "B"}},
    {"name": "experiment.v2", "props": {"variant": "B"}},
    {"name": "signup", "props": {"variant": "B"}},
)
SEGMENTS = (
    ("experiment", "variant", "A"),
    ("experiment", "variant", "B"),
    ("experiment", "variant", "2"),
    ("experiment.v2", "variant", "B"),
)


def compare(client: FlaskClient, project: str, **params: Any) -> Any:
    return client.get(
        f"/api/projects/{project}/compare",
        query_string={k: v for k, v in params.items() if v is not None},
        headers=API,
    )


def random_bodies(seed: int, sessions: int = 26) -> list[dict[str, Any]]:
    """Sessions over three UTC days (some across a midnight), each tagged by zero to two custom events
    (on any path, sometimes in another batch later on), with clicks, scrolls, moves and pageviews."""
    rng = random.Random(seed)
    bodies = []
    for s in range(sessions):
        view = rng.choice(VIEWS)
        ts = T0 + rng.randint(0, 2) * DAY + rng.choice([rng.randint(0, DAY - 1), DAY - rng.randint(1, 90_000)])
        found: list[dict[str, Any]] = []
        tags = rng.sample(TAGS, rng.choice([0, 1, 1, 2]))
        for tag in tags[:1]:
            found.append(event("custom", ts=ts, path=rng.choice(PATHS), **tag, **view))
        path = rng.choice(PATHS)
        for _ in range(rng.randint(4, 18)):
            ts += rng.choice([50, 300, 1_100, 20_000, 600_000])
            if rng.random() < 0.2:
                path = rng.choice(PATHS)
            kind = rng.random()
            if kind < 0.5:
                x, y = rng.choice([(100, 100), (400, 300), (5, 900), (1000, 40)])
                selector = rng.choice(SELECTORS)
                for _ in range(rng.choice([1, 1, 1, 3])):  # now and then a burst: rage clicks
                    ts += 100
                    spot = {"x": x + rng.randint(-10, 10), "y": y + rng.randint(-10, 10)}
                    found.append(event("click", ts=ts, path=path, selector=selector, **spot, **view))
            elif kind < 0.72:
                depth = rng.choice([0, 12.5, 40, 55.5, 100])
                found.append(event("scroll", ts=ts, path=path, scrollY=int(depth * 10), scrollDepthPct=depth, **view))
            elif kind < 0.86:
                offsets = sorted(rng.sample(range(0, 90_000), 3))
                points = [{"x": 10 + 30 * i, "y": 20 + 70 * i, "tsOffset": off} for i, off in enumerate(offsets)]
                found.append(event("move", ts=ts, path=path, points=points, **view))
            else:
                found.append(event("pageview", ts=ts, path=path, to=path, **view))
        bodies.append(batch(*found, session_id=f"c{s}"))
        for tag in tags[1:]:  # a tag sent later, in a batch of its own
            later = event("custom", ts=ts + rng.randint(1, DAY), path=rng.choice(PATHS), **tag, **view)
            bodies.append(batch(later, session_id=f"c{s}"))
    return bodies


def random_side(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A side's text and what it asks for (only the items it gives)."""
    items: dict[str, Any] = {}
    window = rng.choice([None, "days", "partial"])
    if window == "days":
        first = rng.randint(0, 1)
        items["from"], items["to"] = T0 + first * DAY, T0 + (first + 2) * DAY - 1
    elif window == "partial":
        items["from"] = T0 + rng.randint(1, DAY - 1)
        if rng.random() < 0.6:
            items["to"] = T0 + 2 * DAY + rng.randint(0, DAY - 2)
    where = rng.random()
    if where < 0.25:
        items["path"] = rng.choice(PATHS)
    elif where < 0.5:
        items["group"] = rng.choice(["/product/:id", "/**", "/product/*"])
    band = rng.random()
    if band < 0.25:
        items["viewportWidth"] = rng.choice([1300, 400, 999])
    elif band < 0.35:
        items["viewportBucket"] = "1300x800"
    if rng.random() < 0.6:
        items["segment"] = rng.choice(SEGMENTS)
    text = ";".join(f"{k}=custom:{v[0]}.{v[1]}={v[2]}" if k == "segment" else f"{k}={v}" for k, v in items.items())
    return text, items


def expected_side(rows: list[oracle.Row], report: str, items: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    lo = items.get("from", shared["from"])
    hi = items.get("to", shared["to"])
    own = "path" in items or "group" in items
    path = items.get("path") if own else shared.get("path")
    group = items.get("group") if own else shared.get("group")
    where: oracle.Paths = oracle.group_paths(rows, group, ts_from=lo, ts_to=hi) if group else path
    has_band = "viewportWidth" in items or "viewportBucket" in items
    band_from = items if has_band else shared
    return oracle.compare_side(
        rows,
        report,
        path=where,
        ts_from=lo,
        ts_to=hi,
        viewports=shared.get("viewports", "width"),
        viewport_bucket=band_from.get("viewportBucket"),
        viewport_width=band_from.get("viewportWidth"),
        segment=items.get("segment"),
        type=shared.get("type", "click"),
        resolution=shared.get("resolution", 128),
    )


def close(got: Any, want: Any) -> bool:
    """Equal, floats within 1e-9 (relative)."""
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(close(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(close, got, want))
    if isinstance(want, float) and isinstance(got, int | float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12)
    return bool(got == want)


def test_compare_matches_oracle(make_app: Any) -> None:
    app: Flask = make_app(min_sample_sessions=1, rate_limit="100000 per second")
    client = app.test_client()
    bodies = random_bodies(20261207)
    project = ingest_all(client, bodies)
    rows = oracle.stored_rows(bodies)
    for segment in SEGMENTS[:3]:  # the data holds every segment
        assert oracle.segment_members(rows, *segment, ts_from=T0, ts_to=END)
    rng = random.Random(5)
    failures: list[str] = []
    checked = {"ok": 0, "insufficient_data": 0, "segment": 0}
    for case in range(45):
        report = ("heatmap", "elements", "scrollmap")[case % 3]
        shared: dict[str, Any] = {"from": T0, "to": END, "viewports": rng.choice(["width", "width", "all"])}
        if rng.random() < 0.3:
            shared["path"] = rng.choice(PATHS)
        if report == "heatmap":
            shared["type"] = rng.choice(["click", "all", "move", "scroll", "rageclick", "deadclick"])
            shared["resolution"] = rng.choice([64, 128, 100])
        (text_a, items_a), (text_b, items_b) = random_side(rng), random_side(rng)
        response = compare(client, project, report=report, a=text_a, b=text_b, limit=500, **shared)
        label = f"{report} a={text_a!r} b={text_b!r} {shared}"
        if response.status_code != 200:
            failures.append(f"{label}: {response.status_code} {response.get_json()}")
            continue
        got = response.get_json()
        want_a = expected_side(rows, report, items_a, shared)
        want_b = expected_side(rows, report, items_b, shared)
        checked["segment"] += "segment" in items_a or "segment" in items_b
        if (got["a"]["sessions"], got["b"]["sessions"]) != (want_a["sessions"], want_b["sessions"]):
            failures.append(f"{label}: sessions {got['a']['sessions']}, {got['b']['sessions']} != oracle's")
            continue
        if min(want_a["sessions"], want_b["sessions"]) < 1:
            checked["insufficient_data"] += 1
            if got["status"] != "insufficient_data" or "differences" in got:
                failures.append(f"{label}: {got['status']} with an empty side")
            continue
        checked["ok"] += 1
        want = oracle.compare_differences(report, want_a, want_b)
        if got["status"] != "ok" or got["total"] != len(want) or not close(got["differences"], want):
            failures.append(f"{label}: {got.get('differences')} != {want}")
    assert not failures, "\n".join(failures[:4])
    assert checked["ok"] >= 15 and checked["segment"] >= 10, checked


def test_known_difference_is_significant_and_a_random_split_is_not(make_app: Any) -> None:
    """Variant B's button is clicked by twice the share of sessions (and twice per session): flagged;
    the same sessions split at random by another tag: not flagged."""
    client = make_app(rate_limit="100000 per second").test_client()  # the default gate: 30 a side
    rng = random.Random(3)
    bodies = []
    for s in range(160):
        variant = "AB"[s % 2]
        ts = T0 + s * 60_000
        view = VIEWS[0]
        found = [
            event("custom", ts=ts, path="/", name="experiment", props={"variant": variant}, **view),
            event("custom", ts=ts, path="/", name="split", props={"half": rng.choice(["x", "y"])}, **view),
            event("pageview", ts=ts + 1, path="/product/1", to="/product/1", **view),
        ]
        if rng.random() < (0.6 if variant == "B" else 0.3):
            found.append(event("click", ts=ts + 2, path="/product/1", selector="#buy", x=640, y=400, **view))
        bodies.append(batch(*found, session_id=f"k{s}"))
    project = ingest_all(client, bodies)
    common = {"report": "elements", "path": "/product/1", "from": T0, "to": END}
    got = compare(
        client, project, a="segment=custom:experiment.variant=A", b="segment=custom:experiment.variant=B", **common
    )
    body = got.get_json()
    assert got.status_code == 200 and body["status"] == "ok", body
    assert body["a"]["sessions"] == body["b"]["sessions"] == 80
    (buy,) = body["differences"]
    assert buy["selector"] == "#buy" and buy["significant"] and buy["z"] > 3
    assert buy["b"]["share"] > 1.6 * buy["a"]["share"]
    split = compare(client, project, a="segment=custom:split.half=x", b="segment=custom:split.half=y", **common)
    (buy,) = split.get_json()["differences"]
    assert not buy["significant"] and buy["pValue"] > 0.05
    # The same split through the heatmap: the cell of the button, its rows per session.
    heat = compare(
        client,
        project,
        a="segment=custom:experiment.variant=A",
        b="segment=custom:experiment.variant=B",
        **dict(common, report="heatmap"),
    ).get_json()
    (cell,) = heat["differences"]
    assert cell["significant"] and cell["b"]["value"] > cell["a"]["value"]


def test_gate_answers_insufficient_data(make_app: Any) -> None:
    client = make_app(min_sample_sessions=3).test_client()
    bodies = [
        batch(event("click", ts=T0 + i, path="/p", selector="#x", x=5, y=5), session_id=f"g{i}") for i in range(5)
    ]
    project = ingest_all(client, bodies)
    params = {"from": T0, "to": END, "path": "/p"}
    for report in ("heatmap", "elements", "scrollmap"):
        small = compare(client, project, report=report, a=f"to={T0 + 1}", b="", **params)  # 2 against 5 sessions
        body = small.get_json()
        assert small.status_code == 200 and body["status"] == "insufficient_data", body
        assert (body["a"]["sessions"], body["b"]["sessions"], body["minSessions"]) == (2, 5, 3)
        assert "differences" not in body and small.headers["X-Compare-Status"] == "insufficient_data"
        enough = compare(client, project, report=report, a=f"to={T0 + 2}", b="", **params).get_json()
        assert enough["status"] == "ok" and enough["a"]["sessions"] == 3 and "differences" in enough


def test_z_tests_on_hand_computed_numbers() -> None:
    # 2 of 10 sessions against 6 of 10: pooled 0.4, se = sqrt(0.4 * 0.6 * 0.2) = 0.2190890, z = 1.8257419.
    z = z_two_proportions(2, 10, 6, 10)
    assert z == pytest.approx(1.8257419, abs=1e-6)
    assert p_two_sided(z) == pytest.approx(0.0678892, abs=1e-6)  # not below 0.05
    assert z_two_proportions(10, 10, 10, 10) is None  # every session on both sides: no variance
    # 30 rows over 100 sessions against 60 over 100: pooled rate 0.45, se = sqrt(0.45 * 0.02) = 0.0948683.
    z = z_poisson_rates(30, 100, 60, 100)
    assert z == pytest.approx(3.1622777, abs=1e-6)
    assert p_two_sided(z) == pytest.approx(0.0015654, abs=1e-6)
    assert z_poisson_rates(0, 5, 0, 5) is None
    assert p_two_sided(-1.959964) == pytest.approx(0.05, abs=1e-6)


def test_hand_computed_test_through_http(make_app: Any) -> None:
    client = make_app(min_sample_sessions=1).test_client()
    bodies = []
    for s in range(20):
        variant = "A" if s < 10 else "B"
        found = [event("custom", ts=T0 + s, path="/", name="exp", props={"v": variant})]
        clicked = s < 2 or 10 <= s < 16  # 2 of A's 10, 6 of B's 10
        if clicked:
            found.append(event("click", ts=T0 + s, path="/", selector="#go", x=10, y=10, w=1280, h=720))
        bodies.append(batch(*found, session_id=f"h{s}"))
    project = ingest_all(client, bodies)
    body = compare(
        client,
        project,
        report="elements",
        a="segment=custom:exp.v=A",
        b="segment=custom:exp.v=B",
        **{"from": T0, "to": END, "viewports": "all"},
    ).get_json()
    (go,) = body["differences"]
    assert (go["a"]["sessions"], go["b"]["sessions"], body["a"]["sessions"], body["b"]["sessions"]) == (2, 6, 10, 10)
    assert go["z"] == pytest.approx(1.8257419, abs=1e-6) and go["significant"] is False
    assert go["diff"]["share"] == pytest.approx(0.4)
    assert body["a"]["segmentSessions"] == 10 and body["test"]["alpha"] == 0.05


def test_slice_syntax() -> None:
    assert parse_slice("") == slices.SliceItems()
    found = parse_slice("group=/product/:id;segment=custom:experiment.variant=B;from=-5;viewportWidth=390")
    assert found.group is not None and found.group.text == "/product/:id"
    assert (found.ts_from, found.viewport_width, found.segment) == (
        -5,
        390,
        slices.Segment("experiment", "variant", "B"),
    )
    segment = parse_segment("custom:checkout.step.name=a=b")
    assert (segment.event, segment.prop, segment.value) == ("checkout.step", "name", "a=b")
    assert (slices.MAX_PATH, slices.MAX_VIEWPORT_WIDTH) == (schemas.MAX_PATH, schemas.MAX_VIEWPORT_WIDTH)


def test_slice_pattern_is_the_parser() -> None:
    """The pattern the OpenAPI document states accepts exactly what the parser accepts, on random
    texts built from the syntax's own pieces (and broken ones)."""
    rng = random.Random(17)
    pieces = [
        "from=",
        "to=",
        "path=",
        "group=",
        "viewportWidth=",
        "viewportBucket=",
        "segment=",
        "custom:",
        "x=",
        "",
        "1",
        "-3",
        "0",
        "07",
        "1.5",
        "2026-01-01",
        "1280x720",
        "1280",
        "x",
        "/",
        "/product/:id",
        "/blog/*",
        "/docs/**",
        ":id",
        "**",
        "*",
        "a.b",
        ".",
        "=",
        "B",
        " ",
        "é",
        "\n",
        ";",
        ";",
        ";",
        "?",
    ]
    pattern = re.compile(SLICE_PATTERN)
    agreed = {True: 0, False: 0}
    for _ in range(20000):
        text = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 9)))
        try:
            parse_slice(text)
            accepted = True
        except InvalidSlice:
            accepted = False
        assert (pattern.fullmatch(text) is not None) == accepted, text
        agreed[accepted] += 1
    assert agreed[True] > 500 and agreed[False] > 500, agreed


BAD_SLICES = [
    ("nonsense", "nonsense"),
    ("colour=red", "colour"),
    ("from=1;from=2", "from"),
    ("from=yesterday-ish", "from"),
    ("to=2026-01-01", "to"),
    ("from=5;to=4", "from"),
    ("path=/a;group=/b/*", "group"),
    ("group=/a/**/b", "group"),
    ("group=product", "group"),
    ("viewportWidth=0", "viewportWidth"),
    ("viewportWidth=wide", "viewportWidth"),
    ("viewportBucket=1280", "viewportBucket"),
    ("segment=experiment.variant=B", "segment"),
    ("segment=custom:experiment=B", "segment"),
    ("segment=custom:experiment.variant=", "segment"),
    ("segment=custom:.variant=B", "segment"),
    ("path=", "path"),
]


@backend_free
@pytest.mark.parametrize(("text", "key"), BAD_SLICES)
@pytest.mark.parametrize("side", ["a", "b"])
def test_invalid_slice_is_a_stable_400_naming_the_side(client: FlaskClient, text: str, key: str, side: str) -> None:
    sides = {"a": "", "b": ""}
    sides[side] = text
    response = compare(client, "p", report="elements", **sides)
    body = response.get_json()
    assert response.status_code == 400 and body["code"] == "invalid_slice", body
    assert body["details"]["side"] == side and body["details"]["key"] == key, body


@backend_free
def test_other_invalid_queries(client: FlaskClient) -> None:
    def code(**params: Any) -> str:
        response = compare(client, "p", **params)
        assert response.status_code == 400
        return str(response.get_json()["code"])

    assert code(report="paths", a="", b="") == "invalid_query"
    assert code(a="", b="") == "invalid_query"  # report is required
    assert code(report="heatmap", b="") == "invalid_query"  # a is required (it may be empty)
    assert code(report="heatmap", a="", b="", type="pageviews") == "invalid_query"
    assert code(report="heatmap", a="", b="", resolution=4) == "invalid_query"
    assert code(report="heatmap", a="", b="", path="/a", group="/b/*") == "group_with_path"
    assert code(report="heatmap", a="path=/a", b="path=/b", group="b/*") == "invalid_group"  # checked though unused
    assert code(report="heatmap", a="", b="", **{"from": "soon"}) == "invalid_from"
    assert code(report="heatmap", a="", b="", **{"from": 10, "to": 5}) == "invalid_time_range"
    assert code(report="heatmap", a="x" * 5000, b="") == "invalid_slice"
    # A side's own range may be in order where the shared one is not.
    assert (
        compare(client, "p", report="elements", a="from=1;to=4", b="from=1;to=4", **{"from": 10, "to": 5}).status_code
        == 200
    )


def test_cost_is_the_reports_and_the_segments_rows(make_app: Any) -> None:
    """Sides without a segment over whole UTC days are their reports: no stored row is read. A side
    with a segment reads the range's custom events and the tagged sessions' events, not the rest."""
    app: Flask = make_app(rate_limit="100000 per second")
    client = app.test_client()
    bodies = []
    for s in range(40):
        ts = T0 + DAY + s * 1000
        found = [event("click", ts=ts + i, path="/p", selector="#x", x=5, y=5) for i in range(15)]
        if s < 3:
            found.append(event("custom", ts=ts, path="/other", name="exp", props={"v": "B"}))
        elif s < 6:
            found.append(event("custom", ts=ts, path="/other", name="exp", props={"v": "A"}))
        bodies.append(batch(*found, session_id=f"z{s}"))
    project = ingest_all(client, bodies)
    compare(client, project, report="elements", a="", b="")  # rage clicks and signals settled first
    tally = app.extensions["heat_collector"].repository.tally
    days = {"from": T0, "to": T0 + 3 * DAY - 1, "path": "/p"}
    for report in ("heatmap", "elements", "scrollmap"):
        before = tally.events
        plain = compare(client, project, report=report, a=f"to={T0 + 2 * DAY - 1}", b="", **days)
        assert plain.status_code == 200 and plain.get_json()["b"]["sessions"] == 40
        assert tally.events == before, report
        before = tally.events
        tagged = compare(client, project, report=report, a="segment=custom:exp.v=B", b="", **days).get_json()
        assert tagged["a"]["sessions"] == tagged["a"]["segmentSessions"] == 3
        # 6 custom events in the range, then the 3 tagged sessions' 15 clicks on /p
        assert tally.events - before <= 6 + 3 * 15, report
