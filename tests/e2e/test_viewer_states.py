"""The viewer's panels in Chromium: loading, empty, error (with the request id) and recovery without a
reload; the project picker and an unknown project; the insights panel against the API; the scroll
reach view and its fold; the sessions list in the map's slice; the standalone collector's hint.

The shop app and its five seeded sessions are test_viewer.py's. Screenshots go to build/e2e/.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_heat_collector.wsgi import create_app

from ..helpers import Server
from .support import init_script, static_site
from .test_viewer import QUERY_KEY, Shop, _seed, _shop_app, settled, shot

# The fixtures, shared with test_viewer.py (re-exported by name, so pytest finds them here).
from .test_viewer import page as page
from .test_viewer import shop as shop

pytestmark = pytest.mark.e2e

REQUEST_ID = "e2e-request-0001"
NO_PROJECT = "00000000-0000-4000-8000-000000000000"


def api(shop: Shop, endpoint: str, **params: Any) -> Any:
    """A query-API answer of the shop's project."""
    query = urllib.parse.urlencode(params)
    url = f"{shop.server.url}/api/projects/{shop.project}{endpoint}?{query}"
    request = urllib.request.Request(url, headers={"x-api-key": QUERY_KEY})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def state_of(page: Any, panel: str) -> str:
    state: str = page.get_attribute(f"#{panel}-panel", "data-state")
    return state


def wait_state(page: Any, panel: str, state: str, timeout: float = 20_000) -> None:
    page.wait_for_function(
        "([panel, state]) => document.getElementById(panel + '-panel').dataset.state === state",
        arg=[panel, state],
        timeout=timeout,
    )


def server_error(route: Any) -> None:
    """A 500 as the collector answers it (SPEC 5)."""
    body = {"error": "Internal Server Error", "code": "heatmap_query_failed", "message": "The query failed."}
    route.fulfill(status=500, content_type="application/json", body=json.dumps({**body, "requestId": REQUEST_ID}))


def test_loading_state_while_the_map_is_read(shop: Shop, page: Any) -> None:
    page.goto(shop.viewer())
    settled(page)
    assert state_of(page, "map") == "ready" and "events plotted (click)" in page.inner_text("#status")
    held: list[Any] = []
    page.route(re.compile(r"/heatmap\?"), lambda route: held.append(route))
    page.select_option("#type", "move")
    wait_state(page, "map", "loading")
    page.wait_for_function("() => document.body.dataset.busy")
    # The old map and its status do not stay as if current: the status says what is loading and
    # the stage is dimmed; the panels that follow the map wait for it.
    assert page.inner_text("#status") == "Loading the move points map…"
    assert page.evaluate("getComputedStyle(document.getElementById('stage')).opacity") == "0.35"
    assert state_of(page, "elements") == "loading" and state_of(page, "insights") == "loading"
    assert page.is_hidden("#sample-note") and page.inner_text("#legend-max") == "max"
    shot(page, "viewer-loading.png")
    for route in held:
        route.continue_()
    page.unroute(re.compile(r"/heatmap\?"))
    settled(page)
    wait_state(page, "map", "ready")
    assert "events plotted (move)" in page.inner_text("#status")
    assert page.inner_text("#legend-unit").startswith("move points per cell")
    assert page.errors == []


def test_an_error_shows_its_request_id_and_the_panels_recover(shop: Shop, page: Any) -> None:
    page.route(re.compile(r"/heatmap\?"), server_error)
    page.route(re.compile(r"/sessions\?"), lambda route: route.abort())
    page.goto(shop.viewer())
    wait_state(page, "map", "error")
    wait_state(page, "sessions", "error")
    page.evaluate("window.__sameDocument = true")  # gone if the page were reloaded
    status = page.inner_text("#status")
    assert status.startswith("The map is not available: The query failed. (heatmap_query_failed; request id ")
    assert page.inner_text("#status .request-id") == REQUEST_ID
    assert "Trying again in" in status
    assert state_of(page, "elements") == "error" and REQUEST_ID in page.inner_text("#elements-status")
    assert page.inner_text("#sessions-status").startswith(
        "Sessions are not available: The collector cannot be reached."
    )
    assert page.locator("#sessions tbody tr").count() == 0
    # Nothing stale on the board: no map, no export.
    assert page.get_attribute("body", "data-heatmap-points") == "error" and page.is_disabled("#export")
    shot(page, "viewer-error.png")

    # The server comes back: every panel loads again by itself (a retry with a growing delay).
    page.unroute(re.compile(r"/heatmap\?"))
    page.unroute(re.compile(r"/sessions\?"))
    for panel in ("map", "elements", "insights", "sessions"):
        wait_state(page, panel, "ready", timeout=40_000)
    settled(page)
    assert page.evaluate("window.__sameDocument") is True
    assert "12 of 15 events plotted (click)" in page.inner_text("#status")
    assert page.locator("#sessions tbody tr").count() == 4  # those that visited "/"
    assert page.locator("#elements tbody tr").count() == 2
    shot(page, "viewer-recovered.png")
    # Only the browser's reports of the failed requests.
    assert all("Failed to load resource" in error for error in page.errors), page.errors


def test_the_scroll_reach_fails_and_recovers(shop: Shop, page: Any) -> None:
    failing = [True]
    page.route(re.compile(r"/scrollmap\?"), lambda route: server_error(route) if failing[0] else route.continue_())
    page.goto(shop.viewer("&view=scroll"))
    wait_state(page, "reach", "error")
    assert page.inner_text("#reach-status .request-id") == REQUEST_ID
    assert page.inner_text("#reach-status").startswith("The scroll reach is not available: The query failed.")
    assert page.locator("#reach tbody tr").count() == 0
    failing[0] = False
    wait_state(page, "reach", "ready", timeout=40_000)
    settled(page, "scroll")
    assert page.locator("#reach tbody tr").count() == 21
    assert all("Failed to load resource" in error for error in page.errors), page.errors


def test_project_picker_and_an_unknown_project(shop: Shop, page: Any) -> None:
    # Only the key: the projects come from GET /api/projects; the only one is chosen. The first
    # answer is a 500: the picker says so with the request id and asks again by itself.
    answers = iter([server_error])
    page.route(re.compile(r"/api/projects$"), lambda route: next(answers, lambda r: r.continue_())(route))
    page.goto(f"{shop.server.url}/viewer#key={QUERY_KEY}")
    wait_state(page, "projects", "error")
    assert page.inner_text("#status").startswith("The projects are not available: The query failed.")
    assert page.inner_text("#status .request-id") == REQUEST_ID
    wait_state(page, "projects", "ready")
    settled(page)
    assert page.get_attribute("body", "data-projects") == "1"
    assert page.input_value("#project-id") == shop.project
    option = page.inner_text(f"#project-id option[value='{shop.project}']")
    assert option == f"Default · last event 2026-11-26 · {shop.project}"
    assert f"project={shop.project}" in page.url

    # A mistyped id is "no such project", not an empty map.
    page.goto(f"{shop.server.url}/viewer#key={QUERY_KEY}&project={NO_PROJECT}")
    wait_state(page, "map", "notfound")
    assert page.inner_text("#status") == f"No such project: {NO_PROJECT}. Choose one from the list."
    assert page.input_value("#project-id") == NO_PROJECT
    assert "not a project this key may read" in page.inner_text(f"#project-id option[value='{NO_PROJECT}']")
    for panel in ("elements", "insights", "sessions"):
        assert state_of(page, panel) == "notfound"
    shot(page, "viewer-no-such-project.png")

    # Choosing the listed project loads it.
    page.select_option("#project-id", shop.project)
    settled(page)
    wait_state(page, "map", "ready")
    assert all("Failed to load resource" in error for error in page.errors), page.errors


def test_empty_states(shop: Shop, page: Any) -> None:
    page.goto(shop.viewer("&from=2020-01-01&to=2020-01-02"))
    settled(page)
    for panel in ("map", "insights", "elements", "sessions"):
        wait_state(page, panel, "empty")
    assert page.inner_text("#sessions-status") == "No sessions in this slice."
    assert page.inner_text("#elements-status") == "No clicks on elements here."
    assert page.inner_text("#status") == (
        "No events in this slice (every path, all widths, 2020-01-01 to 2020-01-02 (UTC)): nothing to draw."
    )
    assert page.is_hidden("#sample-note")  # no "small sample" of nothing
    counts = page.locator("#insights tbody tr td:nth-child(2)").all_inner_texts()
    assert counts == ["\u2013"] * 5 and page.inner_text("#insights-status") == "Choose a path to see its 5 signals."
    shot(page, "viewer-empty.png")
    assert page.errors == []


def test_words_units_and_dates(shop: Shop, page: Any) -> None:
    page.goto(shop.viewer())
    settled(page)
    # Every column and term is explained where it appears.
    for column in ("Rage", "Dead", "Error", "Clicks", "Sessions"):
        title = page.get_attribute(f"#elements-panel th:text-is('{column}')", "title")
        assert title, column
        assert page.is_visible(f"#elements-panel dl.caption dt:text-is('{column}')")
    assert "burst of 3 or more" in page.get_attribute("#elements-panel th:text-is('Rage')", "title")
    # One date format: ISO 8601 with the year, in UTC.
    assert page.inner_text("#sessions-panel th:nth-child(2)") == "Started (UTC)"
    started = page.locator("#sessions tbody tr td:nth-child(2)").all_inner_texts()
    assert started and all(re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", text) for text in started), started
    assert page.get_attribute("#from", "placeholder") == "YYYY-MM-DD"
    # The frame and the viewport are meta.viewport.w.
    meta = api(shop, "/heatmap", path="/")["meta"]
    expected = f"frame {meta['viewport']['w']} px wide (the width visitors had, bucket {meta['bucket']})"
    assert expected in page.inner_text("#status")
    assert page.get_attribute("body", "data-frame-width") == str(meta["viewport"]["w"])
    assert "(choose a device band)" in page.inner_text("#status")
    # With a band chosen, the status does not ask to choose one.
    page.select_option("#band", "tablet")
    settled(page)
    wait_state(page, "map", "ready")
    assert "(choose a device band)" not in page.inner_text("#status")
    # The page is dimmed under the heat, with a toggle.
    assert "dim" in page.get_attribute("#board", "class")
    page.uncheck("#dim-page")
    assert "dim" not in (page.get_attribute("#board", "class") or "")
    assert page.errors == []


def test_insights_panel_matches_the_api(shop: Shop, page: Any) -> None:
    page.goto(shop.viewer())
    settled(page)
    wait_state(page, "insights", "ready")
    (path,) = [p for p in api(shop, "/paths", q="/", limit=500)["paths"] if p["path"] == "/"]
    elements = api(shop, "/elements", path="/", limit=500)["elements"]
    rows = {
        row.get_attribute("data-signal"): [c.inner_text().strip() for c in row.locator("td").all()]
        for row in page.locator("#insights tbody tr").all()
    }
    expected = {
        "rage": path["rageClicks"],
        "dead": path["deadClicks"],
        "error": sum(e["errorClicks"] for e in elements),
        "quickback": path["quickBacks"],
        "scroll": path["excessiveScrolls"],
    }
    assert {name: int(row[1]) for name, row in rows.items()} == expected
    assert expected["rage"] == 4 and expected["dead"] > 0  # the fixture's burst on button#dead, its dead clicks
    assert rows["rage"][0] == "Rage clicks" and rows["rage"][2] == "button#dead 4"
    top_dead = sorted(elements, key=lambda e: -e["deadClicks"])[:3]
    assert rows["dead"][2].split("\n") == [f"{e['selector']} {e['deadClicks']}" for e in top_dead]
    assert "burst of 3 or more" in page.get_attribute("#insights tbody tr[data-signal='rage']", "title")
    shot(page, "viewer-insights.png")

    # "sessions" opens the sessions list filtered by the signal.
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/sessions?" in r.url else None)
    page.click("#insights tbody tr[data-signal='rage'] a.sessions-link")
    page.wait_for_function("() => document.getElementById('sessions-filter').hidden === false")
    wait_state(page, "sessions", "ready")
    assert "signal=rage" in requests[-1]
    with_rage = api(shop, "/sessions", signal="rage", order="desc", visitedPath="/")["sessions"]
    users = page.locator("#sessions tbody tr td:first-child").all_inner_texts()
    assert users == [s["externalUserId"] or "anonymous" for s in with_rage] == ["bob"]
    assert page.inner_text("#sessions tbody tr td:last-child") == "R4 D6"
    assert "signal=rage" in page.url
    page.click("#sessions-filter-clear")
    page.wait_for_function("() => document.querySelectorAll('#sessions tbody tr').length === 4")

    # "map" shows the signal's map type.
    page.click("#insights tbody tr[data-signal='dead'] a.map-link")
    settled(page)
    page.wait_for_function("() => document.getElementById('status').textContent.includes('(deadclick)')")
    assert page.input_value("#type") == "deadclick" and "type=deadclick" in page.url
    assert page.inner_text("#legend-unit").startswith("dead clicks per cell")
    assert page.errors == []


def test_scroll_type_is_the_scroll_reach_over_the_page(shop: Shop, page: Any) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(shop.viewer())
    settled(page)
    page.select_option("#type", "scroll")
    settled(page, "scroll")
    wait_state(page, "map", "ready")
    assert "view=scroll" in page.url and page.is_checked("input[name=view][value=scroll]")
    assert not any("type=scroll" in url for url in requests)  # no scroll dots at x = 0
    meta = api(shop, "/scrollmap", path="/")["meta"]
    page_height = round(meta["pageHeight"])
    fold = round(meta["foldPct"] / 100 * page_height)
    assert page.evaluate("document.getElementById('heatmap').height") == page_height
    assert f"the page is {page_height} px high" in page.inner_text("#status")
    assert f"({fold} px)" in page.inner_text("#status")
    # The fold line (#4a5568, dashed) is drawn on the fold's row, not 20 px off.
    fold_pixels = """(y) => {
        const c = document.getElementById("heatmap");
        const data = c.getContext("2d").getImageData(0, y, c.width, 1).data;
        let found = 0;
        for (let i = 0; i < data.length; i += 4)
            if (data[i] === 74 && data[i + 1] === 85 && data[i + 2] === 104 && data[i + 3] === 255) found += 1;
        return found;
    }"""
    assert page.evaluate(fold_pixels, fold) > 100
    assert page.evaluate(fold_pixels, fold - 20) == 0 and page.evaluate(fold_pixels, fold + 20) == 0
    assert page.inner_text("#reach-legend").startswith("0%")
    assert "% of sessions" in page.inner_text("#reach-legend")
    # Back to a heat map type: the heatmap view.
    page.select_option("#type", "click")
    settled(page)
    assert "view=scroll" not in page.url
    assert page.errors == []


def test_sessions_follow_the_maps_slice(shop: Shop, page: Any) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url) if "/sessions?" in r.url else None)
    page.goto(shop.viewer())
    settled(page)
    wait_state(page, "sessions", "ready")
    first = urllib.parse.parse_qs(urllib.parse.urlsplit(requests[-1]).query)
    assert first["visitedPath"] == ["/"] and "viewportWidth" not in first
    page.select_option("#band", "mobile")
    page.wait_for_function("() => document.body.dataset.bandWidth === '400'")
    settled(page)
    wait_state(page, "sessions", "ready")
    last = urllib.parse.parse_qs(urllib.parse.urlsplit(requests[-1]).query)
    assert last["visitedPath"] == ["/"] and last["viewportWidth"] == ["400"]
    page.fill("#path", "/pricing")
    page.press("#path", "Enter")
    page.wait_for_function("() => document.getElementById('page-frame').dataset.src.endsWith('/pricing')")
    settled(page)
    wait_state(page, "sessions", "ready")
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(requests[-1]).query)["visitedPath"] == ["/pricing"]
    assert page.errors == []


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """The ready app (``wsgi.create_app()``) with the viewer on: it serves no page of the site."""
    env = {
        "HEAT_DATABASE_URI": f"sqlite:///{tmp_path / 'heat.db'}",
        "HEAT_QUERY_API_KEYS": QUERY_KEY,
        "HEAT_IP_HASH_SECRET": "viewer-e2e",
        "HEAT_VIEWER_ENABLED": "true",
    }
    app = create_app(env)
    project = _seed(app)
    server = Server(app)
    try:
        yield server, project
    finally:
        server.stop()
        app.extensions["heat_collector"].repository.dispose()


def test_standalone_viewer_names_the_site_url_setting(standalone: tuple[Server, str], page: Any) -> None:
    server, project = standalone
    page.goto(f"{server.url}/viewer#key={QUERY_KEY}&project={project}")
    settled(page)
    assert page.get_attribute("body", "data-frame") == "error"
    note = page.inner_text("#frame-note")
    assert "answered HTTP 404" in note
    assert page.is_visible("#site-hint") and "set HEAT_VIEWER_SITE_URL to the site's origin" in note
    # The map is still drawn, on the grid.
    wait_state(page, "map", "ready")
    shot(page, "viewer-standalone.png")
    assert all("404" in error for error in page.errors), page.errors


def test_insights_of_a_real_sdk_visit(tmp_path: Path, sdk_dist: Path, browser: Any, page: Any) -> None:
    """The real SDK in Chromium: a dead click, a rage burst and a quick back, each in the insights panel."""
    app = _shop_app(tmp_path / "heat.db", HEAT_ALLOWED_ORIGINS=["*"])
    server = Server(app)
    root = tmp_path / "site"
    try:
        with static_site(root, sdk_dist) as site:
            # A second page of the site, with the same SDK set-up, to leave to and come back from.
            (root / "other.html").write_text((root / "index.html").read_text())
            visitor = browser.new_context(viewport={"width": 1280, "height": 800})
            tab = visitor.new_page()
            tab.add_init_script(
                script=init_script(
                    {"endpoint": f"{server.url}/ingest", "projectKey": "insights", "flushIntervalMs": 500}
                )
            )

            def open_page(name: str) -> None:
                tab.goto(f"{site}/{name}")
                tab.wait_for_function("window.heatReady === true")

            def flush() -> None:
                tab.evaluate("window.tracker.flush()")
                tab.wait_for_function("window.tracker.queue.length === 0 && window.__ingest.length > 0")

            open_page("index.html")
            tab.click("#buy")  # nothing happens: a dead click
            tab.wait_for_timeout(1700)  # longer than HEAT_DEAD_CLICK_MS (1,500) before anything else
            box = tab.locator("#cart").bounding_box()
            for _ in range(4):  # a rage burst: 4 clicks within 1 s and 30 px
                tab.mouse.click(box["x"] + 40, box["y"] + 30)
            flush()
            open_page("other.html")
            flush()
            open_page("index.html")  # back within HEAT_QUICK_BACK_MS (7,000): a quick back of /other.html
            flush()
            project = tab.evaluate("window.__ingest[0].body.projectId")
            assert {a["status"] for a in tab.evaluate("window.__ingest")} == {200}
            visitor.close()

        page.goto(f"{server.url}/viewer#key={QUERY_KEY}&project={project}&path=/index.html")
        settled(page)
        wait_state(page, "insights", "ready")
        rows = {
            row.get_attribute("data-signal"): [c.inner_text().strip() for c in row.locator("td").all()]
            for row in page.locator("#insights tbody tr").all()
        }
        assert rows["rage"][1] == "4" and rows["rage"][2] == "button#cart 4"
        assert int(rows["dead"][1]) >= 1 and "button#buy 1" in rows["dead"][2].split("\n")
        shot(page, "viewer-insights-sdk.png")

        page.fill("#path", "/other.html")
        page.press("#path", "Enter")
        page.wait_for_function("() => document.getElementById('insights-count').textContent === 'on /other.html'")
        wait_state(page, "insights", "ready")
        quick = page.locator("#insights tbody tr[data-signal='quickback'] td").all_inner_texts()
        assert quick[:2] == ["Quick backs", "1"]
        assert page.errors == [] or all("404" in e or "Failed to load" in e for e in page.errors), page.errors
    finally:
        server.stop()
        app.extensions["heat_collector"].repository.dispose()
