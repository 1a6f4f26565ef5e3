"""Heat on the element that was clicked (issue 23's acceptance), with the real SDK in Chromium.

One Flask app serves the collector, its viewer and the tracked pages on one origin (so the viewer
looks into a same-origin frame): ``/centred`` (a 960 px column with ``margin: 0 auto`` and three
40x32 px buttons), ``/left`` (the same column at the left edge), ``/long`` (a page 1,400 px high)
and ``/shop`` (a button for every screen and one that only desktops show). Visitors are Chromium
tabs running the SDK from npm (tests/e2e/support.py) that click with the mouse or tap; the tests
compare the heat (the API's points with ``meta.viewport`` and ``meta.cell``, and the drawn canvas)
with the buttons' boxes read from the viewer's framed page. Screenshots go to build/e2e/anchor-*.png.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from ..helpers import Server
from .support import ARTIFACTS, delivered, sdk_script, sdk_visit, tracked_app, viewer_tab
from .test_viewer import frame_box, settled, shot

pytestmark = pytest.mark.e2e

QUERY_KEY = "anchor-e2e-key"
COLUMN = 960
BUTTON_TOP, BUTTON_W, BUTTON_H = 200, 40, 32
BUTTONS = {"one": 20, "two": 450, "three": 900}  # left edge in the column, px
FOLD_RGB = (74, 85, 104)  # the dashed fold line (viewer.js)

SDK_SCRIPT = sdk_script()


def _head(title: str, style: str) -> str:
    return (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>html, body {{ margin: 0; }} body {{ font: 14px sans-serif; }} {style}</style></head>"
    )


def _column(margin: str) -> str:
    buttons = "".join(f'<button id="{name}" style="left: {left}px">{name}</button>' for name, left in BUTTONS.items())
    style = (
        f".column {{ position: relative; width: {COLUMN}px; height: 560px; margin: {margin}; background: #e9eef5; }}"
        f" button {{ position: absolute; top: {BUTTON_TOP}px; width: {BUTTON_W}px; height: {BUTTON_H}px;"
        " padding: 0; border: 0; background: #2a9d8f; color: #fff; font-size: 10px; }"
    )
    return _head("Column", style) + f'<body><div class="column">{buttons}</div>{SDK_SCRIPT}</body></html>'


LONG = _head("Long", ".page { height: 1400px; background: linear-gradient(#f1faee, #a8dadc); }") + (
    f'<body><div class="page"><button id="top">Top</button></div>{SDK_SCRIPT}</body></html>'
)
SHOP = _head(
    "Shop",
    ".column { position: relative; max-width: 960px; height: 1200px; margin: 0 auto; background: #e9eef5; }"
    " button { position: absolute; top: 200px; width: 120px; height: 48px; border: 0; color: #fff; }"
    " #tap { left: 20px; background: #2a9d8f; } #desk { left: 600px; background: #e76f51; }"
    " @media (max-width: 767px) { #desk { display: none; } }",
) + (
    '<body><div class="column"><button id="tap">Buy</button><button id="desk">Compare</button></div>'
    f"{SDK_SCRIPT}</body></html>"
)


def _app(database: Path, sdk_dist: Path, **config: Any) -> Flask:
    pages = {"/centred": _column("0 auto"), "/left": _column("0"), "/long": LONG, "/shop": SHOP}
    instance = database.parent / "instance"
    return tracked_app(
        "anchor_e2e", f"sqlite:///{database}", sdk_dist, pages, query_key=QUERY_KEY, instance_path=instance, **config
    )


@dataclass
class Site:
    app: Flask
    server: Server
    browser: Any
    sdk_dist: Path
    projects: dict[str, str]  # project key -> project id

    def visit(
        self, key: str, path: str, width: int, act: Callable[[Any], None], *, height: int = 800, phone: bool = False
    ) -> None:
        """One visitor (a new tab: a new session) at ``width`` x ``height`` doing ``act``, flushed to the collector."""
        options: dict[str, Any] = {"viewport": {"width": width, "height": height}}
        if phone:
            options.update(is_mobile=True, has_touch=True, device_scale_factor=3)
        url = self.server.url
        with sdk_visit(self.browser, f"{url}/ingest", key, f"{url}{path}", **options) as tab:
            assert tab.evaluate("window.innerWidth") == width
            act(tab)
            self.projects[key] = delivered(tab)

    def api(self, key: str, endpoint: str, **params: Any) -> Any:
        query = urllib.parse.urlencode(params)
        url = f"{self.server.url}/api/projects/{self.projects[key]}{endpoint}?{query}"
        request = urllib.request.Request(url, headers={"x-api-key": QUERY_KEY})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def viewer(self, key: str, fragment: str) -> str:
        return f"{self.server.url}/viewer#key={QUERY_KEY}&project={self.projects[key]}&{fragment}"


@pytest.fixture(scope="module")
def site(browser: Any, sdk_dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    app = _app(tmp_path_factory.mktemp("anchor-e2e") / "heat.db", sdk_dist)
    server = Server(app)
    try:
        yield Site(app, server, browser, sdk_dist, {})
    finally:
        server.stop()
        app.extensions["heat_collector"].repository.dispose()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A viewer tab, wide enough that the board is not scaled much; fails on any script error."""
    with viewer_tab(browser, 1700, 1000) as tab:
        yield tab


# -- what the visitors do ------------------------------------------------------------------------


def click_buttons(tab: Any) -> None:
    """A click with the mouse at the centre of each button, and a second one on "two"."""
    for name in [*BUTTONS, "two"]:
        tab.click(f"#{name}")


COLUMN_CLICKS = {"#one": 1, "#two": 2, "#three": 1}  # per visit


# -- what the heat says ----------------------------------------------------------------------------


def grow(box: Mapping[str, float], by: float) -> dict[str, float]:
    return {"x": box["x"] - by, "y": box["y"] - by, "width": box["width"] + 2 * by, "height": box["height"] + 2 * by}


def contains(box: Mapping[str, float], x: float, y: float) -> bool:
    return box["x"] <= x <= box["x"] + box["width"] and box["y"] <= y <= box["y"] + box["height"]


def heat_in_boxes(heatmap: Any, boxes: Mapping[str, Mapping[str, float]]) -> tuple[dict[str, int], int]:
    """The heatmap's clicks per box, and those in no box. A point is its cell's centre: a click
    inside a box has its point within half a cell of it."""
    half = heatmap["meta"]["cell"]["w"] / 2
    grown = {name: grow(box, half) for name, box in boxes.items()}
    counts = dict.fromkeys(boxes, 0)
    outside = 0
    for point in heatmap["points"]:
        hits = [name for name, box in grown.items() if contains(box, point["x"], point["y"])]
        if hits:
            counts[hits[0]] += point["value"]
        else:
            outside += point["value"]
    return counts, outside


# The alpha-weighted centre of the heat canvas's painted pixels within ``margin`` px of a box (page px).
_HOT_CENTRE = """([box, margin]) => {
    const c = document.getElementById("heatmap");
    const x0 = Math.max(0, Math.floor(box.x - margin)), y0 = Math.max(0, Math.floor(box.y - margin));
    const w = Math.min(c.width - x0, Math.ceil(box.width + 2 * margin));
    const h = Math.min(c.height - y0, Math.ceil(box.height + 2 * margin));
    const data = c.getContext("2d").getImageData(x0, y0, w, h).data;
    let sum = 0, sx = 0, sy = 0;
    for (let y = 0; y < h; y += 1)
        for (let x = 0; x < w; x += 1) {
            const a = data[(y * w + x) * 4 + 3];
            sum += a; sx += a * (x0 + x); sy += a * (y0 + y);
        }
    return sum ? [sx / sum, sy / sum] : null;
}"""

# Painted pixels of the heat canvas above ``bottom`` (page px) outside every box grown by ``margin``.
_STRAY = """([boxes, margin, bottom]) => {
    const c = document.getElementById("heatmap");
    const h = Math.min(c.height, bottom);
    const data = c.getContext("2d").getImageData(0, 0, c.width, h).data;
    let stray = 0;
    for (let y = 0; y < h; y += 2)
        for (let x = 0; x < c.width; x += 2) {
            if (!data[(y * c.width + x) * 4 + 3]) continue;
            if (!boxes.some((b) => x >= b.x - margin && x <= b.x + b.width + margin
                                   && y >= b.y - margin && y <= b.y + b.height + margin)) stray += 1;
        }
    return stray;
}"""


def stray_pixels(page: Any, boxes: Mapping[str, Mapping[str, float]], cell: float) -> int:
    """Painted pixels farther from every box than a spot reaches (1.5 cells, viewer.js) and some."""
    return int(page.evaluate(_STRAY, [list(boxes.values()), 1.5 * cell + 12, 700]))


def drawn_on_boxes(page: Any, boxes: Mapping[str, Mapping[str, float]], cell: float) -> None:
    """The drawn heat of each box is centred inside it, and nothing is painted far from every box."""
    for name, box in boxes.items():
        centre = page.evaluate(_HOT_CENTRE, [box, 30])
        assert centre is not None and contains(box, *centre), (name, box, centre)
    assert stray_pixels(page, boxes, cell) == 0


def column_boxes(page: Any) -> dict[str, dict[str, float]]:
    return {f"#{name}": frame_box(page, f"#{name}") for name in BUTTONS}


def anchor_note(page: Any) -> tuple[str, str, int, int]:
    """(anchor, how, N, M) from the status line's "Anchored: center (auto: N of M clicks ...".)"""
    text = page.inner_text("#status")
    found = re.search(r"Anchored: (\w+) \((auto|chosen by hand): (\d+) of (\d+) clicks? inside their element", text)
    assert found, text
    return found[1], found[2], int(found[3]), int(found[4])


def status_and_buttons_shot(page: Any, name: str) -> None:
    """A small screenshot: the status line and the top of the board, down to below the buttons."""
    clip = page.evaluate(
        """(bottom) => {
            const panel = document.getElementById("map-panel").getBoundingClientRect();
            const top = document.getElementById("status").getBoundingClientRect().top;
            const scale = Number(document.getElementById("board").style.transform.match(/scale\\(([\\d.]+)\\)/)[1]);
            const stage = document.getElementById("stage").getBoundingClientRect().top;
            return {x: panel.left, y: top - 4, width: panel.width, height: stage - top + 4 + bottom * scale};
        }""",
        BUTTON_TOP + 120,
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), clip=clip)


def open_viewer(page: Any, site: Site, key: str, fragment: str, view: str = "heatmap") -> None:
    page.goto(site.viewer(key, fragment))
    settled(page, view)
    assert page.get_attribute("body", "data-frame") == "ready", page.inner_text("#frame-note")


# -- the tests ---------------------------------------------------------------------------------


def check_band(site: Site, page: Any, key: str, path: str, bucket: int, frame: int, clicks: Mapping[str, int]) -> Any:
    """The viewer shows ``bucket`` framed at ``frame`` px with its automatic anchoring; the API's heat
    of that anchoring puts ``clicks`` inside the buttons' boxes of the framed page, none elsewhere,
    and so does the drawn canvas. The heatmap answer."""
    assert page.get_attribute("body", "data-band-width") == str(bucket)
    assert page.get_attribute("body", "data-frame-width") == str(frame)
    assert page.evaluate("document.getElementById('page-frame').offsetWidth") == frame
    anchor = page.get_attribute("body", "data-anchor")
    heatmap = site.api(key, "/heatmap", path=path, type="click", viewportWidth=bucket, anchor=anchor)
    assert heatmap["meta"]["viewport"]["w"] == frame and heatmap["meta"]["anchor"] == anchor
    boxes = {name: frame_box(page, name) for name in clicks}
    assert heat_in_boxes(heatmap, boxes) == (dict(clicks), 0)
    drawn_on_boxes(page, boxes, heatmap["meta"]["cell"]["w"])
    return heatmap


def per_visit(visits: int) -> dict[str, int]:
    return {name: count * visits for name, count in COLUMN_CLICKS.items()}


def test_centred_layout_at_four_widths(site: Site, page: Any) -> None:
    key, path = "centred-layout", "/centred"
    # 1920 px: bucket 1900 alone. Every click is of the frame's width: the anchorings agree.
    site.visit(key, path, 1920, click_buttons)
    open_viewer(page, site, key, "path=/centred")
    assert anchor_note(page) == ("left", "auto", 4, 4)
    assert "whichever the anchoring" in page.inner_text("#status")
    check_band(site, page, key, path, 1900, 1920, per_visit(1))
    shot(page, "anchor-centred-1920.png")

    # 1280 px, three visitors: bucket 1300 is the most common, framed at 1280 (not the label 1300):
    # a centred page framed 20 px too wide would shift every button by 10 px.
    for _ in range(3):
        site.visit(key, path, 1280, click_buttons)
    open_viewer(page, site, key, "path=/centred")
    assert anchor_note(page) == ("left", "auto", 12, 12)
    check_band(site, page, key, path, 1300, 1280, per_visit(3))
    shot(page, "anchor-centred-1280.png")

    # 1366 px twice and 1440 px three times: both are bucket 1400, framed at 1440. Centred, the
    # 1366 px clicks belong 37 px to the right: auto picks center.
    for width in (1366, 1366, 1440, 1440, 1440):
        site.visit(key, path, width, click_buttons)
    open_viewer(page, site, key, "path=/centred")
    anchor, how, inside, total = anchor_note(page)
    assert (anchor, how, inside, total) == ("center", "auto", 20, 20)
    scores = json.loads(page.get_attribute("body", "data-anchor-scores"))
    assert scores["inside"]["left"] == 12 and scores["inside"]["scale"] < 20
    heatmap = check_band(site, page, key, path, 1400, 1440, per_visit(5))
    assert heatmap["meta"]["plotted"] == 20
    shot(page, "anchor-centred-1400-center.png")
    status_and_buttons_shot(page, "anchor-center-auto.png")

    boxes = column_boxes(page)
    # Every resolution places them alike: from the aggregates (64 divides theirs) or the raw rows.
    for resolution in (32, 64, 256, 512):
        fine = site.api(
            key, "/heatmap", path=path, type="click", viewportWidth=1400, anchor="center", resolution=resolution
        )
        assert heat_in_boxes(fine, boxes) == (per_visit(5), 0), resolution

    # Left anchored by hand: the 1366 px visitors' 8 clicks are drawn beside their buttons.
    left = site.api(key, "/heatmap", path=path, type="click", viewportWidth=1400, anchor="left")
    assert heat_in_boxes(left, boxes) == (per_visit(3), 8)
    page.select_option("#anchor", "left")
    settled(page)
    assert "anchor=left" in page.url
    assert anchor_note(page) == ("left", "chosen by hand", 12, 20)
    assert page.get_attribute("body", "data-anchor") == "left"
    assert stray_pixels(page, boxes, left["meta"]["cell"]["w"]) > 0
    shot(page, "anchor-centred-1400-left.png")
    status_and_buttons_shot(page, "anchor-left-by-hand.png")

    # One 1366 px session on its own: framed at its own width, its clicks are on the same buttons
    # as the aggregate's heat.
    page.select_option("#anchor", "auto")
    settled(page)
    assert page.get_attribute("body", "data-anchor") == "center"
    clicks = site.api(key, "/events", path=path, type="click", limit=1000)["events"]
    narrow = [e for e in clicks if json.loads(e["metaJson"])["viewport"]["w"] == 1366]
    session = narrow[0]["sessionId"]
    page.click(f"#sessions tbody tr[data-session-id='{session}']")
    settled(page, "session")
    assert page.get_attribute("body", "data-frame-width") == "1366"
    assert page.evaluate("document.getElementById('page-frame').offsetWidth") == 1366
    own = [e for e in narrow if e["sessionId"] == session]
    assert len(own) == 4
    for event in own:
        assert contains(frame_box(page, event["selector"]), event["x"], event["y"]), event
        alpha = page.evaluate(
            "([x, y]) => document.getElementById('highlight').getContext('2d').getImageData(x, y, 1, 1).data[3]",
            [event["x"], event["y"]],
        )
        assert alpha > 0
    shot(page, "anchor-centred-session-1366.png")
    assert page.errors == []


def test_left_aligned_layout_keeps_left(site: Site, page: Any) -> None:
    key, path = "left-layout", "/left"
    for width in (1366, 1440, 1440):
        site.visit(key, path, width, click_buttons)
    open_viewer(page, site, key, "path=/left")
    assert anchor_note(page) == ("left", "auto", 12, 12)
    scores = json.loads(page.get_attribute("body", "data-anchor-scores"))
    assert scores["inside"]["center"] == 8 and scores["inside"]["scale"] < 12
    check_band(site, page, key, path, 1400, 1440, per_visit(3))
    shot(page, "anchor-left-1400.png")
    assert page.errors == []


def scroll_to_bottom(tab: Any) -> None:
    tab.evaluate("window.scrollTo(0, document.documentElement.scrollHeight)")
    tab.wait_for_function("window.scrollY + window.innerHeight >= document.documentElement.scrollHeight - 1")
    # The SDK records the scroll from its listener: wait until it is queued.
    tab.wait_for_function("window.tracker.queue.some((e) => e.type === 'scroll')")


def test_a_phone_and_desktops_in_one_project(site: Site, page: Any) -> None:
    key, path = "phone-and-desktop", "/shop"

    def tap(tab: Any, scroll: bool) -> None:
        tab.tap("#tap")
        tab.tap("#tap")
        if scroll:
            scroll_to_bottom(tab)

    def desktop(tab: Any, scroll: bool) -> None:
        tab.click("#desk")
        tab.click("#desk")
        tab.click("#tap")
        if scroll:
            scroll_to_bottom(tab)

    for scroll in (True, False):
        site.visit(key, path, 390, lambda tab, scroll=scroll: tap(tab, scroll), height=844, phone=True)
    for scroll in (True, False, False):
        site.visit(key, path, 1280, lambda tab, scroll=scroll: desktop(tab, scroll))
    events = site.api(key, "/events", path=path, limit=1000)["events"]
    phone_sessions = {e["sessionId"] for e in events if json.loads(e["metaJson"])["viewport"]["w"] == 390}
    assert len(phone_sessions) == 2 and len({e["sessionId"] for e in events}) == 5

    open_viewer(page, site, key, "path=/shop&band=mobile")
    page.wait_for_function("() => document.getElementById('sessions-panel').dataset.state === 'ready'")
    # The map: the phone's taps, framed at 390 px (bucket 400), on the button the phone shows.
    heatmap = check_band(site, page, key, path, 400, 390, {"#tap": 4})
    assert heatmap["meta"]["total"] > heatmap["meta"]["plotted"] == 4  # the desktops' rows are counted, not drawn
    assert (
        page.evaluate(
            "getComputedStyle(document.getElementById('page-frame').contentDocument.getElementById('desk')).display"
        )
        == "none"
    )
    # The elements, the sessions and the scroll reach count only the phone's data.
    rows = [[c.inner_text() for c in row.locator("td").all()[:4]] for row in page.locator("#elements tbody tr").all()]
    assert rows == [["1", "button#tap", "4", "2"]]
    elements = site.api(key, "/elements", path=path, viewportWidth=400)["elements"]
    assert [(e["selector"], e["clicks"], e["sessions"]) for e in elements] == [("button#tap", 4, 2)]
    listed = {row.get_attribute("data-session-id") for row in page.locator("#sessions tbody tr").all()}
    assert listed == phone_sessions
    shot(page, "anchor-phone-390.png")

    page.click("input[name=view][value=scroll]")
    settled(page, "scroll")
    scrollmap = site.api(key, "/scrollmap", path=path, viewportWidth=400)
    assert scrollmap["meta"]["sessions"] == 2
    assert page.inner_text("#status").startswith("Scroll reach of 2 sessions, frame 400 px wide")
    depths = {
        row.get_attribute("data-depth"): row.locator("td").all_inner_texts()
        for row in page.locator("#reach tbody tr").all()
    }
    assert depths["100"] == ["100%", "1", "50%"]
    listed = {row.get_attribute("data-session-id") for row in page.locator("#sessions tbody tr").all()}
    assert listed == phone_sessions
    shot(page, "anchor-phone-scroll.png")
    assert page.errors == []


_FOLD_PIXELS = """(y) => {
    const c = document.getElementById("heatmap");
    const data = c.getContext("2d").getImageData(0, y, c.width, 1).data;
    let found = 0;
    for (let i = 0; i < data.length; i += 4)
        if (data[i] === RGB[0] && data[i + 1] === RGB[1] && data[i + 2] === RGB[2] && data[i + 3] === 255) found += 1;
    return found;
}""".replace("RGB", json.dumps(FOLD_RGB))


def test_scroll_reach_of_a_long_page(site: Site, page: Any) -> None:
    key, path = "long-page", "/long"
    site.visit(key, path, 1280, scroll_to_bottom)  # 600 px down: the bottom of 1,400 px
    site.visit(key, path, 1280, lambda tab: tab.click("#top"))  # never scrolled: saw the first 800 px
    scrollmap = site.api(key, "/scrollmap", path=path)
    meta = scrollmap["meta"]
    assert meta["sessions"] == 2 and meta["pageHeight"] == 1400
    assert meta["foldPct"] == pytest.approx(800 / 1400 * 100, abs=0.01)
    reach = {step["depth"]: step["pct"] for step in scrollmap["reach"]}
    assert all(reach[depth] == 100 for depth in range(0, 60, 5))  # above the fold (57 %): both
    assert all(reach[depth] == 50 for depth in range(60, 105, 5))  # below: the one who scrolled

    open_viewer(page, site, key, "path=/long&view=scroll", "scroll")
    status = page.inner_text("#status")
    assert status.startswith("Scroll reach of 2 sessions") and "the page is 1400 px high" in status
    assert "the fold is at 57% of it (800 px)" in status, status
    rows = {
        row.get_attribute("data-depth"): row.locator("td").all_inner_texts()
        for row in page.locator("#reach tbody tr").all()
    }
    assert (
        rows["55"] == ["55%", "2", "100%"] and rows["60"] == ["60%", "1", "50%"] and rows["100"] == ["100%", "1", "50%"]
    )
    # Drawn over the whole page with the fold line on row 800 (h / H of it).
    assert page.evaluate("document.getElementById('heatmap').height") == 1400
    assert page.evaluate(_FOLD_PIXELS, 800) > 100
    assert page.evaluate(_FOLD_PIXELS, 780) == 0 and page.evaluate(_FOLD_PIXELS, 820) == 0
    above, below = page.evaluate(
        """() => {
            const ctx = document.getElementById("heatmap").getContext("2d");
            const at = (y) => Array.from(ctx.getImageData(600, y, 1, 1).data);
            return [at(400), at(1200)];
        }"""
    )
    assert above[3] > 0 and below[3] > 0 and above[:3] != below[:3]
    shot(page, "anchor-scroll-long.png")
    assert page.errors == []


def test_a_page_of_another_origin_stays_left_unless_chosen(site: Site, page: Any) -> None:
    key, path = "cross-origin", "/centred"
    for width in (1366, 1440, 1440):
        site.visit(key, path, width, click_buttons)
    # A second collector on the same database whose viewer frames the site, on another origin.
    database = Path(site.app.config["HEAT_DATABASE_URI"].removeprefix("sqlite:///"))
    other = _app(database, site.sdk_dist, HEAT_VIEWER_SITE_URL=site.server.url)
    server = Server(other)
    try:
        page.goto(f"{server.url}/viewer#key={QUERY_KEY}&project={site.projects[key]}&path=/centred")
        settled(page)
        assert page.get_attribute("body", "data-frame") == "cross-origin"
        status = page.inner_text("#status")
        assert "Anchored: left (the page is of another origin, so the clicks cannot be checked on it" in status
        assert page.get_attribute("body", "data-anchor") == "left"
        page.select_option("#anchor", "center")
        settled(page)
        assert "Anchored: center (chosen by hand)." in page.inner_text("#status")
        assert page.get_attribute("body", "data-anchor") == "center"
        shot(page, "anchor-cross-origin.png")
    finally:
        server.stop()
        other.extensions["heat_collector"].repository.dispose()
    assert page.errors == []
