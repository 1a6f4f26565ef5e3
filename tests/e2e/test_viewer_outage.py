"""Issue 23's acceptance with the real SDK in Chromium: a storage outage the viewer lives through
without a reload, and the exported PNG's caption with the heat on the clicked buttons.

One Flask app serves the collector, its viewer and a tracked page (``/page``: two buttons that are
clicked, one that is not) on one origin; its storage is a PostgreSQL database of its own (a random
name on the shared server, dropped at the end). A Chromium tab running the SDK from npm
(tests/e2e/support.py) clicks and scrolls with the mouse wheel; then the viewer is opened on the
project. The outage is real: the database refuses connections (``ALTER DATABASE … ALLOW_CONNECTIONS
false``) and its sessions are ended (``pg_terminate_backend``), so the collector's pooled connections
die and new ones are refused; ``ALLOW_CONNECTIONS true`` ends it. Screenshots go to
build/e2e/outage-*.png, the PNG to build/e2e/outage-export.png.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from ..helpers import Server
from .support import ARTIFACTS, Answer, delivered, http, png_eval, sdk_visit, tracked_app, unavailable, wait_until
from .test_viewer import CAPTION_HEIGHT, _band_pixels, _png_size, frame_box, settled, shot
from .test_viewer import page as page  # the viewer tab fixture (downloads allowed; script errors kept)
from .test_viewer_anchor import SDK_SCRIPT, _head, contains

pytestmark = pytest.mark.e2e

PG_ADMIN = os.environ.get("HEAT_TEST_POSTGRES", "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
QUERY_KEY = "outage-e2e-key"
PROJECT_KEY = "outage-e2e"
PATH = "/page"
WIDTH, HEIGHT = 1280, 800
PAGE_RGB = (233, 238, 245)  # #e9eef5
# Button boxes in page px: "a" near the top and "b" below the first screen are clicked; "c" is not.
BUTTONS = {
    "a": ({"x": 200, "y": 200, "width": 120, "height": 48}, (42, 157, 143)),
    "b": ({"x": 700, "y": 1200, "width": 120, "height": 48}, (231, 111, 81)),
    "c": ({"x": 900, "y": 200, "width": 120, "height": 48}, (38, 70, 83)),
}
PANELS = ("map", "elements", "insights", "sessions")  # the heatmap view's panels
STATUS_OF = {"map": "#status", "elements": "#elements-status", "insights": "#insights-status"}


def _page_html() -> str:
    buttons = "".join(
        f'<button id="{name}" aria-label="{name}" style="left: {box["x"]}px; top: {box["y"]}px;'
        f' width: {box["width"]}px; height: {box["height"]}px; background: rgb{rgb}"></button>'
        for name, (box, rgb) in BUTTONS.items()
    )
    style = (
        f".page {{ position: relative; height: 1800px; background: rgb{PAGE_RGB}; }}"
        " button { position: absolute; padding: 0; border: 0; }"
    )
    return _head("Page", style) + f'<body><div class="page">{buttons}</div>{SDK_SCRIPT}</body></html>'


# -- a PostgreSQL database of the test's own, and its outage -------------------------------------------


class Database:
    """``heat_e2e_<random>`` on the shared PostgreSQL server; only this database is ever cut or dropped."""

    def __init__(self) -> None:
        self.name = f"heat_e2e_{uuid.uuid4().hex[:12]}"
        admin_url = sa.make_url(PG_ADMIN)
        self.uri = admin_url.set(database=self.name).render_as_string(hide_password=False)
        self.admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5})
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {self.name}")

    def cut(self) -> None:
        """No new connection is accepted, and every open one (the collector's pool) is ended."""
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS false")
            conn.execute(
                sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :name"),
                {"name": self.name},
            )

    def restore(self) -> None:
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"ALTER DATABASE {self.name} ALLOW_CONNECTIONS true")

    def drop(self) -> None:
        self.restore()
        with self.admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
        self.admin.dispose()


def _app(uri: str, sdk_dist: Path) -> Flask:
    return tracked_app("outage_e2e", uri, sdk_dist, {PATH: _page_html()}, query_key=QUERY_KEY)


@dataclass
class Site:
    server: Server
    database: Database
    project: str

    def viewer(self, fragment: str = "") -> str:
        return f"{self.server.url}/viewer#key={QUERY_KEY}&project={self.project}&path={PATH}{fragment}"

    def api(self, endpoint: str, **params: Any) -> Answer:
        query = urllib.parse.urlencode(params)
        return http(
            "GET", f"{self.server.url}/api/projects/{self.project}{endpoint}?{query}", headers={"x-api-key": QUERY_KEY}
        )


def _visit(browser: Any, url: str) -> str:
    """One visitor at 1280x800: clicks "a" twice, scrolls down with the wheel, clicks "b". The project id."""
    viewport = {"width": WIDTH, "height": HEIGHT}
    with sdk_visit(browser, f"{url}/ingest", PROJECT_KEY, f"{url}{PATH}", viewport=viewport) as tab:
        tab.click("#a")
        tab.click("#a")
        tab.mouse.move(640, 400)
        tab.mouse.wheel(0, 700)
        tab.wait_for_function("window.scrollY >= 600")
        tab.wait_for_function("window.tracker.queue.some((e) => e.type === 'scroll')")
        tab.click("#b")
        return delivered(tab)


@pytest.fixture(scope="module")
def site(browser: Any, sdk_dist: Path) -> Iterator[Site]:
    try:
        database = Database()
    except Exception as exc:  # reported as skip/fail
        unavailable(f"PostgreSQL at {PG_ADMIN} is unavailable: {exc}")
        raise AssertionError("unreachable") from exc
    app = None
    server = None
    try:
        app = _app(database.uri, sdk_dist)
        server = Server(app)
        project = _visit(browser, server.url)
        yield Site(server, database, project)
    finally:
        if server is not None:
            server.stop()
        if app is not None:
            app.extensions["heat_collector"].repository.dispose()
        database.drop()


# -- what the viewer shows ------------------------------------------------------------------------

# Every panel's state, its status text and the request id it shows, read at one instant (a retry
# may change them between two separate reads).
_PANELS = """(ids) => Object.fromEntries(Object.entries(ids).map(([name, status]) => {
    const target = document.querySelector(status);
    const id = target.querySelector(".request-id");
    return [name, {state: document.getElementById(name + "-panel").dataset.state,
                   text: target.textContent, requestId: id ? id.textContent : null}];
}))"""


def panels(page: Any) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = page.evaluate(_PANELS, {**STATUS_OF, "sessions": "#sessions-status"})
    return found


def numbers(page: Any) -> dict[str, Any]:
    """What the panels count: the map's plotted and total events and drawn points, the elements'
    rows, the signals' counts and the sessions' rows."""
    plotted = re.search(r"(\d+) of (\d+) events plotted \(click\)", page.inner_text("#status"))
    assert plotted, page.inner_text("#status")
    return {
        "map": (int(plotted[1]), int(plotted[2]), page.get_attribute("body", "data-heatmap-points")),
        "elements": [
            [c.inner_text() for c in row.locator("td").all()[:4]] for row in page.locator("#elements tbody tr").all()
        ],
        "insights": {
            row.get_attribute("data-signal"): row.locator("td").nth(1).inner_text()
            for row in page.locator("#insights tbody tr").all()
        },
        "sessions": [
            [row.get_attribute("data-session-id"), row.locator("td").nth(2).inner_text()]
            for row in page.locator("#sessions tbody tr").all()
        ],
    }


def wait_ready(page: Any, timeout: float) -> None:
    page.wait_for_function(
        "(names) => names.every((n) => document.getElementById(n + '-panel').dataset.state === 'ready')",
        arg=list(PANELS),
        timeout=timeout,
    )


def test_storage_outage_and_recovery_without_reload(site: Site, page: Any) -> None:
    failed: list[Any] = []  # every 503 the viewer received
    page.on("response", lambda r: failed.append(r) if r.status == 503 else None)
    page.goto(site.viewer())
    settled(page)
    wait_ready(page, 30_000)
    before = numbers(page)
    # The visit: "a" twice and "b" once, plotted; one session.
    assert before["map"][:2] == (3, 3), before
    assert {row[1]: int(row[2]) for row in before["elements"]} == {"button#a": 2, "button#b": 1}, before
    assert len(before["sessions"]) == 1, before
    page.evaluate("window.__sameDocument = true")  # gone if the page were reloaded

    site.database.cut()
    try:
        # The API says what the outage is (SPEC 5): a 503 storage_unavailable with Retry-After.
        down = site.api("/heatmap", path=PATH, type="click")
        assert down.status == 503, down.text
        assert down.json()["code"] == "storage_unavailable" and "retry-after" in down.headers, down.text
        assert down.json()["requestId"] == down.headers["x-request-id"]

        # The user chooses the desktop band (every visitor's): the map, the elements, the signals
        # and the sessions are asked for again, and every one fails.
        page.select_option("#band", "desktop")
        shown: dict[str, dict[str, Any]] = {}

        def all_failed() -> bool:
            shown.update(panels(page))
            return all(shown[name]["state"] == "error" and shown[name]["requestId"] for name in PANELS)

        wait_until(all_failed, 30, "not every panel showed its error", page=page)
        assert shown["map"]["text"].startswith("The map is not available: The database is unavailable; retry later.")
        for name in PANELS:
            assert "(storage_unavailable; request id " in shown[name]["text"], shown[name]
            assert "Trying again in" in shown[name]["text"], shown[name]
        assert shown["sessions"]["text"].startswith("Sessions are not available: The database is unavailable")
        # The request id shown is that of a 503 the viewer received: of the heatmap for the map
        # (the elements and the signals follow the map), of the sessions for the sessions list.
        answers: dict[str, tuple[str, dict[str, Any]]] = {}

        def answered() -> bool:
            for response in failed:
                if response.headers["x-request-id"] not in answers:
                    answers[response.headers["x-request-id"]] = (response.url, response.json())
            return all(shown[name]["requestId"] in answers for name in PANELS)

        wait_until(answered, 10, f"a shown request id is not of a 503: {shown}", page=page)
        for rid, (_url, body) in answers.items():
            assert body["code"] == "storage_unavailable" and body["requestId"] == rid, body
        assert "/heatmap?" in answers[shown["map"]["requestId"]][0]
        assert shown["elements"]["requestId"] == shown["insights"]["requestId"] == shown["map"]["requestId"]
        assert "/sessions?" in answers[shown["sessions"]["requestId"]][0]
        assert page.locator("#sessions tbody tr").count() == 0 and page.locator("#elements tbody tr").count() == 0
        # No count of the last answer beside the titles ("Elements (2)" over an empty table).
        assert page.inner_text("#elements-count") == "" and page.inner_text("#session-count") == ""
        assert page.get_attribute("body", "data-heatmap-points") == "error" and page.is_disabled("#export")
        shot(page, "outage-storage-down.png")
        # The viewer keeps asking during the outage (a retry, failing again, with a new request id).
        first = len({r.headers["x-request-id"] for r in failed if "/heatmap?" in r.url})
        wait_until(
            lambda: len({r.headers["x-request-id"] for r in failed if "/heatmap?" in r.url}) > first,
            30,
            "the map was not asked for again during the outage",
            page=page,
        )
        assert all(panels(page)[name]["state"] in ("error", "loading") for name in PANELS)
    finally:
        site.database.restore()

    # Back by themselves: no reload, no click (the retry delay is at most 30 s).
    wait_ready(page, 90_000)
    settled(page)
    assert page.evaluate("window.__sameDocument") is True
    assert page.input_value("#band") == "desktop"
    assert numbers(page) == before
    assert page.inner_text("#elements-count") == "(2)" and page.inner_text("#session-count") == "(1\u20131)"
    assert page.get_attribute("body", "data-frame-width") == str(WIDTH) and page.is_enabled("#export")
    shot(page, "outage-recovered.png")
    # Only the browser's reports of the failed requests.
    assert all("503" in error for error in page.errors), page.errors


# -- the exported PNG ---------------------------------------------------------------------------------

# Of the PNG's pixels within ``margin`` px of ``box``: the sum of each pixel's distance (RGB) from what
# the page alone has there (the button's colour inside the box, the page's outside) and the centre
# of those distances; and the largest distance inside the box shrunk by 2 px.
_HEAT_AROUND = """
    const x0 = Math.max(0, box.x - margin), y0 = Math.max(0, box.y - margin);
    const w = box.width + 2 * margin, h = box.height + 2 * margin;
    const data = ctx.getImageData(x0, y0, w, h).data;
    let sum = 0, sx = 0, sy = 0, inside = 0;
    for (let y = 0; y < h; y += 1)
        for (let x = 0; x < w; x += 1) {
            const px = x0 + x, py = y0 + y;
            const within = px >= box.x && px < box.x + box.width && py >= box.y && py < box.y + box.height;
            const ref = within ? rgb : page;
            const i = (y * w + x) * 4;
            const d = Math.abs(data[i] - ref[0]) + Math.abs(data[i + 1] - ref[1]) + Math.abs(data[i + 2] - ref[2]);
            sum += d; sx += d * (px + 0.5); sy += d * (py + 0.5);
            const deep = px >= box.x + 2 && px < box.x + box.width - 2
                && py >= box.y + 2 && py < box.y + box.height - 2;
            if (deep) inside = Math.max(inside, d);
        }
    return {sum, centre: sum ? [sx / sum, sy / sum] : null, inside};
"""


def heat_around(browser: Any, data: bytes, name: str) -> dict[str, Any]:
    box, rgb = BUTTONS[name]
    names = "box, rgb, page, margin"
    found: dict[str, Any] = png_eval(browser, data, names, _HEAT_AROUND, box, list(rgb), list(PAGE_RGB), 40)
    return found


def test_png_caption_and_heat_on_the_clicked_buttons(site: Site, page: Any, browser: Any) -> None:
    page.goto(site.viewer())
    settled(page)
    wait_ready(page, 30_000)
    page.uncheck("#dim-page")  # the page's own colours in the picture
    # The viewer frames the page as the visitor had it: the buttons where the page puts them.
    for name, (box, _rgb) in BUTTONS.items():
        assert frame_box(page, f"#{name}") == {k: float(v) for k, v in box.items()}, name
    anchor = page.get_attribute("body", "data-anchor")
    with page.expect_download() as info:
        page.click("#export")
    download = info.value
    assert download.suggested_filename == "heatmap-page-heatmap.png"
    data = Path(download.path()).read_bytes()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "outage-export.png").write_bytes(data)
    page.wait_for_function("() => document.body.dataset.export !== undefined")
    assert page.get_attribute("body", "data-export") == "page", page.inner_text("#status")
    height = page.evaluate("parseInt(document.getElementById('board').style.height)")
    assert _png_size(data) == (WIDTH, height + CAPTION_HEIGHT) and height >= 1800

    # The caption: path, type, band, width and anchoring; dates and sample (one session: small).
    heatmap = site.api("/heatmap", path=PATH, type="click")
    assert heatmap.status == 200, heatmap.text
    sample = heatmap.json()["meta"]["sample"]
    assert sample["sessions"] == 1 and sample["small"] is True
    assert page.get_attribute("body", "data-export-caption") == (
        f"/page · clicks map · all widths · {WIDTH} px wide · anchored {anchor}\n"
        "the first event to now (UTC) · based on 1 session (small sample)"
    )
    caption = _band_pixels(browser, data, height, CAPTION_HEIGHT)
    assert caption["background"] > 0.5, caption  # the band's own colour, not the page
    assert caption["white"] > 200 and caption["colours"] >= 3, caption  # text, and the legend's colours

    # The heat of each clicked button is centred inside the button in the PNG; the button nobody
    # clicked has none.
    for name in ("a", "b"):
        found = heat_around(browser, data, name)
        assert found["centre"] is not None and found["inside"] > 60, (name, found)
        assert contains(BUTTONS[name][0], *found["centre"]), (name, found)
    untouched = heat_around(browser, data, "c")
    assert untouched["sum"] == 0, untouched
    assert page.errors == [], page.errors
