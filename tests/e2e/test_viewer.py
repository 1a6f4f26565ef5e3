"""The heatmap viewer in Chromium against a live server: the page under the map, device bands, scroll
reach, elements, sessions, the address and PNG export, with assertions on what is drawn.

The host app serves a small shop page at ``/`` (a "Buy" button at 100,300 200x80 px and a "Dead"
button at 700,1100), ``/pricing`` and ``/blocked`` (``X-Frame-Options: DENY``); the events are
SDK-shaped batches posted to ``/ingest``. Screenshots go to build/e2e/viewer-*.png.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response

from flask_heat_collector import HeatCollector

from ..helpers import TS, Server, batch, event, headers, ingest_all
from .support import ARTIFACTS, png_eval

pytestmark = pytest.mark.e2e

QUERY_KEY = "viewer-e2e-key"
DAY_MS = 86_400_000
BUY = {"x": 100, "y": 300, "width": 200, "height": 80}
DEAD = {"x": 700, "y": 1100, "width": 200, "height": 80}
HEADER_RGB = (29, 53, 87)
FOLD = {"x": 0, "y": 800 - 30, "width": 1200, "height": 34}  # the dashed fold line and its label
CAPTION_HEIGHT = 70  # the exported PNG's caption band: two lines and the legend
SHOP = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Shop</title>
<style>
  html, body {{ margin: 0; }}
  body {{ font: 16px/1.4 sans-serif; background: #fff; }}
  header {{ height: 120px; background: rgb{HEADER_RGB}; color: #fff; }}
  main {{ height: 2000px; }}
  button {{ position: absolute; border: 0; color: #fff; }}
  #buy {{ left: {BUY["x"]}px; top: {BUY["y"]}px; width: {BUY["width"]}px; height: {BUY["height"]}px;
          background: #2a9d8f; }}
  #dead {{ left: {DEAD["x"]}px; top: {DEAD["y"]}px; width: {DEAD["width"]}px; height: {DEAD["height"]}px;
           background: #e76f51; }}
</style></head>
<body><header>Shop</header><main><button id="buy">Buy</button><button id="dead">Dead</button></main>
<script>document.title = "scripts ran";</script></body></html>"""
PRICING = """<!doctype html><html><head><title>Pricing</title></head>
<body><h1>Pricing</h1><button id="plan-pro">Pro</button></body></html>"""


def _shop_app(database: Path, **config: Any) -> Flask:
    app = Flask("viewer_e2e", instance_path=str(database.parent / "instance"))
    app.config.update(
        HEAT_DATABASE_URI=f"sqlite:///{database}",
        HEAT_QUERY_API_KEYS=[QUERY_KEY],
        HEAT_IP_HASH_SECRET="viewer-e2e",
        HEAT_VIEWER_ENABLED=True,
        **config,
    )
    HeatCollector().init_app(app)

    @app.get("/")
    def shop() -> str:
        return SHOP

    @app.get("/pricing")
    def pricing() -> str:
        return PRICING

    @app.get("/blocked")
    def blocked() -> Response:
        return Response(SHOP, headers={"X-Frame-Options": "DENY"})

    return app


def _clicks(selector: str, x: int, y: int, count: int, ts: int, gap_ms: int, **fields: Any) -> list[dict[str, Any]]:
    """``count`` clicks on ``selector`` around (x, y), ``gap_ms`` apart (under 1,000 ms: a rage burst)."""
    return [
        event("click", ts=ts + i * gap_ms, x=x + (i % 3) * 4 - 4, y=y + (i % 2) * 4, selector=selector, **fields)
        for i in range(count)
    ]


def _seed(app: Flask) -> str:
    """Five sessions; newest first: anonymous on /pricing, carol (390 px), bob, alice, erin (3 days older)."""
    client = app.test_client()
    minute = 60_000
    alice = [
        *_clicks("button#buy", 200, 340, 5, TS + 1000, 2000),
        event("move", ts=TS + 500, points=[{"x": 150 + 10 * i, "y": 330, "tsOffset": 20 * i} for i in range(6)]),
        event("scroll", ts=TS + 20_000, scrollY=300, scrollDepthPct=40),
        event("scroll", ts=TS + 21_000, scrollY=1300, scrollDepthPct=100),
    ]
    bob = [
        *_clicks("button#buy", 200, 340, 2, TS + minute + 1000, 3000),
        *_clicks("button#dead", 800, 1140, 4, TS + minute + 10_000, 150),
        event("scroll", ts=TS + minute + 20_000, scrollY=200, scrollDepthPct=30),
    ]
    carol = [
        *_clicks("button#buy", 200, 340, 3, TS + 2 * minute + 1000, 2000, w=390, h=844),
        event("scroll", ts=TS + 2 * minute + 9000, w=390, h=844, scrollY=600, scrollDepthPct=60),
    ]
    pricing = [
        event("pageview", ts=TS + 3 * minute, path="/pricing"),
        event("click", ts=TS + 3 * minute + 1000, path="/pricing", x=300, y=250, selector="button#plan-pro"),
    ]
    erin = _clicks("button#buy", 200, 340, 1, TS - 3 * DAY_MS, 1000)
    bodies = [
        batch(
            *erin, session_id="s-erin", user={"id": "erin"}, started_at=TS - 3 * DAY_MS, last_seen_at=TS - 3 * DAY_MS
        ),
        batch(*alice, session_id="s-alice", user={"id": "alice"}, started_at=TS, last_seen_at=TS + 21_000),
        batch(*bob, session_id="s-bob", user={"id": "bob"}, started_at=TS + minute, last_seen_at=TS + minute + 20_000),
        batch(
            *carol, session_id="s-carol", user={"id": "carol"}, started_at=TS + 2 * minute, last_seen_at=TS + 3 * minute
        ),
        batch(*pricing, session_id="s-anon", started_at=TS + 3 * minute, last_seen_at=TS + 3 * minute + 1000),
    ]
    return ingest_all(client, bodies)


@dataclass
class Shop:
    server: Server
    project: str

    def viewer(self, fragment: str = "") -> str:
        return f"{self.server.url}/viewer#key={QUERY_KEY}&project={self.project}{fragment}"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    app = _shop_app(tmp_path_factory.mktemp("viewer-e2e") / "heat.db")
    project = _seed(app)
    server = Server(app)
    try:
        yield Shop(server, project)
    finally:
        server.stop()
        app.extensions["heat_collector"].repository.dispose()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A viewer tab; fails the test on any script error of the page."""
    context = browser.new_context(viewport={"width": 1600, "height": 1000}, accept_downloads=True)
    tab = context.new_page()
    errors: list[str] = []
    blocked_scripts: list[str] = []

    def console(message: Any) -> None:
        if message.type != "error" or "favicon" in message.location["url"]:  # the browser's own 404
            return
        # The sandbox at work: the framed page's scripts are refused (and said so).
        sandboxed = "sandboxed and the 'allow-scripts' permission is not set" in message.text
        (blocked_scripts if sandboxed else errors).append(message.text)

    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", console)
    tab.errors = errors
    tab.blocked_scripts = blocked_scripts
    try:
        yield tab
    finally:
        context.close()


def settled(page: Any, view: str = "heatmap") -> None:
    """Until nothing is in flight, the view is ``view`` and the frame has loaded (or failed)."""
    page.wait_for_function(
        """(view) => !document.body.dataset.busy && document.body.dataset.view === view
                     && document.body.dataset.frame && document.body.dataset.frame !== "loading" """,
        arg=view,
    )


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def frame_box(page: Any, selector: str) -> dict[str, float]:
    """The box of ``selector`` in the framed page (page px: the frame never scrolls)."""
    box: dict[str, float] = page.evaluate(
        """(selector) => {
            const doc = document.getElementById("page-frame").contentDocument;
            const r = doc.querySelector(selector).getBoundingClientRect();
            return {x: r.left, y: r.top, width: r.width, height: r.height};
        }""",
        selector,
    )
    return box


# Painted pixels of the heat canvas, in page px: [x, y] of every pixel with alpha > 0 (sampled).
_PAINTED = """(step) => {
    const canvas = document.getElementById("heatmap");
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const found = [];
    for (let y = 0; y < canvas.height; y += step)
        for (let x = 0; x < canvas.width; x += step)
            if (data[(y * canvas.width + x) * 4 + 3] > 0) found.push([x, y]);
    return found;
}"""


# The largest colour spread (max - min of r, g, b) of the heat canvas's opaque pixels: grey is 0.
_SPREAD = """() => {
    const canvas = document.getElementById("heatmap");
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let spread = 0;
    for (let i = 0; i < data.length; i += 4)
        if (data[i + 3] > 60) {
            const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
            spread = Math.max(spread, Math.max(r, g, b) - Math.min(r, g, b));
        }
    return spread;
}"""


def inside(point: list[int], box: Mapping[str, float]) -> bool:
    x, y = point
    return box["x"] <= x <= box["x"] + box["width"] and box["y"] <= y <= box["y"] + box["height"]


def test_heatmap_over_the_framed_page(shop: Shop, page: Any) -> None:
    page.goto(shop.viewer())
    settled(page)
    assert page.get_attribute("body", "data-frame") == "ready", page.inner_text("#frame-note")
    assert page.input_value("#path") == "/"  # the path with the most events
    assert page.get_attribute("#page-frame", "src") == f"{shop.server.url}/"
    assert page.get_attribute("#page-frame", "sandbox") == "allow-same-origin"
    # The framed page's scripts never run (nor would its SDK).
    assert page.evaluate("document.getElementById('page-frame').contentDocument.title") == "Shop"
    assert any(f"{shop.server.url}/" in text for text in page.blocked_scripts), page.blocked_scripts
    assert page.get_attribute("body", "data-frame-width") == "1200"
    assert page.evaluate("document.getElementById('page-frame').offsetWidth") == 1200
    assert "12 of 15 events plotted (click)" in page.inner_text("#status")
    # meta.sample: alice, bob and erin in the 1,200 px band, fewer than HEAT_MIN_SAMPLE_SESSIONS (30).
    assert page.inner_text("#status").endswith(" Based on 3 sessions (small sample: read it with care).")

    buy, dead = frame_box(page, "#buy"), frame_box(page, "#dead")
    assert (buy["x"], buy["y"]) == (BUY["x"], BUY["y"])
    painted = page.evaluate(_PAINTED, 2)
    assert painted, "nothing drawn"
    outside = [p for p in painted if not any(inside(p, box) for box in (buy, dead, FOLD))]
    assert outside == [], outside[:10]
    assert any(inside(p, buy) for p in painted) and any(inside(p, dead) for p in painted)
    # A small sample is said so, and painted in muted colours (no pixel far from grey).
    assert page.is_visible("#sample-note") and "Small sample: based on 3 sessions" in page.inner_text("#sample-note")
    assert "muted" in (page.get_attribute("#legend-bar", "class") or "")
    assert page.evaluate(_SPREAD) < 120
    assert page.inner_text("#legend-unit") == "clicks per cell (a cell is 9 \u00d7 9 px of the page)"

    # On screen: the canvas and the frame are scaled alike, so the button's centre on screen is a hot pixel.
    scale, frame_screen, canvas_screen = page.evaluate(
        """() => {
            const scale = Number(document.getElementById("board").style.transform.match(/scale\\(([\\d.]+)\\)/)[1]);
            const f = document.getElementById("page-frame").getBoundingClientRect();
            const c = document.getElementById("heatmap").getBoundingClientRect();
            return [scale, [f.left, f.top, f.width], [c.left, c.top]];
        }"""
    )
    assert 0 < scale < 1 and frame_screen[2] == pytest.approx(1200 * scale, abs=1)
    screen_x = frame_screen[0] + (buy["x"] + buy["width"] / 2) * scale
    screen_y = frame_screen[1] + (buy["y"] + buy["height"] / 2) * scale
    canvas_x = round((screen_x - canvas_screen[0]) / scale)
    canvas_y = round((screen_y - canvas_screen[1]) / scale)
    alpha = page.evaluate(
        "([x, y]) => document.getElementById('heatmap').getContext('2d').getImageData(x, y, 1, 1).data[3]",
        [canvas_x, canvas_y],
    )
    assert alpha > 100
    shot(page, "viewer-map.png")
    assert "key=" not in page.url
    assert page.errors == []


def test_scroll_reach_bands(shop: Shop, page: Any, browser: Any) -> None:
    page.goto(shop.viewer("&view=scroll"))
    settled(page, "scroll")
    assert page.is_visible("#reach-panel") and not page.is_visible("#elements-panel")
    rows = {
        row.get_attribute("data-depth"): [c.inner_text() for c in row.locator("td").all()]
        for row in page.locator("#reach tbody tr").all()
    }
    # Reach is the viewport's bottom edge (SPEC 4): alice saw 71 % (y=300 at 40 %: page 1,550 px) and
    # 100 %; bob 68 % (y=200 at 30 %: page 1,467 px); erin never scrolled and saw the fold, 800 px of
    # the median page of 1,550: 52 %. Carol scrolled at 390 px: another width.
    assert len(rows) == 21
    assert rows["0"] == ["0%", "3", "100%"]
    assert rows["50"] == ["50%", "3", "100%"]
    assert rows["55"] == ["55%", "2", "67%"]
    assert rows["65"] == ["65%", "2", "67%"]
    assert rows["70"] == ["70%", "1", "33%"]
    assert rows["100"] == ["100%", "1", "33%"]
    assert page.get_attribute("body", "data-reach-bands") == "20"
    assert "Scroll reach of 3 sessions" in page.inner_text("#status")
    assert "Based on 3 sessions (small sample" in page.inner_text("#status")
    # Two bands of different reach have different colours.
    top, bottom = page.evaluate(
        """() => {
            const c = document.getElementById("heatmap");
            const ctx = c.getContext("2d");
            const at = (pct) => Array.from(ctx.getImageData(5, Math.round(c.height * pct), 1, 1).data);
            return [at(0.1), at(0.6)];
        }"""
    )
    assert top[3] > 0 and bottom[3] > 0 and top[:3] != bottom[:3]
    shot(page, "viewer-scroll.png")

    # The export holds the page and the bands over it.
    with page.expect_download() as info:
        page.click("#export")
    assert info.value.suggested_filename == "heatmap-root-scroll.png"
    data = Path(info.value.path()).read_bytes()
    width, height = _png_size(data)
    board = page.evaluate("parseInt(document.getElementById('board').style.height)")
    assert width == 1200 and height == board + CAPTION_HEIGHT
    header, band = _pixels(browser, data, [(600, 10), (600, 700)])
    assert header[:3] != list(HEADER_RGB) and header[3] == 255  # the header, tinted by the top band
    assert band[:3] != [255, 255, 255]  # the page's white, tinted by a band
    assert page.errors == []


def test_elements_table_and_highlight(shop: Shop, page: Any) -> None:
    page.goto(shop.viewer())
    settled(page)
    page.wait_for_function("() => document.body.dataset.elements !== undefined")
    rows = [[c.inner_text() for c in row.locator("td").all()] for row in page.locator("#elements tbody tr").all()]
    # Counted in the map's band (1,200 px): alice's 5, bob's 2 and erin's 1; carol's 3 at 390 px are not.
    # Every click of the fixture is dead (nothing follows it within 1.5 s); none is an error click.
    assert rows == [["1", "button#buy", "8", "3", "0", "8", "0"], ["2", "button#dead", "4", "1", "4", "4", "0"]]

    page.hover("#elements tbody tr[data-selector='button#buy']")
    page.wait_for_function("() => document.body.dataset.highlighted !== undefined")
    # alice's 5, bob's 2 (erin's is in range too); carol's 3 were at 390 px: not on this frame.
    assert page.get_attribute("body", "data-highlighted") == "8"
    assert page.get_attribute("body", "data-outline") == "1"
    outline = page.evaluate(
        """() => { const o = document.getElementById("outline");
                   return {x: parseFloat(o.style.left), y: parseFloat(o.style.top),
                           width: parseFloat(o.style.width), height: parseFloat(o.style.height)}; }"""
    )
    assert outline == {"x": BUY["x"], "y": BUY["y"], "width": BUY["width"], "height": BUY["height"]}
    # Rings around the clicks: painted pixels on the highlight layer, all around the button's clicks.
    ringed = page.evaluate(
        """() => {
            const c = document.getElementById("highlight");
            const data = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
            const found = [];
            for (let i = 3; i < data.length; i += 4)
                if (data[i]) found.push([(i >> 2) % c.width, Math.floor((i >> 2) / c.width)]);
            return found;
        }"""
    )
    assert ringed and all(abs(x - 200) <= 25 and abs(y - 342) <= 25 for x, y in ringed)
    shot(page, "viewer-elements.png")

    # Rage clicks: the map type and the table's order.
    page.mouse.move(5, 5)
    page.select_option("#type", "rageclick")
    settled(page)
    page.wait_for_function("() => document.getElementById('status').textContent.includes('(rageclick)')")
    rows = [[c.inner_text() for c in row.locator("td").all()] for row in page.locator("#elements tbody tr").all()]
    assert rows == [["1", "button#dead", "4", "1", "4", "4", "0"]]
    dead = frame_box(page, "#dead")
    painted = page.evaluate(_PAINTED, 2)
    assert painted and all(inside(p, dead) or inside(p, FOLD) for p in painted)
    assert "type=rageclick" in page.url
    assert page.errors == []


def test_sessions_newest_first_and_one_session(shop: Shop, page: Any) -> None:
    page.goto(shop.viewer())
    settled(page)
    users = page.locator("#sessions tbody tr td:first-child").all_inner_texts()
    # The map's slice: the sessions that visited "/" (the anonymous visitor only saw /pricing).
    assert users == ["carol", "bob", "alice", "erin"]
    assert page.get_attribute("#sessions tbody tr:nth-child(3)", "data-session-id") == "s-alice"
    assert page.is_disabled("#sessions-next") and page.is_disabled("#sessions-prev")

    page.click("#sessions tbody tr[data-session-id='s-alice']")
    settled(page, "session")
    assert "session=s-alice" in page.url
    assert page.is_visible("#timeline-panel") and page.is_visible("#session-banner")
    assert "Session of alice" in page.inner_text("#session-title")
    timeline = [[c.inner_text() for c in row.locator("td").all()] for row in page.locator("#timeline tbody tr").all()]
    # One row per event (the move's 6 points are one), in time order, offsets from the start.
    assert [row[1] for row in timeline] == ["move", "click", "click", "click", "click", "click", "scroll", "scroll"]
    assert timeline[1] == ["+0:01.0", "click", "/", "button#buy"]
    assert timeline[-1][3] == "100% deep"
    assert page.get_attribute("body", "data-session-clicks") == "5"
    buy = frame_box(page, "#buy")
    # The numbered markers sit on the button.
    alpha = page.evaluate(
        "([x, y]) => document.getElementById('highlight').getContext('2d').getImageData(x, y, 1, 1).data[3]",
        [196, 340],
    )
    assert alpha > 0 and inside([196, 340], buy)
    shot(page, "viewer-session.png")

    page.click("#back")
    settled(page)
    assert "session=" not in page.url and page.is_hidden("#timeline-panel")
    assert page.errors == []


def test_device_band_changes_the_frame_width(shop: Shop, page: Any) -> None:
    page.goto(shop.viewer())
    settled(page)
    page.select_option("#band", "mobile")
    # carol's phone was 390 px wide (bucket 400x800): the frame is the width she had
    page.wait_for_function("() => document.body.dataset.frameWidth === '390'")
    settled(page)
    assert page.evaluate("document.getElementById('page-frame').offsetWidth") == 390
    assert page.get_attribute("body", "data-band-width") == "400"
    assert "3 of 15 events plotted" in page.inner_text("#status")
    assert "band=mobile" in page.url
    shot(page, "viewer-mobile.png")

    # 1,200 px is a tablet width (768 to 1,279); nothing was recorded at 1,280 px or more.
    page.select_option("#band", "desktop")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('No click data from desktop')")
    page.select_option("#band", "tablet")
    page.wait_for_function("() => document.body.dataset.frameWidth === '1200'")
    assert page.errors == []


def test_address_keeps_the_view_but_never_the_key(shop: Shop, page: Any) -> None:
    page.goto(shop.viewer())
    settled(page)
    assert "key=" not in page.url and QUERY_KEY not in page.url
    page.select_option("#resolution", "64")
    settled(page)
    page.fill("#from", "2026-11-26")
    page.dispatch_event("#from", "change")
    settled(page)
    page.check("input[name=view][value=scroll]")
    settled(page, "scroll")
    for part in ("project=", "path=%2F", "resolution=64", "from=2026-11-26", "view=scroll"):
        assert part in page.url, (part, page.url)
    assert QUERY_KEY not in page.url
    assert page.evaluate("sessionStorage.getItem('flask-heat-collector:viewer-key')") == QUERY_KEY
    # erin's older session is out of the range (and the anonymous one never visited "/").
    assert page.locator("#sessions tbody tr").count() == 3

    page.reload()
    settled(page, "scroll")
    assert page.input_value("#resolution") == "64" and page.input_value("#from") == "2026-11-26"
    assert page.is_checked("input[name=view][value=scroll]")

    # The path search offers the paths by prefix.
    page.check("input[name=view][value=heatmap]")
    settled(page)
    page.fill("#path", "/pr")
    page.wait_for_function("() => document.querySelectorAll('#path-options option').length === 1")
    assert page.get_attribute("#path-options option", "value") == "/pricing"
    page.fill("#path", "/pricing")
    page.wait_for_function("() => document.getElementById('page-frame').dataset.src.endsWith('/pricing')")
    settled(page)
    assert "path=%2Fpricing" in page.url
    assert page.errors == []


def test_a_page_that_refuses_frames_falls_back_to_the_grid(shop: Shop, page: Any) -> None:
    page.goto(shop.viewer("&path=/blocked"))
    settled(page)
    assert page.get_attribute("body", "data-frame") == "blocked"
    assert page.is_visible("#frame-note")
    assert "refuses to be framed" in page.inner_text("#frame-note")
    # The grid's background is drawn on the canvas.
    pixel = page.evaluate(
        "Array.from(document.getElementById('heatmap').getContext('2d').getImageData(50, 50, 1, 1).data)"
    )
    assert pixel == [250, 251, 252, 255]
    shot(page, "viewer-blocked.png")

    # A path the host app does not serve: its 404 page is not shown as if it were the page.
    page.fill("#path", "/missing")
    page.press("#path", "Enter")
    page.wait_for_function("() => document.body.dataset.frame === 'error'")
    assert "answered HTTP 404" in page.inner_text("#frame-note")
    # Only the browser's own reports of the refusal and of the 404, no error of the viewer.
    assert len(page.errors) == 2, page.errors
    assert "X-Frame-Options' to 'deny'" in page.errors[0] and "404" in page.errors[1]

    # A recorded path that would lead the frame to another site is not framed.
    page.fill("#path", "//elsewhere.example/")
    page.press("#path", "Enter")
    page.wait_for_function("() => document.body.dataset.frame === 'none' && !document.body.dataset.busy")
    assert "does not lead to a page of the tracked site" in page.inner_text("#frame-note")
    assert page.is_hidden("#page-frame")


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _pixels(browser: Any, data: bytes, spots: list[tuple[int, int]]) -> list[list[int]]:
    """The RGBA of ``spots`` in a PNG, decoded by Chromium on a blank page."""
    body = "return spots.map(([x, y]) => Array.from(ctx.getImageData(x, y, 1, 1).data));"
    pixels: list[list[int]] = png_eval(browser, data, "spots", body, spots)
    return pixels


def test_export_png_with_the_page(shop: Shop, page: Any, browser: Any) -> None:
    page.goto(shop.viewer("&from=2026-11-20&to=2026-12-31"))
    settled(page)
    page.uncheck("#dim-page")  # the page's own colours in the picture
    with page.expect_download() as info:
        page.click("#export")
    download = info.value
    assert download.suggested_filename == "heatmap-root-heatmap.png"
    data = Path(download.path()).read_bytes()
    height = page.evaluate("parseInt(document.getElementById('board').style.height)")
    assert _png_size(data) == (1200, height + CAPTION_HEIGHT) and height >= 2120
    page.wait_for_function("() => document.body.dataset.export !== undefined")
    assert page.get_attribute("body", "data-export") == "page", page.inner_text("#status")
    header, button, spot, blank = _pixels(browser, data, [(600, 60), (110, 310), (200, 340), (600, 700)])
    assert header[:3] == list(HEADER_RGB)  # the page is in the picture
    assert button[:3] == [42, 157, 143]  # the button, away from the heat
    assert sum(abs(a - b) for a, b in zip(spot[:3], button[:3], strict=True)) > 60  # heat over the button
    assert blank[:3] == [255, 255, 255]
    # The caption band below the page: what the picture shows, and the legend with its unit.
    assert page.get_attribute("body", "data-export-caption") == (
        "/ · clicks map · all widths · 1200 px wide · anchored left\n"
        "2026-11-20 to 2026-12-31 (UTC) · based on 3 sessions (small sample)"
    )
    caption = _band_pixels(browser, data, height, CAPTION_HEIGHT)
    assert caption["background"] > 0.5, caption  # the band's own colour, not the page
    assert caption["white"] > 200 and caption["colours"] >= 3, caption  # text, and the legend's colours
    (ARTIFACTS / "viewer-export.png").write_bytes(data)

    # Dimmed (the default), the page is darker in the PNG as on screen; the heat is drawn over it.
    page.check("#dim-page")
    with page.expect_download() as info:
        page.click("#export")
    dimmed = Path(info.value.path()).read_bytes()
    (blank,) = _pixels(browser, dimmed, [(600, 700)])
    assert max(blank[:3]) < 200
    assert page.errors == []


def _band_pixels(browser: Any, data: bytes, top: int, height: int) -> dict[str, float]:
    """Of the PNG's rows ``top`` to ``top + height``: the count of white (text) pixels, the share of the
    caption's background colour, and how many strongly coloured hues (the legend) there are."""
    found: dict[str, float] = png_eval(
        browser,
        data,
        "top, height",
        """
        const data = ctx.getImageData(0, top, c.width, height).data;
        let white = 0, background = 0;
        const hues = new Set();
        for (let i = 0; i < data.length; i += 4) {
            const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
            if (r > 240 && g > 240 && b > 240) white += 1;
            if (r === 29 && g === 53 && b === 87) background += 1;
            if (Math.max(r, g, b) - Math.min(r, g, b) > 60) hues.add([r > 128, g > 128, b > 128].join());
        }
        return {white, background: background / (data.length / 4), colours: hues.size};
        """,
        top,
        height,
    )
    return found


def test_cross_origin_site(tmp_path: Path, browser: Any, page: Any) -> None:
    site = Flask("viewer_e2e_site")
    site.add_url_rule("/", "shop", lambda: SHOP)
    site_server = Server(site)
    app = _shop_app(tmp_path / "heat.db", HEAT_VIEWER_SITE_URL=f"{site_server.url}/")
    project = _seed(app)
    server = Server(app)
    try:
        page.goto(f"{server.url}/viewer#key={QUERY_KEY}&project={project}")
        settled(page)
        assert page.get_attribute("#page-frame", "src") == f"{site_server.url}/"
        assert page.get_attribute("body", "data-frame") == "cross-origin"
        assert "another origin" in page.inner_text("#frame-note")
        with page.expect_download() as info:
            page.click("#export")
        assert _png_size(Path(info.value.path()).read_bytes())[0] == 1200
        page.wait_for_function("() => document.body.dataset.export !== undefined")
        assert page.get_attribute("body", "data-export") == "grid"
        assert "The page is not in the PNG" in page.inner_text("#status")
        assert page.errors == []
    finally:
        server.stop()
        site_server.stop()
        app.extensions["heat_collector"].repository.dispose()


def test_sessions_are_paged(tmp_path: Path, page: Any) -> None:
    app = _shop_app(tmp_path / "heat.db")
    client = app.test_client()
    for i in range(52):
        body = batch(
            event("click", ts=TS + i * 1000, x=200, y=340, selector="button#buy"),
            session_id=f"s-{i:02d}",
            user={"id": f"user-{i:02d}"},
            started_at=TS + i * 1000,
            last_seen_at=TS + i * 1000,
        )
        assert client.post("/ingest", json=body, headers=headers()).status_code == 200
    project = client.post("/ingest", json=batch(session_id="s-00"), headers=headers()).get_json()["projectId"]
    server = Server(app)
    try:
        page.goto(f"{server.url}/viewer#key={QUERY_KEY}&project={project}")
        settled(page)
        users = page.locator("#sessions tbody tr td:first-child").all_inner_texts()
        assert len(users) == 50 and users[0] == "user-51" and users[-1] == "user-02"
        # 52 sessions: not a small sample, so confident colours and no note.
        assert "Based on 52 sessions." in page.inner_text("#status") and page.is_hidden("#sample-note")
        assert page.evaluate(_SPREAD) > 200
        assert page.is_disabled("#sessions-prev") and page.is_enabled("#sessions-next")
        page.click("#sessions-next")
        page.wait_for_function("() => document.querySelectorAll('#sessions tbody tr').length === 2")
        assert page.locator("#sessions tbody tr td:first-child").all_inner_texts() == ["user-01", "user-00"]
        assert page.is_disabled("#sessions-next") and page.inner_text("#session-count") == "(51\u201352)"
        page.click("#sessions-prev")
        page.wait_for_function("() => document.querySelectorAll('#sessions tbody tr').length === 50")
        assert page.errors == []
    finally:
        server.stop()
        app.extensions["heat_collector"].repository.dispose()
