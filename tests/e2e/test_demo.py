"""The README's demo in Chromium: its pages, its heatmap overlay, the visits it seeds, its viewer."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .support import ARTIFACTS, ROOT, wait_until

pytestmark = pytest.mark.e2e
SECRET = "demo-secret-typed-value"
DEMO = ROOT / "examples" / "demo"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
NOW = 1_790_000_000_000  # a fixed "now" for the seed's batches (unix ms)


def load_demo(sdk_dist: Path, instance: Path, monkeypatch: pytest.MonkeyPatch, *, seed: bool = True) -> Any:
    monkeypatch.setenv("DEMO_SDK_DIST", str(sdk_dist))
    monkeypatch.setenv("DEMO_INSTANCE_PATH", str(instance))
    monkeypatch.setenv("DEMO_SEED", "1" if seed else "0")
    monkeypatch.syspath_prepend(str(DEMO))  # app.py imports its neighbours layout.py and seed.py
    spec = importlib.util.spec_from_file_location("heat_demo_app", DEMO / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo(sdk_dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The demo app after its start-up seed."""
    return load_demo(sdk_dist, tmp_path / "instance", monkeypatch)


def api(demo: Any, path: str) -> Any:
    client = demo.app.test_client()
    project_id = client.get("/demo/project").get_json()["projectId"]
    answer = client.get(f"/api/projects/{project_id}/{path}", headers={"x-api-key": demo.QUERY_KEY})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return answer.get_json()


def test_demo_page_draws_its_heatmap(
    browser: Any, sdk_dist: Path, tmp_path: Path, live_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = load_demo(sdk_dist, tmp_path / "instance", monkeypatch, seed=False)  # only what this visit sends
    server = live_server(demo.app)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    try:
        page.goto(server.url + "/")
        wait_until(lambda: page.evaluate("() => Boolean(window.heatTracker)"), 20, "the SDK did not start", page)
        for selector in ("#buy", "#cart", "#signup", "#buy", "#plans", "#buy"):
            box = page.locator(selector).bounding_box()
            assert box is not None
            page.mouse.move(box["x"] + 10, box["y"] + 10, steps=8)
            page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=8)
            page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.click("#name")
        page.keyboard.type(SECRET)
        page.mouse.wheel(0, 600)
        page.mouse.wheel(0, -600)
        page.click("#show")
        wait_until(lambda: "plotted" in page.inner_text("#status"), 30, "the heatmap was not drawn", page)
        match = re.match(r"(\d+) of (\d+) events plotted", page.inner_text("#status"))
        assert match is not None, page.inner_text("#status")
        plotted, total = int(match[1]), int(match[2])
        assert plotted >= 6 and total >= plotted
        painted = page.evaluate(
            """() => { const c = document.getElementById('heat');
                       const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                       let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }"""
        )
        assert painted > 1000
        page.evaluate("() => { document.getElementById('name').value = ''; }")  # keep the secret out of the picture
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-heatmap.png"), full_page=True)
    finally:
        page.close()
    stored = b"".join(p.read_bytes() for p in (tmp_path / "instance").glob("heat-collector.db*"))
    assert SECRET.encode() not in stored


def test_seeded_clicks_land_on_the_elements_without_javascript(demo: Any, browser: Any, live_server: Any) -> None:
    """layout.py (where the seed clicks) against Chromium's boxes, scripts off as in the viewer's frame."""
    server = live_server(demo.app)
    # The seed's widths, their buckets' (the viewer frames a page at its bucket's width), a tablet's.
    others = ({"width": 1300, "height": 800}, {"width": 400, "height": 800}, {"width": 1024, "height": 768})
    for viewport in (DESKTOP, PHONE, *others):
        context = browser.new_context(viewport=viewport, java_script_enabled=False)
        try:
            page = context.new_page()
            for path in ("/", "/pricing"):
                page.goto(server.url + path)
                for name, want in demo.layout.boxes(path, viewport["width"]).items():
                    if name == "page":
                        root = "document.documentElement"
                        size = page.evaluate(f"() => [{root}.scrollWidth, {root}.scrollHeight]")
                        assert size == [viewport["width"], want.h], (viewport, path)
                        continue
                    got = page.locator(f"#{name}, main > .{name}").bounding_box()
                    assert got is not None, (viewport, path, name)
                    assert [got["x"], got["y"], got["width"], got["height"]] == pytest.approx(
                        [want.x, want.y, want.w, want.h], abs=0.5
                    ), (viewport, path, name)
                if viewport in (DESKTOP, PHONE):
                    ARTIFACTS.mkdir(parents=True, exist_ok=True)
                    name = f"demo-page-{viewport['width']}{path.replace('/', '-').rstrip('-')}.png"
                    page.screenshot(path=str(ARTIFACTS / name), full_page=True)
        finally:
            context.close()
    # Every seeded click is inside the box of the element its selector names.
    widths = {session.id: session.device.w for session in demo.seed.SESSIONS}
    for body in demo.seed.batches(NOW):
        width = widths[body["session"]["id"]]
        for event in body["events"]:
            if event["type"] == "click":
                box = demo.layout.boxes(event["path"], width)[event["selector"].split("#")[1]]
                assert box.x <= event["x"] <= box.x + box.w and box.y <= event["y"] <= box.y + box.h, event


def test_the_seed_answers_every_query(demo: Any) -> None:
    heatmap = api(demo, "heatmap?path=/pricing")
    assert heatmap["points"] and heatmap["meta"]["bucket"] == "1300x800"  # the SDK rounds 1280x800
    assert heatmap["meta"]["otherViewports"] == {"400": 2}  # the phone's taps (390x844: bucket 400x800)

    home = api(demo, "heatmap?path=/")
    assert (home["meta"]["total"], home["meta"]["plotted"], home["meta"]["otherViewports"]) == (33, 28, {"400": 5})
    phone = api(demo, "heatmap?path=/&viewportWidth=400")
    assert phone["meta"]["bucket"] == "400x800" and phone["meta"]["plotted"] == 5

    def core(elements: list[dict[str, Any]]) -> list[dict[str, Any]]:
        keys = ("selector", "clicks", "sessions", "rageClicks")  # signals: tests/test_signals.py
        return [{k: e[k] for k in keys} for e in elements]

    ranked = core(api(demo, "elements?path=/&viewports=all")["elements"])  # every width
    assert ranked[0] == {"selector": "button#apply-coupon", "clicks": 11, "sessions": 8, "rageClicks": 4}
    assert ranked[1] == {"selector": "button#buy", "clicks": 10, "sessions": 10, "rageClicks": 0}
    # In the map's band (desktop, the default) the phone's five taps are not counted; in the phone's, only they are.
    desktop = core(api(demo, "elements?path=/")["elements"])
    assert desktop[0] == {"selector": "button#apply-coupon", "clicks": 10, "sessions": 7, "rageClicks": 4}
    assert desktop[1] == {"selector": "button#buy", "clicks": 9, "sessions": 9, "rageClicks": 0}
    phone = api(demo, "elements?path=/&viewportWidth=400")["elements"]
    assert len(phone) == 5 and all(e["clicks"] == e["sessions"] == 1 and not e["rageClicks"] for e in phone)
    rage = api(demo, "heatmap?path=/&type=rageclick")
    assert rage["meta"]["plotted"] == sum(p["value"] for p in rage["points"]) == 4

    sessions = api(demo, "sessions?order=desc")["sessions"]
    assert len(sessions) == 10
    assert [s["externalUserId"] for s in sessions] == [None] * 9 + ["demo-user-1"]  # newest first, it is the oldest

    reach = api(demo, "scrollmap?path=/")
    assert reach["meta"]["sessions"] == 9  # the desktop ones; the phone's scrolls are in another band
    # Reach is what people saw (SPEC 4): everyone saw the page down to the fold, one visitor its end.
    fold = reach["meta"]["foldPct"]
    assert 30 < fold < 100 and all(r["sessions"] == 9 for r in reach["reach"] if r["depth"] <= fold)
    assert [r["sessions"] for r in reach["reach"] if r["depth"] in (0, 25, 50, 100)] == [9, 9, 9, 1]
    page_height = demo.layout.boxes("/", 1280)["page"].h  # the map spans the page: a visitor reached the footer
    assert page_height - 50 < reach["meta"]["renderHeight"] <= page_height
    assert {p["path"] for p in api(demo, "paths")["paths"]} == {"/", "/pricing"}


def test_the_seed_is_sent_once(demo: Any, sdk_dist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = api(demo, "events?limit=1000")["meta"]["count"]
    assert demo.seed.seed_if_empty(demo.app, demo.PROJECT_KEY, demo.QUERY_KEY) == 0  # not empty: nothing sent
    client = demo.app.test_client()
    for body in demo.seed.batches(NOW):  # sent again (other timestamps, same ids): stored once
        assert client.post("/ingest", json=body, headers={"X-Project-Key": demo.PROJECT_KEY}).status_code == 200
    assert api(demo, "events?limit=1000")["meta"]["count"] == before
    again = load_demo(sdk_dist, tmp_path / "instance", monkeypatch)  # a restart on the same database
    assert api(again, "events?limit=1000")["meta"]["count"] == before
    skipped = load_demo(sdk_dist, tmp_path / "empty", monkeypatch, seed=False)
    assert skipped.app.test_client().get("/demo/project").get_json() == {"projectId": None}


def test_the_viewer_shows_the_demo(demo: Any, browser: Any, live_server: Any) -> None:
    """The demo page's viewer link opens the viewer on the seeded project: build/e2e/demo-viewer.png."""
    server = live_server(demo.app)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(server.url + "/")
        link = page.get_attribute("#open-viewer", "href")
        project_id = demo.app.test_client().get("/demo/project").get_json()["projectId"]
        assert link == f"/viewer#key={demo.QUERY_KEY}&project={project_id}&path=/"
        page.click("#open-viewer")
        # A navigation: until the viewer's document has loaded, there may be no body to read.
        page.wait_for_url(lambda url: urlsplit(url).path == "/viewer")
        page.wait_for_function("() => document.body?.dataset.heatmapPoints !== undefined")
        assert int(page.get_attribute("body", "data-heatmap-points") or 0) > 0, page.inner_text("body")
        # The demo page itself is under the map, its dead button among the elements, the user among the sessions.

        def framed() -> bool:
            frames = [f for f in page.frames if f is not page.main_frame and urlsplit(f.url).path == "/"]
            return any(f.locator("#apply-coupon").count() for f in frames)

        wait_until(framed, 20, "the demo page is not framed", page)
        wait_until(lambda: "demo-user-1" in page.inner_text("body"), 20, "no sessions listed", page)
        assert "button#apply-coupon" in page.inner_text("body")
        page.wait_for_function("() => document.body.dataset.frame === 'ready'")  # the framed page has loaded
        page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")  # painted
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-viewer.png"), full_page=True)
    finally:
        context.close()
