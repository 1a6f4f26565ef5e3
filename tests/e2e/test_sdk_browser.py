"""The real heat SDK (npm, 0.2.6) in Chromium, on another origin, against gunicorn with 3 workers.

One module-scoped run drives the page (moves, clicks, scrolling, typing a secret, identify, track,
flush); the tests then check what the query APIs, the database file and the logs hold.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .support import (
    ARTIFACTS,
    QUERY_KEY,
    Collector,
    init_script,
    register_project,
    rows_of,
    run_collector,
    stored_rows,
    wait_until,
)

pytestmark = pytest.mark.e2e

PAGE_PATH = "/index.html"
CLICKED = ["#buy", "#cart", "#signup", "#buy"]
VIEWPORT = {"width": 1300, "height": 700}  # a whole viewport bucket, so heatmap pixels are page pixels


@dataclass
class Run:
    collector: Collector
    tmp: Path
    page: Any
    project_id: str
    secret: str
    bodies: list[dict[str, Any]]
    answers: list[dict[str, Any]]
    ingest_url: str
    site: str


def _drive(page: Any, secret: str) -> None:
    """What a visitor does: move, click, type into a field, scroll, then the app identifies and tracks."""
    page.mouse.move(60, 120)
    page.mouse.move(1200, 160, steps=12)
    page.mouse.move(640, 420, steps=12)
    for selector in CLICKED:
        page.click(selector)
    page.click("#nickname")
    page.keyboard.type(secret)
    page.keyboard.press("Tab")  # blur: the SDK records focus, change and blur
    assert page.input_value("#nickname") == secret
    page.mouse.wheel(0, 600)
    page.wait_for_function("window.scrollY >= 500")
    page.wait_for_timeout(300)  # the SDK keeps one scroll event per 200 ms
    page.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    page.wait_for_function("window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 1")
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
    page.mouse.move(300, 300, steps=8)
    page.evaluate(
        """async () => {
            window.tracker.identify("user-e2e", { plan: "pro", beta: true });
            window.tracker.track("signup", { plan: "pro", seats: 3 });
            await window.tracker.flush();
        }"""
    )


@pytest.fixture(scope="module")
def run(browser: Any, site: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("sdk-browser")
    secret = f"hunter2-{uuid.uuid4().hex}"
    project_key = f"e2e-{uuid.uuid4().hex[:12]}"
    with run_collector(tmp, HEAT_VIEWER_ENABLED="true") as collector:
        project_id = register_project(collector.env, project_key)
        ingest_url = f"{collector.url}/ingest"
        context = browser.new_context(viewport=VIEWPORT)
        try:
            page = context.new_page()
            bodies: list[dict[str, Any]] = []
            page.on(
                "request",
                lambda r: (
                    bodies.append(json.loads(r.post_data)) if r.url == ingest_url and r.method == "POST" else None
                ),
            )
            config = {"endpoint": ingest_url, "projectKey": project_key, "flushIntervalMs": 2000}
            page.add_init_script(script=init_script(config))
            page.goto(f"{site}{PAGE_PATH}")
            page.wait_for_function("window.heatReady === true")
            _drive(page, secret)
            wait_until(
                lambda: (
                    page.evaluate("window.tracker.queue.length + window.tracker.movePoints.length") == 0
                    and page.evaluate("window.__ingest.length") == len(bodies)
                ),
                30,
                "the SDK did not deliver its queue",
                page=page,
            )
            answers = page.evaluate("window.__ingest")
            yield Run(collector, tmp, page, project_id, secret, bodies, answers, ingest_url, site)
        finally:
            context.close()


def test_every_batch_was_accepted(run: Run) -> None:
    assert run.bodies, "the SDK sent nothing"
    # Each answer was readable by the page: CORS let the other origin through.
    assert [a["status"] for a in run.answers] == [200] * len(run.bodies)
    answers = [a["body"] for a in run.answers]
    assert {a["projectId"] for a in answers} == {run.project_id}
    assert sum(a["dropped"] for a in answers) == 0
    assert all(b["sdk"] == {"name": "@m-software-engineering/heat-sdk", "version": "0.2.6"} for b in run.bodies)


def test_every_event_is_stored_exactly_once(run: Run) -> None:
    events = run.collector.all_events(run.project_id)
    stored = stored_rows(events)
    assert len(stored) == len(set(stored))
    assert set(stored) == set(rows_of(run.bodies))
    assert sum(a["body"]["accepted"] for a in run.answers) == len(stored)
    types = Counter(e["type"] for e in events)
    assert types["click"] == len(CLICKED) + 1  # the tiles and the nickname field
    assert types["pageview"] == 1
    assert types["custom"] == 1
    assert types["move"] > 0
    assert types["scroll"] > 0
    assert types["keyboard"] >= len(run.secret)
    assert {e["data"]["action"] for e in events if e["type"] == "input"} == {"focus", "change", "blur"}
    assert all(e["path"] == PAGE_PATH for e in events)


def test_heatmap_has_clicks_and_moves(run: Run) -> None:
    pid = run.project_id
    clicks = run.collector.api_json(f"/projects/{pid}/heatmap", path=PAGE_PATH, type="click")
    assert clicks["points"]
    assert clicks["meta"]["typeBreakdown"] == {"click": len(CLICKED) + 1}
    assert clicks["meta"]["plotted"] == len(CLICKED) + 1
    assert clicks["meta"]["resolvedType"] == "click"
    assert clicks["meta"]["bucket"] == f"{VIEWPORT['width']}x{VIEWPORT['height']}"
    moves = run.collector.api_json(f"/projects/{pid}/heatmap", path=PAGE_PATH, type="move")
    move_rows = [key for key, event in rows_of(run.bodies).items() if event["type"] == "move"]
    assert moves["points"]
    assert moves["meta"]["total"] == moves["meta"]["plotted"] == len(move_rows)
    scrolls = run.collector.api_json(f"/projects/{pid}/heatmap", path=PAGE_PATH, type="scroll")
    assert scrolls["meta"]["plotted"] > 0
    # Scrolled to the bottom: the deepest scroll row plots in the last cell row.
    assert max(p["y"] for p in scrolls["points"]) > scrolls["meta"]["renderHeight"] * 0.9


def test_session_user_and_custom_event(run: Run) -> None:
    pid = run.project_id
    session_id = run.bodies[0]["session"]["id"]
    assert {b["session"]["id"] for b in run.bodies} == {session_id}
    sessions = run.collector.api_json(f"/projects/{pid}/sessions")["sessions"]
    assert len(sessions) == 1
    summary = sessions[0]
    assert summary["sessionId"] == session_id
    assert summary["userId"]
    assert summary["firstPath"] == PAGE_PATH
    assert summary["eventCount"] == len(rows_of(run.bodies))

    detail = run.collector.api_json(f"/projects/{pid}/sessions/{session_id}", limit=1)
    assert detail["meta"]["found"] is True
    assert detail["session"]["userId"] == summary["userId"]
    assert "Chrome" in detail["session"]["userAgent"]
    assert detail["session"]["ipHash"] and "127.0.0.1" not in detail["session"]["ipHash"]

    custom = run.collector.api_json(f"/projects/{pid}/events", type="custom")["events"]
    assert [(e["data"]["name"], e["data"]["props"]) for e in custom] == [("signup", {"plan": "pro", "seats": 3})]
    assert custom[0]["userId"] == summary["userId"]

    # The user is known only from identify() on: the last batch carries it.
    assert run.bodies[-1]["user"] == {"id": "user-e2e", "traits": {"plan": "pro", "beta": True}}
    with sqlite3.connect(run.tmp / "heat.db") as db:
        users = db.execute("SELECT id, external_id, traits_json FROM users").fetchall()
    assert [(u[0], u[1], json.loads(u[2])) for u in users] == [
        (summary["userId"], "user-e2e", {"plan": "pro", "beta": True})
    ]


def test_cross_origin_preflight(run: Run) -> None:
    assert run.site.rsplit(":", 1)[1] != run.collector.url.rsplit(":", 1)[1]
    preflights = [row for row in run.collector.access() if row[1] == "OPTIONS" and row[2] == "/ingest"]
    assert preflights and all(row[3] == 204 for row in preflights)
    posts = [row for row in run.collector.access() if row[1] == "POST" and row[2] == "/ingest"]
    assert len(posts) == len(run.bodies)
    assert {row[4] for row in posts} == {a["body"]["requestId"] for a in run.answers}


def test_typed_secret_never_leaves_the_browser(run: Run) -> None:
    secret = run.secret
    pid = run.project_id
    session_id = run.bodies[0]["session"]["id"]
    inputs = [e for body in run.bodies for e in body["events"] if e["type"] == "input"]
    typed = [e for e in inputs if e["action"] in ("change", "blur")]
    assert typed and all(e["length"] == len(secret) and e["masked"] == "*" * 16 for e in typed)
    assert not any(secret in json.dumps(body) for body in run.bodies)

    # Every answer of the query API (a positive control shows the checks can see data).
    run.collector.all_events(pid)
    run.collector.api(f"/projects/{pid}/sessions")
    run.collector.api(f"/projects/{pid}/sessions/{session_id}", limit=500)
    run.collector.api(f"/sessions/{session_id}", limit=500)
    for kind in ("all", "click", "move", "scroll", "input", "keyboard"):
        run.collector.api(f"/projects/{pid}/heatmap", type=kind)
    run.collector.api("/metrics")
    answers = "\n".join(a.text for a in run.collector.answers)
    assert "signup" in answers and session_id in answers
    assert secret not in answers

    # The database: every row, and the raw bytes of the file and its WAL.
    with sqlite3.connect(run.tmp / "heat.db") as db:
        dump = "\n".join(db.iterdump())
    assert "user-e2e" in dump and secret not in dump
    raw = b"".join(path.read_bytes() for path in run.tmp.glob("heat.db*"))
    assert b"user-e2e" in raw
    assert secret.encode() not in raw
    assert secret.encode("utf-16-le") not in raw

    log = run.collector.log_text()
    assert pid in log
    assert secret not in log


def test_viewer_draws_the_heatmap(run: Run, browser: Any) -> None:
    collector = run.collector
    context = browser.new_context(viewport={"width": 1500, "height": 1000})
    try:
        page = context.new_page()
        requests: list[Any] = []
        page.on("request", lambda r: requests.append(r))
        page.goto(f"{collector.url}/viewer#key={QUERY_KEY}&project={run.project_id}")
        page.wait_for_function("() => document.body.dataset.heatmapPoints !== undefined")
        assert page.get_attribute("body", "data-heatmap-points") != "error", page.inner_text("#status")
        assert int(page.get_attribute("body", "data-heatmap-points") or 0) > 0
        assert "key=" not in page.url  # taken out of the address bar

        session_id = run.bodies[0]["session"]["id"]
        page.wait_for_function("() => document.getElementById('sessions-panel').dataset.state === 'ready'")
        rows = page.locator("#sessions tbody tr")
        assert rows.count() == 1
        assert rows.first.get_attribute("data-session-id") == session_id
        assert session_id in (rows.first.locator("td").first.get_attribute("title") or "")
        assert rows.first.locator("td").first.inner_text() == "user-e2e"  # the SDK's user id, not the internal one
        assert PAGE_PATH in rows.first.locator("td.paths").inner_text()
        assert page.input_value("#path") == PAGE_PATH
        # The page is on the test site's origin and HEAT_VIEWER_SITE_URL is not set here: the viewer
        # frames the collector's own /index.html, which answers 404, says so and draws on the grid.
        page.wait_for_function("() => document.body.dataset.frame === 'error'")
        assert "answered HTTP 404" in page.inner_text("#frame-note")
        assert "(click)" in page.inner_text("#status")
        assert _hot_pixels(page, "#heatmap") > 0

        for kind in ("move", "all"):
            page.select_option("#type", kind)
            page.wait_for_function(f"() => document.getElementById('status').textContent.includes('({kind})')")
            assert _hot_pixels(page, "#heatmap") > 0
        page.select_option("#resolution", "64")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('cells')")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "viewer.png"), full_page=True)

        api = [r for r in requests if r.url.startswith(f"{collector.url}/api/")]
        assert api and all(r.headers.get("x-api-key") == QUERY_KEY for r in api)
        others = {r.url.split("#")[0].removeprefix(collector.url) for r in requests if r not in api}
        scripts = {
            f"/viewer/static/{name}"
            for name in ("viewer.js", "viewer-frame.js", "viewer-export.js", "viewer-compare.js", "viewer-app.js")
        }
        assert others <= {"/viewer", "/viewer/static/viewer.css", PAGE_PATH, *scripts}

        # A wrong key shows the API's refusal, nothing else.
        page.goto(f"{collector.url}/viewer#key=wrong-key&project={run.project_id}")
        page.wait_for_function("() => document.getElementById('status').textContent.includes('invalid_api_key')")
        assert page.locator("#sessions tbody tr").count() == 0
    finally:
        context.close()


def test_heatmap_over_the_page_screenshot(run: Run) -> None:
    """The page the visitor used, with the collected heatmap drawn over it: build/e2e/heatmap.png."""
    page = run.page
    heatmap = run.collector.api_json(f"/projects/{run.project_id}/heatmap", path=PAGE_PATH, type="all")
    page.add_script_tag(url=f"{run.collector.url}/viewer/static/viewer.js")
    page.evaluate(
        """(heatmap) => {
            const canvas = document.getElementById("heat-overlay");
            window.HeatViewer.drawHeatmap(canvas, heatmap, { backdrop: false });
            canvas.style.width = canvas.width + "px";
            canvas.style.height = canvas.height + "px";
            // The typed value stays in the browser; keep it out of the picture (no events fired).
            document.getElementById("nickname").value = "";
            window.scrollTo(0, 0);
        }""",
        heatmap,
    )
    page.wait_for_function("window.scrollY === 0")
    # Heat where the visitor clicked: at the centre of every clicked tile.
    for selector in set(CLICKED):
        box = page.locator(selector).bounding_box()
        assert box is not None
        x, y = round(box["x"] + box["width"] / 2), round(box["y"] + box["height"] / 2)
        alpha = page.evaluate(
            "([x, y]) => document.getElementById('heat-overlay').getContext('2d').getImageData(x, y, 1, 1).data[3]",
            [x, y],
        )
        assert alpha > 0, f"no heat over {selector}"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / "heatmap.png"
    page.screenshot(path=str(target), full_page=True)
    assert target.stat().st_size > 10_000


def _hot_pixels(page: Any, selector: str) -> int:
    """Coloured pixels of a canvas (the backdrop and grid are near-grey; one session is a small sample,
    painted in muted colours, so "coloured" is a spread of more than 20 of 255)."""
    count: int = page.evaluate(
        """(selector) => {
            const canvas = document.querySelector(selector);
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let hot = 0;
            for (let i = 0; i < data.length; i += 4) {
                const r = data[i], g = data[i + 1], b = data[i + 2];
                if (Math.max(r, g, b) - Math.min(r, g, b) > 20) hot += 1;
            }
            return hot;
        }""",
        selector,
    )
    return count
