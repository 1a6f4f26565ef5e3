"""Property tests: the HTTP answers of heatmap, events and sessions equal tests/oracle.py's.

One seeded scenario (several sessions, three awkward paths, mixed viewport buckets, outliers,
moves with negative offsets, dropped inputs, retried batches, ts spread over five days) is posted
through ``/ingest``; then many random queries are compared with the oracle. Set
``HEAT_TEST_ORACLE_SEED`` to explore other scenarios.
"""

from __future__ import annotations

import copy
import os
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
from flask.testing import FlaskClient

from flask_heat_collector.aggregates import MONTH_BASE

from . import oracle
from .helpers import API, batch, event, ingest, ingest_all

SEED = int(os.environ.get("HEAT_TEST_ORACLE_SEED", "20250106"))
BASE = 1_736_121_600_000  # 2025-01-06T00:00:00Z: a day boundary, safely before "now"
HOUR = 3_600_000
DAY = 24 * HOUR
SPAN = 5 * DAY
# 1,000 characters of CJK, and two paths that differ only by a trailing space.
CJK_PATH = "/" + "".join(chr(0x4E00 + (i * 37) % 20_000) for i in range(999))
PATHS = ("/docs", "/docs ", CJK_PATH)
# (viewport w, viewport h, meta.viewportBucket or None) -> the row's bucket in the comment.
VIEWPORTS: list[tuple[int, int, str | None]] = [
    (390, 844, None),  # 400x800
    (390, 844, "390x844"),  # 390x844
    (1280, 720, None),  # 1300x700
    (1280, 800, None),  # 1300x800
    (1300, 900, None),  # 1300x900
    (1250, 650, None),  # 1300x700: JS rounds 12.5 and 6.5 up
    (1300, 850, "0x850"),  # invalid override -> 1300x900
    (1920, 1080, None),  # 1900x1100
    (1920, 1080, "1920x1080"),  # 1920x1080
    (1280, 720, "1280x720"),  # 1280x720
    (1280, 720, "1280x0"),  # invalid override -> 1300x700
    (1920, 1080, "wide"),  # invalid override -> 1900x1100
    (1320, 760, None),  # 1300x800: a third exact width in band 1300
    (1366, 768, None),  # 1400x800
    (1440, 900, None),  # 1400x900: band 1400 holds two exact widths
]
VIEWPORT_WEIGHTS = [3, 2, 4, 3, 2, 2, 1, 3, 2, 2, 1, 1, 2, 2, 2]
ANCHORS = ["left", "center", "scale"]
KINDS = ["click", "move", "scroll", "pageview", "custom", "input", "keyboard"]
KIND_WEIGHTS = [36, 6, 14, 10, 8, 12, 6]
RESOLUTIONS = [8, 16, 32, 64, 128, 256, 1024, 100, 37, 1000]
BUCKET_PARAMS = ["1300x800", "390x844", "400x800", "1920x1080", "1280x720", "1900x1100", "777x500"]
HEATMAP_META = (
    "resolution",
    "viewport",
    "renderHeight",
    "total",
    "plotted",
    "ignored",
    "otherViewports",
    "requestedType",
    "resolvedType",
    "bucket",
    "plottableTypes",
    "typeBreakdown",
    "anchor",
)
EVENT_FIELDS = ("id", "eventId", "sessionId", "type", "ts", "path", "selector", "x", "y", "scrollDepth", "data")


@dataclass
class Scenario:
    """The ingest bodies in posting order, and time windows where two buckets tie on purpose."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    tie_windows: list[tuple[str, int, int]] = field(default_factory=list)  # (path, from, to)

    def __repr__(self) -> str:
        return f"<Scenario seed={SEED}: {len(self.bodies)} bodies>"


class Generator:
    """Builds one seeded scenario of SDK events."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.count = 0
        self.last_ts = BASE

    def event_id(self) -> str:
        self.count += 1
        return f"e{self.count:04d}"

    def ts(self) -> int:
        rng = self.rng
        roll = rng.random()
        if roll < 0.1:  # exactly on (or 1 ms around) an hour or day boundary
            value = BASE + rng.randrange(0, 5 * 24 + 1) * HOUR + rng.choice([-1, 0, 0, 1])
        elif roll < 0.18:  # the same ts as the previous event: ties in ordering
            value = self.last_ts
        else:
            value = BASE + rng.randrange(0, SPAN)
        self.last_ts = value
        return value

    def coord(self, limit: float, *, vertical: bool = False) -> float:
        rng = self.rng
        roll = rng.random()
        if roll < 0.6:
            return rng.randint(0, int(limit))
        if roll < 0.72:
            return rng.randint(0, int(limit)) + 0.5  # JS rounds halves up
        if roll < 0.8:
            return round(rng.uniform(0, limit), 3)
        if roll < 0.88:
            return rng.choice([-0.5, -2.5, -1, -40, -1000.4, -0.49])
        if roll < 0.95:
            return rng.randint(int(limit), int(limit) * 3)  # beyond the viewport
        if vertical:
            return rng.choice([10_000_000, 10_000_000, -10_000_000, 9_999_999.5])
        return rng.choice([10_000_000, -10_000_000])

    def one(self, kind: str, path: str) -> dict[str, Any]:
        rng = self.rng
        w, h, override = rng.choices(VIEWPORTS, VIEWPORT_WEIGHTS)[0]
        fields: dict[str, Any] = {"eventId": self.event_id()}
        if override is not None:
            fields["meta"] = {"viewportBucket": override, "text": "scrubbed"}
        if kind == "click":
            fields.update(
                x=self.coord(w), y=self.coord(h * 2, vertical=True), selector=rng.choice(["#a", "#b", "nav a"])
            )
        elif kind == "move":
            points = []
            for _ in range(rng.choice([1, 2, 3, 5, 8, 13, 21, 34, 50])):
                offset: float = rng.randint(-3000, 3000)
                roll = rng.random()
                if roll < 0.1:
                    offset += 0.5
                elif roll < 0.15:
                    offset = rng.choice([-1, 1]) * rng.randint(HOUR // 2, 3 * HOUR)
                points.append({"x": self.coord(w), "y": self.coord(h * 2, vertical=True), "tsOffset": offset})
            fields["points"] = points
        elif kind == "scroll":
            depth = rng.choice([0, 12.5, 33.3, 50, 99.5, 100, 100.4, 150, 2500, 10_000, rng.uniform(0, 100)])
            fields.update(scrollY=rng.randint(0, 5000), scrollDepthPct=depth)
        elif kind == "input":
            fields["masked"] = rng.choice(["***", "***", "", "abc", "a*c"])
        return event(kind, ts=self.ts(), path=path, w=w, h=h, **fields)

    def body(self, session: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        stamps = [e["ts"] for e in events]
        return batch(*events, session_id=session, started_at=min(stamps), last_seen_at=max(stamps))

    def scenario(self) -> Scenario:
        rng = self.rng
        out = Scenario()
        sessions = [f"s-{i}" for i in range(6)]
        by_session: dict[str, list[dict[str, Any]]] = {s: [] for s in sessions}
        for number in range(20):
            session = sessions[number % len(sessions)] if number < len(sessions) else rng.choice(sessions)
            events = [
                self.one(rng.choices(KINDS, KIND_WEIGHTS)[0], rng.choice(PATHS)) for _ in range(rng.randint(6, 24))
            ]
            if by_session[session] and number % 5 == 0:
                # Part of an earlier batch again (a partial retry), and a click that reuses an
                # earlier eventId with other content: the first stored row wins.
                earlier = rng.choice(by_session[session])["events"]
                events[1:1] = copy.deepcopy(rng.sample(earlier, min(3, len(earlier))))
                clicks = [e for b in by_session[session] for e in b["events"] if e["type"] == "click"]
                if clicks:
                    events.append(dict(self.one("click", rng.choice(PATHS)), eventId=rng.choice(clicks)["eventId"]))
            body = self.body(session, events)
            by_session[session].append(body)
            out.bodies.append(body)
            if number in (6, 15):
                out.bodies.append(copy.deepcopy(out.bodies[rng.randrange(0, len(out.bodies) - 1)]))  # a retry
        self.tie_probes(out)
        return out

    def tie_probes(self, out: Scenario) -> None:
        """Two rows of different buckets in a window; the one stored first has the later ts."""
        probes = [
            ("/docs", ("click", 1280, 800, None), ("click", 1920, 1080, "1920x1080")),
            (CJK_PATH, ("click", 390, 844, "390x844"), ("click", 390, 844, None)),
            ("/docs ", ("click", 1250, 650, None), ("click", 1300, 850, "0x850")),
            ("/docs", ("pageview", 1920, 1080, None), ("click", 1280, 800, None)),
            (CJK_PATH, ("move", 1920, 1080, None), ("scroll", 390, 844, None)),
        ]
        for number, (path, first, second) in enumerate(probes):
            start = BASE + number * DAY + 7 * HOUR + 1234
            pair = []
            for (kind, w, h, override), ts in ((first, start + 7), (second, start)):
                fields: dict[str, Any] = {"eventId": self.event_id()}
                if override:
                    fields["meta"] = {"viewportBucket": override}
                if kind == "click":
                    fields.update(x=w / 3, y=h / 2)
                if kind == "move":
                    fields["points"] = [{"x": 10, "y": 20, "tsOffset": 0}]
                pair.append(event(kind, ts=ts, path=path, w=w, h=h, **fields))
            out.bodies.append(self.body(self.rng.choice(["s-0", "s-1", "s-2"]), pair))
            out.tie_windows.append((path, start, start + 7))


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def random_window(rng: random.Random, rows: list[oracle.Row]) -> tuple[dict[str, Any], int | None, int | None]:
    """Query params for from/to and the ms they stand for (``None`` when not sent)."""
    mode = rng.choice(["none", "from", "to", "random", "random", "aligned", "aligned", "dates", "narrow", "days"])
    low, high = BASE - 2 * HOUR, BASE + SPAN + 2 * HOUR
    start: int | None
    end: int | None
    if mode == "none":
        return {}, None, None
    if mode == "from":
        start = rng.randint(low, high)
        return {"from": start}, start, None
    if mode == "to":
        end = rng.randint(low, high)
        return {"to": end}, None, end
    if mode == "random":
        start, end = sorted((rng.randint(low, high), rng.randint(low, high)))
    elif mode in ("aligned", "dates"):
        first, second = sorted(rng.sample(range(-1, 5 * 24 + 2), 2))
        start, end = BASE + first * HOUR, BASE + second * HOUR
        if mode == "dates":
            return {"from": iso(start), "to": iso(end)}, start, end
        start += rng.choice([-1, 0, 0, 1])
        end += rng.choice([-1, 0, 0, 1])
    elif mode == "narrow":
        anchor = rng.choice(rows).ts
        start, end = anchor - rng.randint(0, 5), anchor + rng.choice([0, 1, 60_000, HOUR, 3 * HOUR])
    else:
        day = rng.randrange(0, 5)
        start, end = BASE + day * DAY, BASE + (day + rng.randint(1, 2)) * DAY - rng.choice([0, 1])
    return {"from": start, "to": end}, start, end


def short(params: dict[str, Any]) -> dict[str, Any]:
    """Params with the 1,000-character path abbreviated, for failure messages."""
    return {k: ("<CJK_PATH>" if v == CJK_PATH else v) for k, v in params.items()}


def heatmap_diff(got: dict[str, Any], want: dict[str, Any]) -> list[str]:
    """What differs between the API's heatmap body and the oracle's, readably."""
    diffs: list[str] = []
    have, need = got["meta"], want["meta"]
    for name in HEATMAP_META:
        if have.get(name, "<missing>") != need[name]:
            diffs.append(f"meta.{name}: got {have.get(name, '<missing>')!r}, want {need[name]!r}")
    cell = have.get("cell")
    side = need["cell"]["w"]
    if not (isinstance(cell, dict) and all(cell.get(k) == pytest.approx(side, rel=1e-9) for k in ("w", "h"))):
        diffs.append(f"meta.cell: got {cell!r}, want {need['cell']!r}")
    if ("warning" in have) != ("warning" in need):
        diffs.append(f"meta.warning: got {have.get('warning')!r}, want one: {'warning' in need}")
    got_points = Counter((p["x"], p["y"], p["value"]) for p in got["points"])
    want_points = Counter((p["x"], p["y"], p["value"]) for p in want["points"])
    if got_points != want_points:
        extra, missing = sorted((got_points - want_points).elements()), sorted((want_points - got_points).elements())
        diffs.append(
            f"points (x, y, value): {len(got['points'])} got, {len(want['points'])} wanted; "
            f"unexpected {extra[:6]}{'...' if len(extra) > 6 else ''}, "
            f"missing {missing[:6]}{'...' if len(missing) > 6 else ''}"
        )
    elif [(p["x"], p["y"]) for p in got["points"]] != [(p["x"], p["y"]) for p in want["points"]]:
        diffs.append("points: right cells, but not ordered by (cy, cx)")
    return diffs


def report(kind: str, failures: list[str], asked: int) -> str:
    shown = "\n\n".join(failures[:8])
    more = f"\n\n... and {len(failures) - 8} more" if len(failures) > 8 else ""
    return f"{len(failures)} of {asked} {kind} queries differ from the oracle (seed {SEED}):\n\n{shown}{more}"


def get(client: FlaskClient, url: str, params: dict[str, Any]) -> dict[str, Any]:
    response = client.get(url, query_string=params, headers=API)
    assert response.status_code == 200, f"{url} {short(params)} -> {response.status_code} {response.get_json()}"
    body: dict[str, Any] = response.get_json()
    return body


@pytest.fixture(scope="module")
def scenario() -> Scenario:
    return Generator(SEED).scenario()


def test_scenario_is_what_the_tests_claim(scenario: Scenario) -> None:
    """The generated data holds the cases the property tests are meant to cover."""
    rows = oracle.stored_rows(scenario.bodies)
    events = [e for b in scenario.bodies for e in b["events"]]
    assert 250 <= len(rows) <= 1000
    assert {r.path for r in rows} == set(PATHS) and len(CJK_PATH) == 1000
    assert {r.bucket[0] for r in rows} >= {390, 400, 1280, 1300, 1900, 1920}
    assert any(r.y == 10_000_000 for r in rows) and any(r.x is not None and r.x < 0 for r in rows)
    assert any(r.scroll_depth is not None and r.scroll_depth > 100 for r in rows)
    assert any(oracle.is_dropped(e) for e in events) and any(e.get("masked") == "***" for e in events)
    assert len(events) > len({e["eventId"] for e in events})  # retries and reused ids
    assert max(r.ts for r in rows) - min(r.ts for r in rows) > 4 * DAY
    assert len(oracle.session_event_counts(rows)) == 6


def test_heatmap_matches_oracle(client: FlaskClient, scenario: Scenario) -> None:
    """~70 random heatmap queries answer exactly what the oracle computes."""
    project = ingest_all(client, scenario.bodies)
    rows = oracle.stored_rows(scenario.bodies)
    rng = random.Random(SEED + 1)
    queries: list[dict[str, Any]] = []
    for _ in range(60):
        params, _, _ = random_window(rng, rows)
        if rng.random() < 0.6:
            params["path"] = rng.choice([*PATHS, "/docs  "])
        if rng.random() < 0.65:
            params["type"] = rng.choice(["all", "all", "click", "move", "scroll", "pageview"])
        params["resolution"] = rng.choice(RESOLUTIONS)
        if rng.random() < 0.25:
            params["viewportBucket"] = rng.choice(BUCKET_PARAMS)
        if rng.random() < 0.5:
            params["viewports"] = rng.choice(["width", "all"])
        if rng.random() < 0.7:
            params["anchor"] = rng.choice(ANCHORS)
        queries.append(params)
    for path, start, end in scenario.tie_windows:
        for kind in (None, "all"):
            params = {"from": start, "to": end, "path": path, "resolution": rng.choice(RESOLUTIONS)}
            if kind:
                params["type"] = kind
            if rng.random() < 0.3:
                params["viewports"] = "all"
            queries.append(params)

    failures: list[str] = []
    ties = others = 0
    for params in queries:
        want = check_heatmap(client, project, rows, params, failures)
        others += bool(want["meta"]["otherViewports"])
        if "viewportBucket" not in params:
            ts_from, ts_to = window_bounds(params)
            matched, _ = oracle.heatmap_rows(
                rows, path=params.get("path"), ts_from=ts_from, ts_to=ts_to, type=params.get("type")
            )
            ties += oracle.bucket_tied(matched)
    assert ties >= 8 and others >= 15, (ties, others)  # the scenario exercises the tie-break and the band
    assert not failures, report("heatmap", failures, len(queries))


def test_heatmap_matches_oracle_after_compaction(client: FlaskClient, scenario: Scenario) -> None:
    """Compacted and rolled into month pieces (the scenario's month is over), random ranges, some
    holding whole months, some inside one, answer what the oracle computes."""
    project = ingest_all(client, scenario.bodies)
    result = client.application.test_cli_runner().invoke(args=["heat", "compact"])
    assert result.exit_code == 0, result.output
    repo = client.application.extensions["heat_collector"].repository
    january = (BASE // DAY - 5, BASE // DAY + 25)
    read = repo.read(lambda reader: reader.aggregates(project, None, january))
    assert read and all(piece.day == MONTH_BASE + january[0] for piece in read)  # one month piece per key
    rows = oracle.stored_rows(scenario.bodies)
    rng = random.Random(SEED + 7)
    queries: list[dict[str, Any]] = []
    for n in range(36):
        if n % 3:
            params, _, _ = random_window(rng, rows)
        else:  # around whole months: from up to two months before, to up to two months after
            start, end = BASE - rng.randint(0, 60 * DAY), BASE + SPAN + rng.randint(0, 60 * DAY)
            params = {"from": start, "to": end} if n % 2 else {"from": 0, "to": end}
        if rng.random() < 0.5:
            params["path"] = rng.choice(PATHS)
        params["type"] = rng.choice(["all", "click", "move", "scroll"])
        params["resolution"] = rng.choice([8, 16, 32, 64, 128, 100])
        params["anchor"] = rng.choice(ANCHORS)
        if rng.random() < 0.3:
            params["viewports"] = "all"
        queries.append(params)
    failures: list[str] = []
    for params in queries:
        check_heatmap(client, project, rows, params, failures)
    assert not failures, report("heatmap", failures, len(queries))


def check_heatmap(
    client: FlaskClient, project: str, rows: list[oracle.Row], params: dict[str, Any], failures: list[str]
) -> dict[str, Any]:
    """The oracle's heatmap for ``params``; where the API's answer differs, a failure is appended."""
    got = get(client, f"/api/projects/{project}/heatmap", params)
    ts_from, ts_to = window_bounds(params)
    want = oracle.heatmap(
        rows,
        path=params.get("path"),
        ts_from=ts_from,
        ts_to=ts_to,
        type=params.get("type"),
        resolution=params["resolution"],
        viewport_bucket=params.get("viewportBucket"),
        viewports=params.get("viewports", "width"),
        anchor=params.get("anchor", "left"),
    )
    diffs = heatmap_diff(got, want)
    if diffs:
        failures.append(f"params {short(params)}:\n  " + "\n  ".join(diffs))
    return want


def window_bounds(params: dict[str, Any]) -> tuple[int, int]:
    """The window's ms: from 0 and up to now where the params leave an end open."""
    return window_ms(params, "from") or 0, window_ms(params, "to") or int(time.time() * 1000)


def window_ms(params: dict[str, Any], name: str) -> int | None:
    """The ms a from/to param stands for (ISO dates in the params are whole seconds, UTC)."""
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, int):
        return value
    return int(datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()) * 1000


def test_events_match_oracle(client: FlaskClient, scenario: Scenario) -> None:
    """~30 random pages of the events list: same rows, same order (ts, then storage order)."""
    project = ingest_all(client, scenario.bodies)
    rows = oracle.stored_rows(scenario.bodies)
    rng = random.Random(SEED + 2)
    failures: list[str] = []
    asked = 30
    for _ in range(asked):
        params, start, end = random_window(rng, rows)
        if rng.random() < 0.5:
            params["path"] = rng.choice(PATHS)
        if rng.random() < 0.6:
            params["type"] = rng.choice(["all", "click", "move", "scroll", "pageview", "custom", "input", "keyboard"])
        params["limit"] = rng.choice([1, 7, 50, 200, 1000])
        params["offset"] = rng.choice([0, 0, 3, 40, rng.randrange(0, len(rows))])
        body = get(client, f"/api/projects/{project}/events", params)
        want = oracle.events_page(
            rows,
            path=params.get("path"),
            ts_from=start,
            ts_to=end,
            type=params.get("type"),
            limit=params["limit"],
            offset=params["offset"],
        )
        got = [{k: (e.get(k) or None) if k == "data" else e.get(k) for k in EVENT_FIELDS} for e in body["events"]]
        if got != want:
            failures.append(f"params {short(params)}:\n  {events_diff(got, want)}")
    assert not failures, report("events", failures, asked)


def events_diff(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> str:
    """The first difference between two event pages."""
    if len(got) != len(want):
        return f"{len(got)} events, want {len(want)}; first ids got {[e['id'] for e in got[:5]]}, want " + str(
            [e["id"] for e in want[:5]]
        )
    for index, (have, need) in enumerate(zip(got, want, strict=True)):
        if have != need:
            fields = {k: (have[k], need[k]) for k in EVENT_FIELDS if have[k] != need[k]}
            return f"item {index} (got, want): {short(fields)}"
    return "?"


def test_session_event_counts_match_oracle(client: FlaskClient, scenario: Scenario) -> None:
    """Each session's eventCount is its stored rows: a move counts its points, retries and drops do not."""
    project = ingest_all(client, scenario.bodies)
    rows = oracle.stored_rows(scenario.bodies)
    body = get(client, f"/api/projects/{project}/sessions", {"limit": 200})
    got = {s["sessionId"]: s["eventCount"] for s in body["sessions"]}
    assert got == oracle.session_event_counts(rows)


# -- hand-computed (no oracle) -------------------------------------------------------------


def test_square_cells_and_width_band_by_hand(client: FlaskClient) -> None:
    """Frame 1000x800 at resolution 10: cells are 100x100 whatever the outliers; other widths are set aside."""
    project = ingest(
        client,
        event("click", x=150, y=250, w=1000, h=800),
        event("click", x=160, y=290, w=1000, h=800),  # same cell as (150, 250)
        event("click", x=-30, y=-40, w=1000, h=800),  # clamped into cell (0, 0)
        event("click", x=50, y=10_000_000, w=1000, h=800),  # far down, in a cell of its own
        event("click", x=120, y=30, w=400, h=800),  # bucket 400x800: another width
        event("scroll", scrollDepthPct=50, w=1000, h=800),
    )
    url = f"/api/projects/{project}/heatmap"
    body = get(client, url, {"resolution": 10})
    assert {(p["x"], p["y"]): p["value"] for p in body["points"]} == {
        (50, 50): 1,
        (150, 250): 2,
        (50, 10_000_050): 1,
    }
    meta = body["meta"]
    assert meta["viewport"] == {"w": 1000, "h": 800} and meta["bucket"] == "1000x800"
    assert meta["cell"] == {"w": 100, "h": 100}
    assert meta["renderHeight"] == 10_000_000
    assert (meta["total"], meta["plotted"], meta["ignored"]) == (5, 4, 1)
    assert meta["otherViewports"] == {"400": 1}
    assert meta["typeBreakdown"] == {"click": 5}

    wide = get(client, url, {"resolution": 10, "viewports": "all"})
    assert {(p["x"], p["y"]): p["value"] for p in wide["points"]} == {
        (50, 50): 1,
        (150, 50): 1,
        (150, 250): 2,
        (50, 10_000_050): 1,
    }
    assert (wide["meta"]["plotted"], wide["meta"]["ignored"]) == (5, 0)

    # The scroll (50% of renderHeight 10,000,000) plots at x=0 in the row of y=5,000,000.
    everything = get(client, url, {"resolution": 10, "type": "all"})
    points = {(p["x"], p["y"]): p["value"] for p in everything["points"]}
    assert points[(50, 5_000_050)] == 1
    assert (everything["meta"]["total"], everything["meta"]["plotted"]) == (6, 5)
    assert everything["meta"]["typeBreakdown"] == {"click": 5, "scroll": 1}


def test_oracle_by_hand() -> None:
    """The oracle itself on a few hand-computed rows (runs once, needs no backend)."""
    bodies = [
        batch(
            event("click", eventId="a", x=150.5, y=-2.5, w=1250, h=650),
            event(
                "move",
                eventId="m",
                ts=1000,
                points=[{"x": 1, "y": 2, "tsOffset": -0.5}, {"x": 3, "y": 4, "tsOffset": 7}],
            ),
            event("input", eventId="i", masked="a*"),
            event("click", eventId="b", x=10, y=10, w=390, h=844, meta={"viewportBucket": "390x844"}),
        ),
        batch(event("click", eventId="a", x=999, y=999)),  # reused id: the first row wins
    ]
    rows = oracle.stored_rows(bodies)
    assert [(r.event_id, r.point_index, r.ts, r.x, r.y, r.bucket) for r in rows] == [
        ("a", 0, 1_795_672_217_000, 151, -2, (1300, 700)),
        ("m", 0, 1000, 1, 2, (1200, 800)),
        ("m", 1, 1007, 3, 4, (1200, 800)),
        ("b", 0, 1_795_672_217_000, 10, 10, (390, 844)),
    ]
    assert [r.view_w for r in rows] == [1250, 1200, 1200, 390]
    # One click each in 1300x700 and 390x844: a tie, won by the row stored first; the frame is its
    # exact width, 1250 (not the bucket's 1300).
    body = oracle.heatmap(rows, ts_to=2 * 10**12, resolution=13)
    assert body["meta"]["bucket"] == "1300x700" and body["meta"]["otherViewports"] == {"390": 1}
    assert body["meta"]["viewport"] == {"w": 1250, "h": 700}
    assert body["points"] == [{"x": 144, "y": 48, "value": 1}]  # side 1250 / 13: cell (1, 0)
    assert oracle.session_event_counts(rows) == {"s-1": 4}
